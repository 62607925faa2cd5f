/** Token hashes: pinned values, determinism, distribution, avalanche; the set and the builder. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { begin, finish, hashToken, HashBuilder, HashSet64, hs, prefix, resume, update, updateLower } from '../../../classifier/features/hash.ts';

test('pinned values: learned Bayes databases key on these, so a change must be deliberate', () => {
  const hex = (s: string) => hashToken(s).map((x) => x.toString(16).padStart(8, '0')).join('');
  assert.equal(hex(''), 'ab1a1ebfcdd1069d');
  assert.equal(hex('a'), '27c4e66e867c9f40');
  assert.equal(hex('free'), 'c0864bd13a349fbd');
  assert.equal(hex('subject:free'), '984f87102d329733');
  assert.equal(hex('click here'), 'f6b385b04275a624');
  assert.equal(hex('Grüße'), 'fdaac30839022382');
  assert.equal(hex('😀'), '5e575c0ddf7f9ee6');
});

test('5,000 random strings: deterministic, unsigned halves, prefix continuation equals the concatenation', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 30 }), fc.fullUnicodeString({ maxLength: 30 }), (a, b) => {
      const [hi, lo] = hashToken(a + b);
      assert.deepEqual(hashToken(a + b), [hi, lo]);
      assert.ok(hi >= 0 && hi <= 0xffffffff && Number.isInteger(hi) && lo >= 0 && lo <= 0xffffffff);
      resume(prefix(a));
      update(b, 0, b.length);
      finish();
      assert.deepEqual([hs.hi, hs.lo], [hi, lo]);
    }),
    { numRuns: 5000 },
  );
});

test('updateLower hashes like lower-casing first (ASCII and most of Unicode)', () => {
  for (const w of ['FREE', 'Viagra', 'ÉCOLE', 'ПРИВЕТ', 'straße']) {
    begin();
    updateLower(w, 0, w.length);
    finish();
    assert.deepEqual([hs.hi, hs.lo], hashToken(w.toLowerCase()), w);
  }
});

test('distribution: 200,000 similar tokens, no 64-bit collision, balanced bits, even buckets', () => {
  const N = 200_000;
  const seen = new HashSet64(N);
  const bits = new Array<number>(64).fill(0);
  const buckets = new Uint32Array(256);
  for (let i = 0; i < N; i++) {
    const [hi, lo] = hashToken(`tok${i}`);
    assert.ok(seen.add(hi, lo), `collision at ${i}`);
    for (let k = 0; k < 32; k++) {
      bits[k]! += (hi >>> k) & 1;
      bits[32 + k]! += (lo >>> k) & 1;
    }
    buckets[lo & 0xff]!++;
    buckets[hi >>> 24]!++;
  }
  // Each bit is set with probability 1/2: 5 standard deviations is ±0.56% at N = 200,000.
  for (let k = 0; k < 64; k++) assert.ok(Math.abs(bits[k]! / N - 0.5) < 0.0056, `bit ${k}: ${bits[k]! / N}`);
  // Chi-square over 256 buckets (255 degrees of freedom): 99.99th percentile is about 350.
  const expected = (2 * N) / 256;
  const chi2 = buckets.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
  assert.ok(chi2 < 350, `chi2 ${chi2}`);
});

test('avalanche: changing one character flips about half of the 64 bits', () => {
  let total = 0;
  let n = 0;
  for (let i = 0; i < 2000; i++) {
    const base = `word${i}x`;
    const [h1, l1] = hashToken(base);
    const [h2, l2] = hashToken(base.slice(0, -1) + 'y');
    const pop = (x: number) => {
      let c = 0;
      for (; x; x &= x - 1) c++;
      return c;
    };
    total += pop((h1 ^ h2) >>> 0) + pop((l1 ^ l2) >>> 0);
    n++;
  }
  const mean = total / n;
  assert.ok(mean > 30 && mean < 34, `mean flipped bits ${mean}`);
});

test('HashSet64: add/has, growth far past the initial capacity, clear (also of the (0, 0) hash)', () => {
  const s = new HashSet64(4);
  for (let i = 0; i < 10_000; i++) assert.equal(s.add(i, i * 7), true);
  for (let i = 0; i < 10_000; i++) assert.equal(s.add(i, i * 7), false);
  assert.equal(s.size, 10_000);
  assert.equal(s.has(5, 35), true);
  assert.equal(s.has(5, 36), false);
  s.clear();
  assert.equal(s.size, 0);
  assert.equal(s.has(5, 35), false);
  // (0, 0) is the empty-slot marker inside; as a value it must still behave, through growth and clear.
  assert.equal(s.has(0, 0), false);
  assert.equal(s.add(0, 0), true);
  assert.equal(s.add(0, 0), false);
  for (let i = 1; i < 5000; i++) s.add(0, i);
  assert.equal(s.size, 5000);
  assert.equal(s.has(0, 0), true);
  assert.equal(s.has(0, 4999), true);
  s.clear();
  assert.equal(s.has(0, 0), false);
  assert.equal(s.has(0, 17), false);
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 3000; i++) assert.equal(s.add(i, round), true);
    assert.equal(s.size, 3000);
    s.clear();
  }
});

test('HashSet64 agrees with a Set on 300 random insert/clear sequences', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 50 })), fc.constant(null)), { maxLength: 400 }), (ops) => {
      const s = new HashSet64(2);
      let ref = new Set<string>();
      for (const op of ops) {
        if (op === null) {
          s.clear();
          ref = new Set();
          continue;
        }
        const key = op.join(':');
        assert.equal(s.add(op[0], op[1]), !ref.has(key));
        ref.add(key);
        assert.equal(s.size, ref.size);
      }
    }),
    { numRuns: 300 },
  );
});

test('HashBuilder grows and toArray copies', () => {
  const b = new HashBuilder(1);
  for (let i = 0; i < 1000; i++) b.push(i, 0xffffffff - i);
  const a = b.toArray();
  assert.equal(a.length, 2000);
  assert.equal(a[1998], 999);
  assert.equal(a[1999], 0xffffffff - 999);
  b.reset();
  b.push(1, 2);
  assert.equal(a[0], 0, 'the copy is not affected by reuse');
});
