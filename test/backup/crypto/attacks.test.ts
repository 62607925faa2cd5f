// One test per way an encrypted object can go wrong, each with the error code it must produce, the
// chunk it names, and what was pushed before (only chunks that verified, so a prefix).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createDecryptStream, createEncryptStream } from '../../../backup/crypto/index.ts';
import {
  assertPrefix,
  assertStreamError,
  CHUNK,
  chunkBytesOf,
  decrypt,
  encrypt,
  ID,
  KEY,
  layout,
  seededBytes,
  split,
  TAG,
} from './helpers.ts';

// Five chunks: four full, and a 100-byte final one.
const PLAINTEXT = seededBytes(4 * CHUNK + 100, 42);
const OBJECT = await encrypt(PLAINTEXT);
const L = layout(OBJECT);
const chunk = (i: number) => chunkBytesOf(OBJECT, L, i);
const header = OBJECT.subarray(0, L.headerBytes);
const withChunks = (...parts: Buffer[]) => Buffer.concat([header, ...parts]);

test('the object under attack has the expected layout', () => {
  assert.equal(L.chunks.length, 5);
  assert.equal(chunk(4).length, 100 + TAG);
});

test('one flipped ciphertext byte: auth-failed at that chunk, earlier chunks delivered', async () => {
  const tampered = Buffer.from(OBJECT);
  tampered[L.chunks[2]![0] + 1000]! ^= 0x01;
  const out = await decrypt(split(tampered, [10, 5000]));
  const err = assertStreamError(out, 'auth-failed', 2);
  assert.match(err.message, /chunk 2 does not verify: tampered/);
  assert.ok(out.pushed.equals(PLAINTEXT.subarray(0, 2 * CHUNK)));
});

test('a flipped tag byte in the final chunk: auth-failed at the final chunk', async () => {
  const tampered = Buffer.from(OBJECT);
  tampered[OBJECT.length - 1]! ^= 0x80;
  const out = await decrypt([tampered]);
  assertStreamError(out, 'auth-failed', 4);
  assert.ok(out.pushed.equals(PLAINTEXT.subarray(0, 4 * CHUNK)));
});

test('the last chunk cut inside its tag: truncated', async () => {
  const cut = OBJECT.subarray(0, L.chunks[4]![0] + TAG - 6);
  const out = await decrypt([cut]);
  const err = assertStreamError(out, 'truncated', 4);
  assert.match(err.message, /ends inside chunk 4/);
  assert.ok(out.pushed.equals(PLAINTEXT.subarray(0, 4 * CHUNK)));
});

test('the last chunk cut leaving 16+ bytes: auth-failed that says it may be cut short', async () => {
  // A final chunk missing its end cannot be told from a tampered one: neither tag verifies, and
  // the format has no length to compare with. The message names both causes.
  const out = await decrypt([OBJECT.subarray(0, OBJECT.length - 1)]);
  const err = assertStreamError(out, 'auth-failed', 4);
  assert.match(err.message, /tampered.*or the object was cut short/);
});

test('cut at a chunk boundary: truncated, naming the first missing chunk', async () => {
  for (const missingFrom of [1, 3, 4]) {
    const cut = OBJECT.subarray(0, L.chunks[missingFrom]![0]);
    const out = await decrypt(split(cut, [L.headerBytes + 1]));
    const err = assertStreamError(out, 'truncated', missingFrom);
    assert.match(err.message, new RegExp(`after chunk ${missingFrom - 1}, which is not the final chunk`));
    // The last chunk before the cut verified only as non-final, so it is withheld.
    assert.ok(out.pushed.equals(PLAINTEXT.subarray(0, (missingFrom - 1) * CHUNK)));
  }
});

test('nothing after the header: truncated at chunk 0', async () => {
  const out = await decrypt([header]);
  assertStreamError(out, 'truncated', 0);
  assert.equal(out.pushed.length, 0);
});

test('two chunks swapped: reordered, saying which chunk it is', async () => {
  const swapped = withChunks(chunk(0), chunk(2), chunk(1), chunk(3), chunk(4));
  const out = await decrypt([swapped]);
  const err = assertStreamError(out, 'reordered', 1);
  assert.match(err.message, /chunk 1 is chunk 2 of this object/);
  assert.ok(out.pushed.equals(PLAINTEXT.subarray(0, CHUNK)));
});

test('the short final chunk moved forward: reordered, as the final chunk', async () => {
  const moved = withChunks(chunk(0), chunk(4), chunk(1), chunk(2), chunk(3));
  const err = assertStreamError(await decrypt([moved]), 'reordered', 1);
  assert.match(err.message, /chunk 1 is chunk 4, the final chunk/);
});

test('a chunk dropped from the middle: reordered (chunk 2 is chunk 3)', async () => {
  const dropped = withChunks(chunk(0), chunk(1), chunk(3), chunk(4));
  const err = assertStreamError(await decrypt([dropped]), 'reordered', 2);
  assert.match(err.message, /chunk 2 is chunk 3 of this object/);
});

test('a chunk from another backup’s object at the same index: auth-failed', async () => {
  // Same data key and object name: only the backup id (and so the key and header) differs.
  const other = await encrypt(seededBytes(PLAINTEXT.length, 43), { id: { ...ID, backupId: '20261122T020000Z-000000' } });
  const spliced = withChunks(chunk(0), chunk(1), chunkBytesOf(other, layout(other), 2), chunk(3), chunk(4));
  const out = await decrypt([spliced]);
  const err = assertStreamError(out, 'auth-failed', 2);
  assert.match(err.message, /spliced in from another object/);
  assert.ok(out.pushed.equals(PLAINTEXT.subarray(0, 2 * CHUNK)));
});

test('a chunk from another object of the same backup: auth-failed', async () => {
  const other = await encrypt(PLAINTEXT, { id: { ...ID, name: 'maildir.tar.zst' } });
  const spliced = withChunks(chunk(0), chunkBytesOf(other, layout(other), 1), chunk(2), chunk(3), chunk(4));
  assertStreamError(await decrypt([spliced]), 'auth-failed', 1);
});

test('a whole object from another backup: header-mismatch naming both', async () => {
  const otherId = { ...ID, backupId: '20261114T020000Z-aaaaaa' };
  const other = await encrypt(PLAINTEXT, { id: otherId });
  const out = await decrypt([other]);
  const err = assertStreamError(out, 'header-mismatch');
  assert.match(err.message, /this is the object 20261114T020000Z-aaaaaa\/db\.dump\.zst, expected 20261121T020000Z-3f9a1c\/db\.dump\.zst/);
  assert.equal(out.pushed.length, 0);
});

test('another object’s header on this object’s chunks: auth-failed at chunk 0', async () => {
  // The header is in every chunk's AAD, so a rewritten header (salt, ids, chunk size) fails at once.
  const other = await encrypt(PLAINTEXT, { seed: 99 });
  const mixed = Buffer.concat([other.subarray(0, L.headerBytes), OBJECT.subarray(L.headerBytes)]);
  assertStreamError(await decrypt([mixed]), 'auth-failed', 0);
});

test('a wrong data key: auth-failed at chunk 0, "wrong key or tampered"', async () => {
  const wrongKey = Buffer.from(KEY);
  wrongKey[31]! ^= 1;
  const out = await decrypt([OBJECT], wrongKey);
  const err = assertStreamError(out, 'auth-failed', 0);
  assert.match(err.message, /wrong key or tampered/);
  assert.equal(out.pushed.length, 0);
});

test('trailing bytes after a short final chunk: trailing-data, nothing of the final chunk pushed', async () => {
  for (const extra of [Buffer.from([0]), Buffer.from('\n'), seededBytes(300, 1), seededBytes(CHUNK + TAG + 1, 2)]) {
    const out = await decrypt(split(Buffer.concat([OBJECT, extra]), [OBJECT.length - 3]));
    const err = assertStreamError(out, 'trailing-data', 4);
    assert.match(err.message, /follow the final chunk \(chunk 4, 116 bytes\)/);
    assert.ok(out.pushed.equals(PLAINTEXT.subarray(0, 4 * CHUNK)));
  }
});

test('trailing bytes after a full-size final chunk, and an object appended to itself: trailing-data', async () => {
  const exact = seededBytes(2 * CHUNK, 8);
  const object = await encrypt(exact);
  for (const extra of [Buffer.from([1]), object]) {
    const out = await decrypt([object, extra]);
    assertStreamError(out, 'trailing-data', 1);
    assertPrefix(out.pushed, exact);
  }
  assertStreamError(await decrypt([OBJECT, OBJECT]), 'trailing-data', 4);
});

test('garbage, a foreign file and a cut header: bad-header, on the first bytes when it can', async () => {
  const cases: Array<[string, Buffer, RegExp]> = [
    ['random bytes', seededBytes(5000, 3), /wrong magic/],
    ['a gzip file', Buffer.from('1f8b0800000000000003', 'hex'), /wrong magic/],
    ['an empty stream', Buffer.alloc(0), /ends 0 bytes into the header/],
    ['a header cut short', header.subarray(0, header.length - 1), /ends \d+ bytes into the header/],
    ['format version 2', Buffer.concat([header.subarray(0, 8), Buffer.from([2]), header.subarray(9)]), /unknown format version 2/],
  ];
  for (const [what, bytes, message] of cases) {
    const out = await decrypt([bytes]);
    assert.match(assertStreamError(out, 'bad-header').message, message, what);
    assert.equal(out.pushed.length, 0);
  }
  // Wrong magic is reported on the very first byte written, without waiting for the end.
  const stream = createDecryptStream(KEY, ID);
  const failed = new Promise((resolve) => stream.once('error', resolve));
  stream.write(Buffer.from('P'));
  assert.equal((await failed as { code: string }).code, 'bad-header');
});

test('a header declaring chunks over maxChunkBytes: bad-header (the decryptor would have to hold one)', async () => {
  const big = await encrypt(seededBytes(10, 1), { chunkBytes: 64 * 1024 });
  const stream = createDecryptStream(KEY, ID, { maxChunkBytes: 16 * 1024 });
  const failed = new Promise<{ code: string; message: string }>((resolve) => stream.once('error', resolve));
  stream.end(big);
  const err = await failed;
  assert.equal(err.code, 'bad-header');
  assert.match(err.message, /chunk size 65536 over the limit 16384/);
});

test('a 31- or 33-byte data key: a clear error before anything is written', () => {
  for (const length of [31, 33, 0]) {
    const message = new RegExp(`^data key must be 32 bytes, got ${length}$`);
    assert.throws(() => createEncryptStream(Buffer.alloc(length), ID), { message });
    assert.throws(() => createDecryptStream(Buffer.alloc(length), ID), { message });
  }
});
