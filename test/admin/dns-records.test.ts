/**
 * `ceerion dns records` / `dns check`: the records a domain needs, and a check of published DNS
 * against them, with DNS from a private dnsmasq serving first the right records, then wrong ones.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { checkRecords, expectedRecords, zoneFile } from '../../admin/dns-records.ts';
import { parseConfig } from '../../core/config/load.ts';
import { createResolver } from '../../core/dns/index.ts';
import { silentLogger } from '../../core/log.ts';
import { KeyStore } from '../../milter/dkim/key-store.ts';
import { txtChunks, dnsRecordValue, writeNewKey } from '../../milter/dkim/keys.ts';
import { startDnsmasq } from '../harness/dnsmasq.ts';
import { ROOT } from '../harness/milter-process.ts';

const exec = promisify(execFile);

function keysFor(t: TestContext) {
  const keysDir = mkdtempSync(path.join(tmpdir(), 'ceerion-dnsrec-'));
  t.after(() => rmSync(keysDir, { recursive: true, force: true }));
  writeNewKey(keysDir, 'example.com', 'ceerion', 'rsa');
  writeNewKey(keysDir, 'example.com', 'ceerion', 'ed25519');
  const store = KeyStore.load({ keysDir, selector: 'ceerion', algorithms: ['rsa', 'ed25519'] });
  return { keysDir, keys: store.keysOf('example.com') };
}

/** What a correct zone serves, built from the expected values. */
function published(keys: ReturnType<typeof keysFor>['keys'], over: Record<string, Array<string | string[]> | undefined> = {}) {
  const txt: Record<string, Array<string | string[]>> = {
    'example.com': ['v=spf1 mx -all'],
    '_dmarc.example.com': ['v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com'],
    '_mta-sts.example.com': ['v=STSv1; id=20261121T000000'],
    '_smtp._tls.example.com': ['v=TLSRPTv1; rua=mailto:postmaster@example.com'],
  };
  for (const k of keys) txt[`${k.dnsSelector}._domainkey.example.com`] = [txtChunks(dnsRecordValue(k.privateKey))];
  for (const [name, v] of Object.entries(over)) {
    if (v) txt[name] = v;
    else delete txt[name];
  }
  return { txt, mx: { 'example.com': [{ exchange: 'mx.example.com', priority: 10 }] } };
}

test('dns records lists MX, SPF, one DKIM record per key, DMARC, MTA-STS and TLS-RPT in zone-file form', (t) => {
  const { keys } = keysFor(t);
  const zone = zoneFile('example.com', expectedRecords('example.com', { mxHost: 'mx.example.com', keys, dmarcPolicy: 'reject' }));
  assert.match(zone, /^example\.com\.\tIN\tMX\t10 mx\.example\.com\.$/m);
  assert.match(zone, /^example\.com\.\tIN\tTXT\t"v=spf1 mx -all"$/m);
  assert.match(zone, /^ceerion\._domainkey\.example\.com\.\tIN\tTXT\t\( "v=DKIM1; k=rsa; "/m);
  assert.match(zone, /^ceerion-ed25519\._domainkey\.example\.com\.\tIN\tTXT\t\( "v=DKIM1; k=ed25519; "/m);
  assert.match(zone, /^_dmarc\.example\.com\.\tIN\tTXT\t"v=DMARC1; p=reject; rua=mailto:postmaster@example\.com"$/m);
  assert.match(zone, /^_mta-sts\.example\.com\.\tIN\tTXT\t"v=STSv1; id=\d{8}T000000"$/m);
  assert.match(zone, /^_smtp\._tls\.example\.com\.\tIN\tTXT\t"v=TLSRPTv1; rua=mailto:postmaster@example\.com"$/m);
});

test('dns check: all ok when DNS serves what is needed; missing, differing and unsafe records are named', async (t) => {
  const { keys } = keysFor(t);
  const expected = expectedRecords('example.com', { mxHost: 'mx.example.com', keys, dmarcPolicy: 'quarantine' });
  const good = await startDnsmasq(published(keys));
  t.after(() => good.stop());
  const r1 = createResolver(parseConfig({ dns: { servers: [good.server], cache: { enabled: false } } }).dns, { log: silentLogger });
  t.after(() => r1.close());
  const ok = await checkRecords(expected, r1.resolve);
  assert.deepEqual(ok.map((r) => `${r.what}:${r.status}`).sort(), ['DKIM ed25519:ok', 'DKIM rsa:ok', 'DMARC:ok', 'MTA-STS:ok', 'MX:ok', 'SPF:ok', 'TLS-RPT:ok']);

  const other = keysFor(t).keys; // a key that is not ours
  const bad = await startDnsmasq(
    published(keys, {
      'example.com': ['v=spf1 +all'],
      '_dmarc.example.com': undefined,
      'ceerion._domainkey.example.com': [txtChunks(dnsRecordValue(other[1]!.privateKey))],
    }),
  );
  t.after(() => bad.stop());
  const r2 = createResolver(parseConfig({ dns: { servers: [bad.server], cache: { enabled: false } } }).dns, { log: silentLogger });
  t.after(() => r2.close());
  const rows = Object.fromEntries((await checkRecords(expected, r2.resolve)).map((r) => [r.what, r]));
  assert.equal(rows.SPF!.status, 'differs');
  assert.match(rows.SPF!.detail, /lets any host send/);
  assert.equal(rows.DMARC!.status, 'missing');
  assert.equal(rows['DKIM rsa']!.status, 'differs');
  assert.equal(rows.MX!.status, 'ok');
});

test('the CLI prints the table and exits 0 when everything is published, 1 otherwise', async (t) => {
  const { keysDir, keys } = keysFor(t);
  const cfg = path.join(keysDir, 'ceerion.yml');
  writeFileSync(cfg, `hostname: mx.example.com\nmilter:\n  checks:\n    dkimSign:\n      keysDir: ${keysDir}\n`);
  const dns = await startDnsmasq(published(keys));
  t.after(() => dns.stop());
  const cli = (args: string[]) => exec(process.execPath, [path.join(ROOT, 'bin/ceerion.mjs'), 'dns', ...args, '-c', cfg]);
  const { stdout } = await cli(['check', 'example.com', '--server', dns.server]);
  assert.match(stdout, /\| DKIM ed25519 \| ceerion-ed25519\._domainkey\.example\.com \| ok /);
  const records = await cli(['records', 'example.com']);
  assert.match(records.stdout, /^example\.com\.\tIN\tMX\t10 mx\.example\.com\.$/m);
  await assert.rejects(cli(['check', 'example.org', '--server', dns.server]), (err: { code?: number; stdout?: string }) => err.code === 1 && /missing/.test(err.stdout ?? ''));
});
