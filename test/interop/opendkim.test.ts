/**
 * Cross-validation with OpenDKIM (Debian packages `opendkim`, `opendkim-tools`), the signer most
 * Postfix sites run. Both directions, both algorithms:
 * - what we sign, OpenDKIM verifies: `opendkim -t FILE` (its test mode runs the filter's own
 *   callbacks on a file) with TestPublicKeys standing in for DNS;
 * - what OpenDKIM signs, we (mailauth) verify: a private `opendkim` milter in sign mode, driven
 *   over its socket by our MilterClient as Postfix would drive it;
 * - a body or header changed after signing fails in both.
 * Not `opendkim-testmsg`: in 2.11.0~beta2 it signs with rsa-sha1 only and writes the tail of b=
 * twice, so its signatures verify nowhere. OpenDKIM is required: without it these tests fail
 * (they do not skip), saying how to install it.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Zone } from '../../core/dns/zone-resolver.ts';
import { dkimSignCheck } from '../../milter/checks/dkim-sign.ts';
import { MilterClient } from '../../milter/client/milter-client.ts';
import { KeyStore } from '../../milter/dkim/key-store.ts';
import { parseZoneFileTxt, writeNewKey, type DkimAlgorithm } from '../../milter/dkim/keys.ts';
import { Family } from '../../milter/protocol/constants.ts';
import { ready, setup } from '../helpers/session.ts';
import { applyInserts, fixture, signatureValues, signConfig, signedNames, tempDir, testKeys, toSpec, verify } from '../fixtures/dkim/mail.ts';

const INSTALL = 'apt-get install -y opendkim opendkim-tools';
const RUN_TIMEOUT_MS = 30_000;

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err?.code === 'ENOENT') return reject(new Error(`${cmd} is not installed (not on PATH). These interop tests need it: ${INSTALL}`));
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
  });
}

/** OpenDKIM's config format: one `Name value` per line. */
function writeConf(dir: string, name: string, settings: Record<string, string>): string {
  const file = path.join(dir, name);
  writeFileSync(file, Object.entries(settings).map(([k, v]) => `${k} ${v}\n`).join(''));
  return file;
}

// Our temp dirs live under /tmp, which others may write: OpenDKIM's RequireSafeKeys checks every
// directory up to the root and would refuse the key. The keys themselves are 0600.
const COMMON = { Syslog: 'no', RequireSafeKeys: 'false', Canonicalization: 'relaxed/relaxed' };

/** `dkim=RESULT … header.a=ALG` of each signature, as OpenDKIM's test mode reports them. */
async function opendkimVerify(t: TestContext, message: string, zone: Zone): Promise<Array<[string, string]>> {
  const dir = tempDir(t, 'ceerion-opendkim-');
  // TestPublicKeys: "NAME VALUE" per line, the TXT strings joined, as a resolver would.
  const keys = Object.entries(zone).map(([name, rr]) => `${name} ${(rr.TXT as string[][])[0]!.join('')}\n`);
  writeFileSync(path.join(dir, 'keys'), keys.join(''));
  writeFileSync(path.join(dir, 'message.eml'), message);
  const conf = writeConf(dir, 'verify.conf', { ...COMMON, Mode: 'v', TestPublicKeys: path.join(dir, 'keys') });
  const r = await run('opendkim', ['-x', conf, '-vv', '-t', path.join(dir, 'message.eml')]);
  assert.equal(r.code, 0, r.stderr);
  const ar = /hname='Authentication-Results' hvalue='([^']*)'/.exec(r.stdout)?.[1];
  assert.ok(ar, `no Authentication-Results from opendkim -t:\n${r.stdout}\n${r.stderr}`);
  return [...ar.matchAll(/dkim=(\w+)[^;]*?header\.a=([\w-]+)/g)].map((m) => [m[2]!, m[1]!]);
}

/** A private OpenDKIM milter signing for example.com with one key, on a unix socket; stopped after the test. */
async function startOpendkimSigner(t: TestContext, key: { file: string; selector: string; algorithm: DkimAlgorithm }) {
  const dir = tempDir(t, 'ceerion-opendkim-');
  const socket = path.join(dir, 'opendkim.sock');
  const conf = writeConf(dir, 'sign.conf', {
    ...COMMON,
    Mode: 's',
    Socket: `local:${socket}`,
    Domain: 'example.com',
    Selector: key.selector,
    KeyFile: key.file,
    // The algorithm is one global setting in 2.11: one instance signs with RSA or Ed25519, not both.
    SignatureAlgorithm: key.algorithm === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256',
    OversignHeaders: 'From',
  });
  const child: ChildProcess = spawn('opendkim', ['-f', '-x', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (b: Buffer) => (output += b));
  child.stderr!.on('data', (b: Buffer) => (output += b));
  const spawned = once(child, 'spawn').then(() => undefined);
  const failed = once(child, 'error').then(([err]) => {
    throw (err as NodeJS.ErrnoException).code === 'ENOENT' ? new Error(`opendkim is not installed: ${INSTALL}`) : err;
  });
  await Promise.race([spawned, failed]);
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    if ((await Promise.race([exited, sleep(5000, 'timeout')])) === 'timeout') child.kill('SIGKILL');
  });
  for (let i = 0; !existsSync(socket); i++) {
    assert.ok(i < 100 && child.exitCode === null, `opendkim did not open ${socket}:\n${output}`);
    await sleep(50);
  }
  return `unix:${socket}`;
}

/** The fixture signed by an OpenDKIM milter: the message as Postfix would write it after OpenDKIM's INSHEADER. */
async function signWithOpendkim(address: string, raw: string): Promise<string> {
  const c = await MilterClient.connect(address);
  try {
    await c.negotiate();
    // 127.0.0.1 is in OpenDKIM's default InternalHosts: mail from there is signed.
    await c.connectStage({ hostname: 'localhost', family: Family.INET, port: 40000, address: '127.0.0.1' });
    await c.helo('localhost');
    const r = await c.message(toSpec(raw, { macros: { mail: [['i', 'QID0001']] } }));
    assert.equal(r.stage, 'eom');
    assert.equal(signatureValues(r.modifications).length, 1, `OpenDKIM added no signature: ${JSON.stringify(r.modifications)}`);
    return applyInserts(raw, r.modifications);
  } finally {
    c.destroy();
  }
}

/** The tampered copies both sides must fail. */
const tampered = (signed: string): Array<[string, string]> => [
  ['body changed', signed.replace('attached below', 'attached BELOW')],
  ['Subject changed', signed.replace('Quarterly_report', 'Quarterly_invoice')],
  ['From added', signed.replace('\r\nFrom: ', '\r\nFrom: mallory@evil.example\r\nFrom: ')],
];

test('OpenDKIM is installed and supports Ed25519 (2.11)', async () => {
  const r = await run('opendkim', ['-V']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /OpenDKIM Filter v2\.1[1-9]/, r.stdout);
  assert.match(r.stdout, /ed25519-sha256/, 'this OpenDKIM build signs and verifies Ed25519');
});

describe('what we sign, OpenDKIM verifies', () => {
  async function signOurs(t: TestContext) {
    const keys = testKeys(t);
    const { connect } = await setup(t, { checks: [dkimSignCheck(keys.config, { keys: keys.store })] });
    const c = await ready(connect);
    const raw = fixture('outbound.eml');
    const r = await c.message(toSpec(raw, { macros: { mail: [['{auth_authen}', 'alice']] } }));
    assert.equal(signatureValues(r.modifications).length, 2);
    return { keys, signed: applyInserts(raw, r.modifications) };
  }

  test('RSA and Ed25519 signatures both pass in OpenDKIM', async (t) => {
    const { keys, signed } = await signOurs(t);
    assert.deepEqual(await opendkimVerify(t, signed, keys.zone), [
      ['rsa-sha256', 'pass'],
      ['ed25519-sha256', 'pass'],
    ]);
  });

  test('a body or header changed after we signed fails in OpenDKIM (and in mailauth)', async (t) => {
    const { keys, signed } = await signOurs(t);
    for (const [what, message] of tampered(signed)) {
      assert.deepEqual(await opendkimVerify(t, message, keys.zone), [
        ['rsa-sha256', 'fail'],
        ['ed25519-sha256', 'fail'],
      ], what);
      assert.ok((await verify(message, keys.zone)).every((r) => r.result !== 'pass'), what);
    }
  });

  test('an opendkim-genkey key moved into our keys dir signs, and its own TXT record verifies', async (t) => {
    const dir = tempDir(t, 'ceerion-opendkim-');
    const gen = await run('opendkim-genkey', ['-b', '2048', '-d', 'example.com', '-s', 'legacy', '-D', dir]);
    assert.equal(gen.code, 0, gen.stderr);
    const keysDir = path.join(dir, 'keys');
    writeNewKey(keysDir, 'example.com', 'unused', 'rsa'); // creates keysDir/example.com 0700
    copyFileSync(path.join(dir, 'legacy.private'), path.join(keysDir, 'example.com', 'legacy.rsa.key'));
    const config = signConfig({ keysDir, selector: 'legacy', algorithms: ['rsa'] });
    const { connect } = await setup(t, { checks: [dkimSignCheck(config, { keys: KeyStore.load(config) })] });
    const raw = fixture('outbound.eml');
    const r = await (await ready(connect)).message(toSpec(raw, { macros: { mail: [['{auth_authen}', 'alice']] } }));
    // Our zone-file reader on OpenDKIM's own zone-file output.
    const zone = { 'legacy._domainkey.example.com': { TXT: [parseZoneFileTxt(readFileSync(path.join(dir, 'legacy.txt'), 'utf8'))] } };
    const signed = applyInserts(raw, r.modifications);
    assert.deepEqual(await opendkimVerify(t, signed, zone), [['rsa-sha256', 'pass']]);
    assert.deepEqual((await verify(signed, zone)).map((x) => x.result), ['pass']);
  });
});

describe('what OpenDKIM signs, we verify', () => {
  for (const algorithm of ['rsa', 'ed25519'] as const) {
    test(`${algorithm}: an OpenDKIM milter signature (key from our keygen) passes in mailauth; tampered copies fail`, async (t) => {
      // Our keygen's PKCS#8 PEM works as OpenDKIM's KeyFile for both algorithms, and our TXT record is the DNS side.
      const keys = testKeys(t, ['example.com'], { algorithms: [algorithm] });
      const [key] = keys.store.keysFor('example.com');
      assert.ok(key);
      const address = await startOpendkimSigner(t, { file: key.path, selector: key.dnsSelector, algorithm });
      const signed = await signWithOpendkim(address, fixture('outbound.eml'));
      const sig = /^DKIM-Signature:\s*(.*(?:\r\n[ \t].*)*)/m.exec(signed)![1]!;
      assert.equal(signedNames(sig).filter((n) => n === 'from').length, 2, 'OpenDKIM oversigned From too');
      assert.deepEqual((await verify(signed, keys.zone)).map((r) => [r.algorithm, r.result]), [[`${algorithm}-sha256`, 'pass']]);
      for (const [what, message] of tampered(signed)) {
        const [result] = await verify(message, keys.zone);
        assert.notEqual(result?.result, 'pass', what);
        assert.deepEqual(await opendkimVerify(t, message, keys.zone), [[`${algorithm}-sha256`, 'fail']], what);
      }
    });
  }
});
