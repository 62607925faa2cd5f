// The pure parts: header codec (tables, every prefix, every bad field), nonces and the counter
// limit, key derivation, the byte queue, and locateChunk checked against node's own AES-GCM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import fc from 'fast-check';
import { StreamAuthError } from '../../../backup/contracts.ts';
import { createEncryptStream } from '../../../backup/crypto/index.ts';
import { locateChunk } from '../../../backup/crypto/locate-chunk.ts';
import {
  ByteQueue,
  chunkNonce,
  deriveObjectKey,
  encodeHeader,
  MAX_CHUNK_BYTES,
  MAX_HEADER_BYTES,
  readHeader,
  type StreamHeader,
} from '../../../backup/crypto/stream-format.ts';
import { ID, KEY, seededBytes } from './helpers.ts';

/** Runs of the locateChunk property; the count is cited in the crypto report. */
const RUNS = { locate: 300 };

const HEADER: StreamHeader = {
  version: 1,
  chunkBytes: 4096,
  salt: seededBytes(32, 1),
  noncePrefix: seededBytes(7, 2),
  backupId: ID.backupId,
  name: ID.name,
};

test('header: encodes to the documented layout and reads back', () => {
  const bytes = encodeHeader(HEADER);
  const id = Buffer.from(ID.backupId);
  const name = Buffer.from(ID.name);
  const expected = Buffer.concat([
    Buffer.from('CEERBAK1'),
    Buffer.from([1, 0, 0, 0x10, 0]),
    HEADER.salt,
    HEADER.noncePrefix,
    Buffer.from([0, id.length]),
    id,
    Buffer.from([0, name.length]),
    name,
  ]);
  assert.deepEqual(bytes, expected);
  assert.deepEqual(readHeader(Buffer.concat([bytes, Buffer.from('chunk bytes')])), { header: HEADER, length: bytes.length });
});

test('header: every proper prefix asks for more bytes, and so does an empty buffer', () => {
  const bytes = encodeHeader({ ...HEADER, backupId: 'b'.repeat(255), name: 'ä'.repeat(127) });
  assert.equal(bytes.length, MAX_HEADER_BYTES - 1);
  for (let n = 0; n < bytes.length; n++) assert.equal(readHeader(bytes.subarray(0, n)), undefined, `prefix ${n}`);
  assert.equal(readHeader(bytes)!.header.name, 'ä'.repeat(127));
});

test('header: ids keep a leading BOM and any Unicode', () => {
  for (const name of ['\ufeffdb.dump', 'maildir/ü/日本.tar', '😀']) {
    assert.equal(readHeader(encodeHeader({ ...HEADER, name }))!.header.name, name);
  }
});

test('header: each bad field is bad-header, as soon as that field has arrived', () => {
  const good = encodeHeader(HEADER);
  const at = { version: 8, chunkBytes: 9, idLength: 52 } as const;
  const patch = (offset: number, bytes: number[]) => {
    const b = Buffer.from(good);
    Buffer.from(bytes).copy(b, offset);
    return b;
  };
  const idStart = at.idLength + 2;
  const idEnd = idStart + ID.backupId.length;
  const cases: Array<[string, Buffer, RegExp, number]> = [
    ['magic', patch(0, [0x43, 0x45, 0x45, 0x52, 0x42, 0x41, 0x4b, 0x32]), /wrong magic/, 8],
    ['first byte', patch(0, [0]), /wrong magic/, 1],
    ['version 0', patch(at.version, [0]), /unknown format version 0/, 9],
    ['chunk size 4095', patch(at.chunkBytes, [0, 0, 0x0f, 0xff]), /chunk size 4095 outside/, 13],
    ['chunk size 16 MiB + 1', patch(at.chunkBytes, [1, 0, 0, 1]), /chunk size 16777217 outside/, 13],
    ['chunk size 0', patch(at.chunkBytes, [0, 0, 0, 0]), /chunk size 0 outside/, 13],
    ['empty backup id', patch(at.idLength, [0, 0]), /backup id length 0 outside 1\.\.255/, 54],
    ['backup id of 256', patch(at.idLength, [1, 0]), /backup id length 256/, 54],
    ['invalid UTF-8 id', patch(idStart, [0xc3, 0x28]), /backup id is not valid UTF-8/, idEnd],
    ['NUL in the id', patch(idStart + 3, [0]), /backup id contains NUL/, idEnd],
    ['name of 65535', patch(idEnd, [0xff, 0xff]), /object name length 65535/, idEnd + 2],
  ];
  for (const [what, bytes, message, failsAt] of cases) {
    assert.throws(() => readHeader(bytes), (err) => err instanceof StreamAuthError && err.code === 'bad-header' && message.test(err.message), what);
    // Fails on exactly the bytes that carry the bad field, not later.
    assert.throws(() => readHeader(bytes.subarray(0, failsAt)), StreamAuthError, what);
    if (failsAt > 1) assert.equal(readHeader(bytes.subarray(0, failsAt - 1)), undefined, what);
  }
  assert.equal(MAX_CHUNK_BYTES, 16 * 1024 * 1024);
});

test('encryptor: rejects ids and options the header cannot carry', () => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ name: '' }, /name "" is empty/],
    [{ backupId: 'x'.repeat(256) }, /backupId .* is 256 bytes of UTF-8, over 255/],
    [{ name: 'ü'.repeat(128) }, /over 255/],
    [{ name: 'a\0b' }, /contains NUL/],
    [{ name: 'lone \ud800 surrogate' }, /not well-formed Unicode/],
    [{ backupId: 7 }, /not a string/],
  ];
  for (const [patch, message] of bad) {
    assert.throws(() => createEncryptStream(KEY, { ...ID, ...patch } as typeof ID), { message });
  }
  for (const chunkBytes of [4095, 16 * 1024 * 1024 + 1, 4096.5]) {
    assert.throws(() => createEncryptStream(KEY, ID, { chunkBytes }), /chunkBytes must be an integer in 4096\.\.16777216/);
  }
  assert.throws(() => createEncryptStream(KEY, ID, { random: (n) => Buffer.alloc(n - 1) }), /salt must be 32 bytes, got 31/);
});

test('nonce: prefix, counter and last flag; the 2^32nd chunk is refused', () => {
  const prefix = Buffer.from('01020304050607', 'hex');
  assert.equal(chunkNonce(prefix, 0, false).toString('hex'), '010203040506070000000000');
  assert.equal(chunkNonce(prefix, 258, true).toString('hex'), '010203040506070000010201');
  assert.equal(chunkNonce(prefix, 2 ** 32 - 1, true).toString('hex'), '01020304050607ffffffff01');
  assert.throws(() => chunkNonce(prefix, 2 ** 32, false), { name: 'RangeError', message: /too many chunks/ });
  assert.throws(() => chunkNonce(prefix, -1, false), RangeError);
});

test('key: HKDF over salt, backup id and name; each one changes the key', () => {
  const base = deriveObjectKey(KEY, { ...ID, salt: HEADER.salt });
  assert.equal(base.length, 32);
  assert.deepEqual(deriveObjectKey(KEY, { ...ID, salt: HEADER.salt }), base);
  const variants = [
    deriveObjectKey(KEY, { ...ID, salt: seededBytes(32, 9) }),
    deriveObjectKey(KEY, { ...ID, backupId: ID.backupId + 'x', salt: HEADER.salt }),
    deriveObjectKey(KEY, { ...ID, name: ID.name + 'x', salt: HEADER.salt }),
    deriveObjectKey(seededBytes(32, 5), { ...ID, salt: HEADER.salt }),
  ];
  for (const v of variants) assert.notDeepEqual(v, base);
});

test('byte queue: takes and peeks across writes, consuming exactly what it hands out', () => {
  const q = new ByteQueue();
  const data = seededBytes(100_000, 4);
  for (let at = 0; at < data.length; at += 7) q.push(data.subarray(at, at + 7));
  q.push(Buffer.alloc(0));
  assert.equal(q.length, data.length);
  assert.deepEqual(q.peek(10), data.subarray(0, 10));
  assert.deepEqual(Buffer.concat(q.take(30_000)), data.subarray(0, 30_000));
  assert.deepEqual(q.takeJoined(5), data.subarray(30_000, 30_005));
  assert.deepEqual(q.peek(69_995), data.subarray(30_005));
  assert.throws(() => q.peek(69_996), RangeError);
  assert.deepEqual(Buffer.concat(q.take(q.length)), data.subarray(30_005));
  assert.equal(q.length, 0);
  assert.throws(() => q.take(1), RangeError);
});

test('property: locateChunk finds a GCM chunk at its index, flag and length, with any bytes after it', () => {
  const key = seededBytes(32, 11);
  const prefix = seededBytes(7, 12);
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 300 }),
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      fc.integer({ min: -256, max: 256 }),
      fc.boolean(),
      fc.integer({ min: 0, max: 40 }),
      fc.integer(),
      (size, around, delta, last, after, seed) => {
        const index = Math.min(2 ** 32 - 1, Math.max(0, around + delta));
        const aad = seededBytes(32, seed);
        const cipher = createCipheriv('aes-256-gcm', key, chunkNonce(prefix, index, last));
        cipher.setAAD(aad);
        const sealed = Buffer.concat([cipher.update(seededBytes(size, seed + 1)), cipher.final(), cipher.getAuthTag()]);
        const bytes = Buffer.concat([sealed, seededBytes(after, seed + 2)]);
        const found = locateChunk(key, aad, prefix, bytes, around, bytes.length);
        assert.deepEqual(found, [{ index, last, length: sealed.length }]);
        // Outside the window, or with another AAD, nothing.
        const distance = Math.abs(index - around);
        if (distance > 0) assert.deepEqual(locateChunk(key, aad, prefix, bytes, around, bytes.length, distance - 1), []);
        assert.deepEqual(locateChunk(key, seededBytes(32, seed + 3), prefix, bytes, around, bytes.length), []);
      },
    ),
    { numRuns: RUNS.locate },
  );
});
