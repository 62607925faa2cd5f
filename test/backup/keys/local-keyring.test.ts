/**
 * The local keyring on real files in a temp dir: creation (modes, no overwrite), wrap/unwrap and
 * its context binding, rotation, retirement, and every refusal on load.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { KeyError, type KeyContext, type WrappedKey } from '../../../backup/contracts.ts';
import { createLocalKeyProvider, initKeyring, keyringInfo, retireKeyVersion, rotateKeyring } from '../../../backup/keys/local-keyring.ts';
import { rejectsKeyError } from './assert-key-error.ts';

const CTX: KeyContext = { backupId: '20261121T020000Z-3f9a1c', object: 'backups/20261121T020000Z-3f9a1c/' };

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ceerion-keyring-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function newKeyring(t: TestContext): Promise<string> {
  const file = path.join(tempDir(t), 'var', 'backup', 'keyring.json');
  await initKeyring(file, new Date('2026-01-01T00:00:00Z'));
  return file;
}

function writeRing(file: string, doc: unknown, mode = 0o600): void {
  writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc));
  chmodSync(file, mode);
}

const KEY32 = Buffer.alloc(32, 7).toString('base64');
const RING = { format: 'ceerion-keyring/1', id: '0123456789abcdef', current: 1, keys: [{ version: 1, key: KEY32, created: '2026-01-01T00:00:00.000Z' }] };

test('init: file 0600 in a new folder 0700, format and one 32-byte key; refuses to overwrite', async (t) => {
  const file = await newKeyring(t);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700);
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(doc.format, 'ceerion-keyring/1');
  assert.match(doc.id, /^[0-9a-f]{16}$/);
  assert.equal(doc.current, 1);
  assert.equal(doc.keys.length, 1);
  assert.equal(Buffer.from(doc.keys[0].key, 'base64').length, 32);
  assert.equal(doc.keys[0].created, '2026-01-01T00:00:00.000Z');

  const before = readFileSync(file, 'utf8');
  await rejectsKeyError(initKeyring(file), /already exists/, /refusing to overwrite/);
  assert.equal(readFileSync(file, 'utf8'), before);
  assert.deepEqual(readdirSync(path.dirname(file)), ['keyring.json'], 'no temp file left behind');
});

test('wrap/unwrap: 32-byte key, wrapped is nonce‖ct‖tag under the current version, fresh nonce each time', async (t) => {
  const file = await newKeyring(t);
  const p = createLocalKeyProvider(file);
  const { id } = keyringInfo(file);
  const a = await p.generateDataKey(CTX);
  const b = await p.generateDataKey(CTX);
  assert.equal(a.plaintext.length, 32);
  assert.deepEqual({ ...a.wrapped, wrapped: '' }, { provider: 'local', keyId: id, version: '1', wrapped: '' });
  assert.equal(Buffer.from(a.wrapped.wrapped, 'base64').length, 12 + 32 + 16);
  assert.notEqual(a.wrapped.wrapped, b.wrapped.wrapped);
  assert.ok(!a.plaintext.equals(b.plaintext));
  assert.deepEqual(await p.unwrap(a.wrapped, CTX), a.plaintext);
  // A second provider (a later command) opens it too.
  assert.deepEqual(await createLocalKeyProvider(file).unwrap(a.wrapped, CTX), a.plaintext);
  assert.equal(await p.currentVersion(), '1');
});

test('unwrap refuses another backup, another object, a tampered byte, a relabelled version, a bad length', async (t) => {
  const file = await newKeyring(t);
  await rotateKeyring(file);
  const p = createLocalKeyProvider(file);
  const { wrapped } = await p.generateDataKey(CTX);
  await rejectsKeyError(p.unwrap(wrapped, { ...CTX, backupId: 'other' }), /cannot unwrap/, /another backup or object/);
  await rejectsKeyError(p.unwrap(wrapped, { ...CTX, object: 'backups/other/' }), /cannot unwrap/);
  const raw = Buffer.from(wrapped.wrapped, 'base64');
  for (const at of [0, 11, 12, 43, 44, 59]) {
    const bad = Buffer.from(raw);
    bad[at]! ^= 1;
    await rejectsKeyError(p.unwrap({ ...wrapped, wrapped: bad.toString('base64') }, CTX), /cannot unwrap/);
  }
  await rejectsKeyError(p.unwrap({ ...wrapped, version: '1' }, CTX), /cannot unwrap/);
  await rejectsKeyError(p.unwrap({ ...wrapped, version: '9' }, CTX), /key version 9 is not in keyring/);
  await rejectsKeyError(p.unwrap({ ...wrapped, version: 'v2' }, CTX), /not a keyring version/);
  await rejectsKeyError(p.unwrap({ ...wrapped, wrapped: raw.subarray(0, 40).toString('base64') }, CTX), /is 40 bytes; expected 60/);
  await rejectsKeyError(p.unwrap({ ...wrapped, wrapped: 'not base64!' }, CTX), /not base64/);
  await rejectsKeyError(p.unwrap({ ...wrapped, provider: 'vault' }, CTX), /provider "vault"/, /backup.keys.provider is "local"/);
  await rejectsKeyError(p.generateDataKey({ backupId: '', object: 'x' }), /non-empty backupId and object/);
});

test('unwrap names both keyrings when the backup was wrapped by another one', async (t) => {
  const mine = createLocalKeyProvider(await newKeyring(t));
  const otherFile = await newKeyring(t);
  const other = createLocalKeyProvider(otherFile);
  const { wrapped } = await other.generateDataKey(CTX);
  const mineId = (await mine.generateDataKey(CTX)).wrapped.keyId;
  await rejectsKeyError(mine.unwrap(wrapped, CTX), new RegExp(`wrapped by keyring ${wrapped.keyId}, this is keyring ${mineId}`));
});

test('rotation: version 2 becomes current, version 1 backups still open, rewrap moves them to 2', async (t) => {
  const file = await newKeyring(t);
  const v1 = await createLocalKeyProvider(file).generateDataKey(CTX);
  const info = await rotateKeyring(file, new Date('2026-02-01T00:00:00Z'));
  assert.equal(info.current, 2);
  assert.deepEqual(info.versions.map((x) => [x.version, x.created]), [[1, '2026-01-01T00:00:00.000Z'], [2, '2026-02-01T00:00:00.000Z']]);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(path.dirname(file)), ['keyring.json']);

  const p = createLocalKeyProvider(file);
  assert.equal(await p.currentVersion(), '2');
  assert.deepEqual(await p.unwrap(v1.wrapped, CTX), v1.plaintext);
  const fresh = await p.generateDataKey(CTX);
  assert.equal(fresh.wrapped.version, '2');

  const moved = await p.rewrap(v1.wrapped, CTX);
  assert.equal(moved.version, '2');
  assert.equal(moved.keyId, v1.wrapped.keyId);
  assert.deepEqual(await p.unwrap(moved, CTX), v1.plaintext);
  assert.equal(await p.rewrap(moved, CTX), moved, 'already current: returned unchanged');
  await rejectsKeyError(p.rewrap(v1.wrapped, { ...CTX, object: 'elsewhere/' }), /cannot unwrap/);
});

test('retire: material removed and recorded; unwrap names the retirement; never the current version', async (t) => {
  const file = await newKeyring(t);
  const v1 = await createLocalKeyProvider(file).generateDataKey(CTX);
  await rejectsKeyError(retireKeyVersion(file, 1), /current version/, /rotate/);
  await rotateKeyring(file);
  const rewrapped = await createLocalKeyProvider(file).rewrap(v1.wrapped, CTX);

  const info = await retireKeyVersion(file, 1, new Date('2026-03-01T00:00:00Z'));
  assert.deepEqual(info.versions[0], { version: 1, created: '2026-01-01T00:00:00.000Z', retired: '2026-03-01T00:00:00.000Z' });
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(doc.keys[0].key, undefined, 'version 1 material is gone from the file');
  assert.equal(statSync(file).mode & 0o777, 0o600);

  const p = createLocalKeyProvider(file);
  await rejectsKeyError(
    p.unwrap(v1.wrapped, CTX),
    new RegExp(`key version 1 of keyring ${v1.wrapped.keyId} was retired on 2026-03-01T00:00:00.000Z`),
    /run `ceerion backup rewrap` before retiring/,
  );
  assert.deepEqual(await p.unwrap(rewrapped, CTX), v1.plaintext);
  await rejectsKeyError(retireKeyVersion(file, 1), /already retired on 2026-03-01/);
  await rejectsKeyError(retireKeyVersion(file, 7), /has no key version 7/);
  assert.equal((await rotateKeyring(file)).current, 3, 'version numbers are never reused');
});

test('load refuses a missing file, naming the init command', async (t) => {
  const file = path.join(tempDir(t), 'nope.json');
  await rejectsKeyError(() => createLocalKeyProvider(file), new RegExp(`keyring ${file} does not exist`), /ceerion backup keyring init/);
  await rejectsKeyError(rotateKeyring(file), /does not exist/);
});

test('load refuses a keyring readable by group or others, saying the mode and chmod 600', async (t) => {
  const file = await newKeyring(t);
  for (const mode of [0o644, 0o640, 0o604, 0o660]) {
    chmodSync(file, mode);
    const shown = mode.toString(8).padStart(4, '0');
    await rejectsKeyError(() => createLocalKeyProvider(file), new RegExp(`has mode ${shown}`), new RegExp(`chmod 600 ${file}`));
  }
  chmodSync(file, 0o400);
  assert.equal(createLocalKeyProvider(file).name, 'local', 'owner-only read is fine');
});

test('load refuses bad JSON, wrong format, bad id, short keys, non-base64 keys and a missing or retired current', async (t) => {
  const file = path.join(tempDir(t), 'keyring.json');
  const cases: [unknown, RegExp][] = [
    ['{"format":', /is not valid JSON/],
    ['[]', /is not a JSON object/],
    [{ ...RING, format: 'other/1' }, /format "other\/1", expected "ceerion-keyring\/1"/],
    [{ ...RING, id: 'XYZ' }, /no valid id/],
    [{ ...RING, keys: [] }, /has no keys/],
    [{ ...RING, keys: [{ ...RING.keys[0], key: Buffer.alloc(16).toString('base64') }] }, /key version 1 is 16 bytes; keys are 32 bytes/],
    [{ ...RING, keys: [{ ...RING.keys[0], key: Buffer.alloc(33).toString('base64') }] }, /key version 1 is 33 bytes; keys are 32 bytes/],
    [{ ...RING, keys: [{ ...RING.keys[0], key: '***' }] }, /key version 1 is not base64/],
    [{ ...RING, keys: [{ ...RING.keys[0], key: undefined }] }, /key version 1 is not base64/],
    [{ ...RING, keys: [RING.keys[0], RING.keys[0]] }, /lists key version 1 twice/],
    [{ ...RING, keys: [{ ...RING.keys[0], created: 'yesterday' }] }, /no valid "created" time/],
    [{ ...RING, current: 2 }, /names current version 2, which it does not contain/],
    [{ ...RING, current: undefined }, /names current version undefined/],
    [
      { ...RING, keys: [{ version: 1, created: RING.keys[0]!.created, retired: '2026-02-01T00:00:00Z' }, { ...RING.keys[0], version: 2 }] },
      /names current version 1, which is retired/,
    ],
    [{ ...RING, keys: [{ ...RING.keys[0], retired: '2026-02-01T00:00:00Z' }] }, /marked retired but still holds key material/],
  ];
  for (const [doc, re] of cases) {
    writeRing(file, doc);
    await rejectsKeyError(() => createLocalKeyProvider(file), new RegExp(`keyring ${file}`), re);
  }
  writeRing(file, RING);
  const p = createLocalKeyProvider(file);
  const { wrapped, plaintext } = await p.generateDataKey(CTX);
  assert.equal(wrapped.keyId, '0123456789abcdef');
  assert.deepEqual(await p.unwrap(wrapped, CTX), plaintext);
});
