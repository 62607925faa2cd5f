// Tampering at random: one flipped byte or a cut at any offset of a random object, fed in a random
// chunking. The decryptor must fail with the code (and chunk) that the offset implies, and what it
// pushed before failing must be exactly the chunks before the damage: never a wrong byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { StreamAuthError } from '../../../backup/contracts.ts';
import { assertPrefix, assertStreamError, decrypt, encrypt, layout, seededBytes, split, TAG, type Layout } from './helpers.ts';

/** Runs per property; the counts are cited in the crypto report. */
const RUNS = { flip: 1500, truncate: 1500 };

const objectArb = fc
  .record({
    chunkBytes: fc.oneof(fc.constant(4096), fc.integer({ min: 4096, max: 10_000 })),
    chunks: fc.integer({ min: 0, max: 3 }),
    offset: fc.oneof(fc.integer({ min: -TAG - 1, max: TAG + 1 }), fc.nat({ max: 9_999 })),
    seed: fc.integer(),
    cuts: fc.array(fc.nat(), { maxLength: 12 }),
    /** Where the damage goes, as a fraction of the object (so it scales with any size). */
    at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
    /** Half the time aim at the header, where every field has its own failure. */
    inHeader: fc.boolean(),
  })
  .map((r) => ({ ...r, size: Math.max(0, r.chunks * r.chunkBytes + (r.offset % r.chunkBytes)) }));

async function sample(r: { chunkBytes: number; size: number; seed: number }) {
  const plaintext = seededBytes(r.size, r.seed);
  const object = await encrypt(plaintext, { chunkBytes: r.chunkBytes, seed: r.seed });
  return { plaintext, object, l: layout(object) };
}

function damageOffset(l: Layout, length: number, at: number, inHeader: boolean): number {
  return inHeader ? Math.floor(at * l.headerBytes) : l.headerBytes + Math.floor(at * (length - l.headerBytes));
}

test('property: a flipped byte anywhere fails with the code its place implies, after only true plaintext', async () => {
  await fc.assert(
    fc.asyncProperty(objectArb, fc.integer({ min: 1, max: 255 }), async (r, mask) => {
      const { plaintext, object, l } = await sample(r);
      const offset = damageOffset(l, object.length, r.at, r.inHeader);
      const tampered = Buffer.from(object);
      tampered[offset]! ^= mask;
      const out = await decrypt(split(tampered, r.cuts.map((c) => c % tampered.length)));
      assertPrefix(out.pushed, plaintext);
      if (offset < l.headerBytes) {
        // Magic, version, chunk size and lengths: bad-header; an id: another object's header; salt,
        // nonce prefix or a chunk size still in range: the AAD (or key) changes and chunk 0 fails.
        const err = out.error;
        assert.ok(err instanceof StreamAuthError, String(err));
        assert.ok(['bad-header', 'header-mismatch', 'auth-failed'].includes(err.code), err.message);
        if (err.code === 'auth-failed') assert.equal(err.chunk, 0);
        assert.equal(out.pushed.length, 0);
      } else {
        const k = Math.floor((offset - l.headerBytes) / l.full);
        assertStreamError(out, 'auth-failed', k);
        assert.equal(out.pushed.length, k * (l.full - TAG));
      }
    }),
    { numRuns: RUNS.flip },
  );
});

test('property: a cut at any offset fails with the code its place implies, after only true plaintext', async () => {
  await fc.assert(
    fc.asyncProperty(objectArb, async (r) => {
      const { plaintext, object, l } = await sample(r);
      const cut = damageOffset(l, object.length, r.at, r.inHeader);
      const truncated = object.subarray(0, cut);
      const out = await decrypt(split(truncated, r.cuts.map((c) => c % (truncated.length + 1))));
      assertPrefix(out.pushed, plaintext);
      if (cut < l.headerBytes) {
        assertStreamError(out, 'bad-header');
        assert.equal(out.pushed.length, 0);
        return;
      }
      const chunkPlain = l.full - TAG;
      const k = Math.floor((cut - l.headerBytes) / l.full);
      const into = (cut - l.headerBytes) % l.full;
      if (into === 0) {
        // At a boundary: the chunk before verifies only as non-final, so it is held back too.
        assertStreamError(out, 'truncated', k);
        assert.equal(out.pushed.length, Math.max(0, k - 1) * chunkPlain);
      } else {
        // Inside chunk k: with less than a tag left it is plainly cut; with more, its tag is gone
        // and it cannot be told from a tampered chunk.
        assertStreamError(out, into < TAG ? 'truncated' : 'auth-failed', k);
        assert.equal(out.pushed.length, k * chunkPlain);
      }
    }),
    { numRuns: RUNS.truncate },
  );
});
