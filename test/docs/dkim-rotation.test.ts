/**
 * docs/runbooks/dkim-key-rotation.md, run for real: keys written by its `keygen` block, DNS served
 * by a private dnsmasq (first without the new records, then with them, as the operator publishes
 * them), and the old key retired.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { expectedRecords } from '../../admin/dns-records.ts';
import { KeyStore } from '../../milter/dkim/key-store.ts';
import { dnsRecordValue, writeNewKey } from '../../milter/dkim/keys.ts';
import { startDnsmasq, txtChunks } from '../harness/dnsmasq.ts';
import { runbookBlocks, runBlock, runOk } from './runbook.ts';

const RUNBOOK = 'dkim-key-rotation.md';

test('DKIM key rotation: keygen, the DNS check refuses until the new records are published, then retire the old key', { timeout: 150_000 }, async (t) => {
  const blocks = runbookBlocks(RUNBOOK);
  assert.equal(blocks.length, 3, 'keygen, check, retire');
  const [keygen, check, retire] = blocks as [typeof blocks[0], typeof blocks[0], typeof blocks[0]];
  const keysDir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-runbook-dkim-'));
  t.after(() => rmSync(keysDir, { recursive: true, force: true }));
  const [DOMAIN, OLD, NEW] = ['example.com', 'ceerion', 's202611'];
  writeNewKey(keysDir, DOMAIN, OLD, 'rsa');
  writeNewKey(keysDir, DOMAIN, OLD, 'ed25519');
  const env = {
    DOMAIN,
    OLD,
    NEW,
    KEYS_DIR: keysDir,
    CEERION_HOSTNAME: 'mx.example.com',
    CEERION_MILTER_CHECKS_DKIM_SIGN_KEYS_DIR: keysDir,
    CEERION_MILTER_CHECKS_DKIM_SIGN_SELECTOR: OLD,
  };

  const made = await runOk(RUNBOOK, keygen, env);
  assert.match(made.stdout, /^s202611\._domainkey\.example\.com\.\tIN\tTXT/m);
  assert.match(made.stdout, /^s202611-ed25519\._domainkey\.example\.com\.\tIN\tTXT/m);
  const store = KeyStore.load({ keysDir, selector: NEW, algorithms: ['rsa', 'ed25519'] });
  const newKeys = store.keysOf(DOMAIN).filter((k) => k.selector === NEW);
  const oldKeys = store.keysOf(DOMAIN).filter((k) => k.selector === OLD);
  assert.equal(newKeys.length, 2);

  /** A zone with every record the domain needs, and the DKIM keys given. */
  const zone = (keys: typeof newKeys) => {
    const txt: Record<string, Array<string | string[]>> = {};
    for (const r of expectedRecords(DOMAIN, { mxHost: 'mx.example.com', keys: [], dmarcPolicy: 'quarantine' })) {
      const value = /\tTXT\t"(.*)"\n/.exec(r.zone)?.[1];
      if (value) txt[r.name] = [value];
    }
    for (const k of keys) txt[`${k.dnsSelector}._domainkey.${DOMAIN}`] = [txtChunks(dnsRecordValue(k.privateKey))];
    return { txt, mx: { [DOMAIN]: [{ exchange: 'mx.example.com', priority: 10 }] } };
  };

  // Before publishing: the check block fails, naming the missing records.
  const unpublished = await startDnsmasq(zone(oldKeys));
  t.after(() => unpublished.stop());
  const early = await runBlock(check, { ...env, CEERION_DNS_SERVERS: unpublished.server, CEERION_DNS_CACHE_ENABLED: 'false' });
  assert.notEqual(early.code, 0, early.stdout);
  assert.match(early.stdout, /\| DKIM rsa +\| s202611\._domainkey\.example\.com +\| missing/);

  // Published (old and new side by side, as the runbook says): every DKIM row ok.
  const published = await startDnsmasq(zone([...oldKeys, ...newKeys]));
  t.after(() => published.stop());
  const ok = await runOk(RUNBOOK, check, { ...env, CEERION_DNS_SERVERS: published.server, CEERION_DNS_CACHE_ENABLED: 'false' });
  assert.match(ok.stdout, /\| DKIM rsa +\| s202611\._domainkey\.example\.com +\| ok/);
  assert.match(ok.stdout, /\| DKIM ed25519 +\| s202611-ed25519\._domainkey\.example\.com +\| ok/);

  // After the switch (selector = NEW) and the week's wait: the old files go, only NEW is shown.
  const retired = await runOk(RUNBOOK, retire, { ...env, CEERION_MILTER_CHECKS_DKIM_SIGN_SELECTOR: NEW });
  assert.ok(!existsSync(path.join(keysDir, DOMAIN, `${OLD}.rsa.key`)));
  assert.ok(!existsSync(path.join(keysDir, DOMAIN, `${OLD}.ed25519.key`)));
  assert.match(retired.stdout, /^s202611\._domainkey/m);
  assert.doesNotMatch(retired.stdout, /^ceerion(-ed25519)?\._domainkey/m);
});
