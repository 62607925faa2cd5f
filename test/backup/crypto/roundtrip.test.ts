// Encrypt then decrypt gives back the plaintext: at the chunk-size edges, through pipeline(), and
// (fast-check) for random sizes, chunk sizes and any re-chunking of the encrypted bytes on the way in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { StreamAuthError } from '../../../backup/contracts.ts';
import { createDecryptStream, createEncryptStream, DEFAULT_CHUNK_BYTES, readHeader } from '../../../backup/crypto/index.ts';
import { bytewise, CHUNK, decrypt, encrypt, ID, KEY, layout, seededBytes, split, TAG } from './helpers.ts';

/** Runs of the round-trip property; the count is cited in the crypto report. */
const RUNS = { roundTrip: 1000 };

const SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17, 5 * CHUNK];

for (const size of SIZES) {
  test(`round trip of ${size} bytes with ${CHUNK}-byte chunks`, async () => {
    const plaintext = seededBytes(size, size + 1);
    const object = await encrypt(plaintext);
    const l = layout(object);
    // Non-final chunks are exactly full; the final one holds the rest (a full one when size is a multiple).
    const chunks = Math.max(1, Math.ceil(size / CHUNK));
    assert.equal(l.chunks.length, chunks);
    assert.equal(object.length, l.headerBytes + size + chunks * TAG);
    for (const pieces of [[object], split(object, [1, l.headerBytes, l.headerBytes + l.full]), bytewise(object)]) {
      const out = await decrypt(pieces);
      assert.equal(out.error, undefined);
      assert.ok(out.pushed.equals(plaintext));
    }
  });
}

test('the same plaintext in 1-byte writes gives the same object', async () => {
  const plaintext = seededBytes(2 * CHUNK + 5, 9);
  const whole = await encrypt(plaintext);
  assert.ok((await encrypt(plaintext, { writes: bytewise(plaintext) })).equals(whole));
  assert.ok((await encrypt(plaintext, { writes: split(plaintext, [CHUNK, CHUNK + 1]) })).equals(whole));
});

test('an encryptor that is only ended writes the header and one empty final chunk', async () => {
  const object = await encrypt(Buffer.alloc(0), { writes: [] });
  const l = layout(object);
  assert.equal(object.length, l.headerBytes + TAG);
  const out = await decrypt([object]);
  assert.equal(out.error, undefined);
  assert.equal(out.pushed.length, 0);
});

test('each object gets its own salt and nonce prefix, so the same bytes encrypt differently', async () => {
  const plaintext = seededBytes(100, 3);
  const a = await encrypt(plaintext, { seed: 1 });
  const b = await encrypt(plaintext, { seed: 2 });
  assert.notDeepEqual(readHeader(a)!.header.salt, readHeader(b)!.header.salt);
  assert.ok(!a.subarray(-116).equals(b.subarray(-116)));
});

test('default chunk size and real randomness, through stream.pipeline', async () => {
  const plaintext = seededBytes(DEFAULT_CHUNK_BYTES * 2 + 12345, 5);
  const encrypted: Buffer[] = [];
  await pipeline(Readable.from(split(plaintext, [1000, 70_000, DEFAULT_CHUNK_BYTES])), createEncryptStream(KEY, ID), sink(encrypted));
  const object = Buffer.concat(encrypted);
  assert.equal(readHeader(object)!.header.chunkBytes, DEFAULT_CHUNK_BYTES);
  const decrypted: Buffer[] = [];
  await pipeline(Readable.from(split(object, [7, 65_536, 1_048_593])), createDecryptStream(KEY, ID), sink(decrypted));
  assert.ok(Buffer.concat(decrypted).equals(plaintext));
});

test('pipeline() rejects with the StreamAuthError', async () => {
  const object = await encrypt(seededBytes(3 * CHUNK, 6));
  await assert.rejects(
    pipeline(Readable.from([object.subarray(0, object.length - 1)]), createDecryptStream(KEY, ID), sink([])),
    (err) => err instanceof StreamAuthError && err.code === 'auth-failed',
  );
});

test('property: any size, chunk size and re-chunking of the object decrypts to the plaintext', async () => {
  const arb = fc
    .record({
      chunkBytes: fc.oneof(fc.constant(4096), fc.integer({ min: 4096, max: 12_288 })),
      chunks: fc.integer({ min: 0, max: 4 }),
      // Near a chunk boundary (where the final-chunk logic lives) or anywhere in the chunk.
      offset: fc.oneof(fc.integer({ min: -TAG - 1, max: TAG + 1 }), fc.nat({ max: 12_287 })),
      seed: fc.integer(),
      writes: fc.oneof(
        { weight: 6, arbitrary: fc.array(fc.nat(), { maxLength: 40 }).map((cuts) => ({ cuts })) },
        { weight: 1, arbitrary: fc.constant('bytewise' as const) },
      ),
    })
    .map((r) => ({ ...r, size: Math.max(0, r.chunks * r.chunkBytes + (r.offset % r.chunkBytes)) }));
  await fc.assert(
    fc.asyncProperty(arb, async ({ chunkBytes, size, seed, writes }) => {
      const plaintext = seededBytes(size, seed);
      const object = await encrypt(plaintext, { chunkBytes, seed });
      const pieces = writes === 'bytewise' ? bytewise(object) : split(object, writes.cuts.map((c) => c % (object.length + 1)));
      const out = await decrypt(pieces);
      assert.equal(out.error, undefined);
      assert.ok(out.pushed.equals(plaintext));
    }),
    { numRuns: RUNS.roundTrip },
  );
});

function sink(into: Buffer[]): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      into.push(chunk);
      callback();
    },
  });
}
