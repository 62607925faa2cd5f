/**
 * `ceerion dkim keygen` and `ceerion dkim show` as an operator runs them: a real child process,
 * real files. The printed zone-file record is parsed back and verifies a signature made with the
 * key the command wrote.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { test } from 'node:test';
import { KeyStore } from '../../milter/dkim/key-store.ts';
import { parseZoneFileTxt } from '../../milter/dkim/keys.ts';
import { MessageSigner } from '../../milter/dkim/signer.ts';
import { fixture, tempDir, verify } from '../fixtures/dkim/mail.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/ceerion.mjs');

function ceerion(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  // The parent's CEERION_* settings and test-runner variables must not leak into the child.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST')));
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env, encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
  });
}

const RECORD = /^(\S+)\.\tIN\tTXT\t\( "v=DKIM1; k=(rsa|ed25519); "\n(\t"p=[^"]*"(\n\t"[^"]*")*) \)\n$/;

test('keygen writes a 0600 key, prints its TXT record, and never overwrites without --force', async (t) => {
  const keysDir = path.join(tempDir(t), 'dkim');
  const first = await ceerion(['dkim', 'keygen', 'Example.com', '--selector', 's2026', '--keys-dir', keysDir]);
  assert.equal(first.code, 0, first.stderr);
  const file = path.join(keysDir, 'example.com', 's2026.rsa.key');
  assert.match(first.stderr, new RegExp(`wrote ${file} \\(mode 0600\\)`));
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(path.join(keysDir, 'example.com')).mode & 0o777, 0o700);
  const m = RECORD.exec(first.stdout);
  assert.ok(m, first.stdout);
  assert.equal(m[1], 's2026._domainkey.example.com');
  assert.ok(parseZoneFileTxt(first.stdout).every((s) => s.length <= 255));

  // The record verifies what the key signs.
  const store = KeyStore.load({ keysDir, selector: 's2026', algorithms: ['rsa'] });
  const signer = new MessageSigner({ keys: store.keysFor('example.com'), headers: ['From', 'Subject'], oversign: ['From'] });
  const raw = fixture('outbound.eml');
  signer.writable.end(raw);
  await finished(signer.writable);
  const [sig] = signer.result().signatures;
  assert.ok(sig);
  const signed = `DKIM-Signature: ${sig.value.replace(/\n/g, '\r\n')}\r\n${raw}`;
  const zone = { [m[1]!]: { TXT: [parseZoneFileTxt(first.stdout)] } };
  assert.deepEqual((await verify(signed, zone)).map((r) => r.result), ['pass']);

  const key = readFileSync(file, 'utf8');
  const again = await ceerion(['dkim', 'keygen', 'example.com', '--selector', 's2026', '--keys-dir', keysDir]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /s2026\.rsa\.key already exists; use --force to replace it/);
  assert.equal(again.stdout, '');
  assert.equal(readFileSync(file, 'utf8'), key, 'the key is untouched');

  const forced = await ceerion(['dkim', 'keygen', 'example.com', '--selector', 's2026', '--keys-dir', keysDir, '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.notEqual(readFileSync(file, 'utf8'), key);
  assert.notEqual(forced.stdout, first.stdout, 'a new key, a new record');
  assert.equal(statSync(file).mode & 0o777, 0o600);
});

test('selector and keys dir default to the config (--config); show prints every key of the domain', async (t) => {
  const dir = tempDir(t);
  const keysDir = path.join(dir, 'keys');
  const config = path.join(dir, 'ceerion.yaml');
  writeFileSync(config, `milter:\n  checks:\n    dkimSign:\n      keysDir: ${keysDir}\n      selector: mail2026\n`);

  const rsa = await ceerion(['dkim', 'keygen', 'example.org', '--config', config]);
  assert.equal(rsa.code, 0, rsa.stderr);
  const ed = await ceerion(['dkim', 'keygen', 'example.org', '--config', config, '--algo', 'ed25519']);
  assert.equal(ed.code, 0, ed.stderr);
  assert.equal(statSync(path.join(keysDir, 'example.org', 'mail2026.rsa.key')).mode & 0o777, 0o600);
  assert.equal(statSync(path.join(keysDir, 'example.org', 'mail2026.ed25519.key')).mode & 0o777, 0o600);
  assert.equal(RECORD.exec(rsa.stdout)?.[1], 'mail2026._domainkey.example.org');
  // Ed25519 is published under its own name: two TXT records at one name would break one signature.
  assert.equal(RECORD.exec(ed.stdout)?.[1], 'mail2026-ed25519._domainkey.example.org');
  assert.match(parseZoneFileTxt(ed.stdout).join(''), /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);

  const show = await ceerion(['dkim', 'show', 'example.org', '--config', config]);
  assert.equal(show.code, 0, show.stderr);
  const records = show.stdout.split(/^; .*\n/m).filter(Boolean);
  assert.deepEqual(records.sort(), [ed.stdout, rsa.stdout].sort(), 'show prints exactly what keygen printed');
  assert.match(show.stdout, /^; ed25519 key .*mail2026\.ed25519\.key$/m);

  const none = await ceerion(['dkim', 'show', 'example.net', '--config', config]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no DKIM keys for example\.net/);

  chmodSync(path.join(keysDir, 'example.org', 'mail2026.rsa.key'), 0o644);
  const unsafe = await ceerion(['dkim', 'show', 'example.org', '--config', config]);
  assert.equal(unsafe.code, 1);
  assert.match(unsafe.stderr, /mail2026\.rsa\.key is not secure: .*\(mode 0644\).*chmod 600/);
});

test('bad arguments are usage errors (exit 2) and write nothing', async (t) => {
  const keysDir = path.join(tempDir(t), 'keys');
  const cases: Array<[string[], RegExp]> = [
    [['dkim', 'keygen', 'not a domain', '--keys-dir', keysDir], /is not a domain name/],
    [['dkim', 'keygen', 'example.com', '--algo', 'dsa', '--keys-dir', keysDir], /--algo must be rsa or ed25519/],
    [['dkim', 'keygen', 'example.com', '--selector', 'bad selector!', '--keys-dir', keysDir], /is not a selector/],
  ];
  for (const [args, message] of cases) {
    const r = await ceerion(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  assert.throws(() => statSync(keysDir), /ENOENT/);
});
