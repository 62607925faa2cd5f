import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HEADROOM, MAX_PART_BYTES, MAX_PARTS, maxObjectBytes, MiB, MIN_PART_BYTES, partSizeFor, queueSizeFor } from '../../../backup/storage/part-size.ts';

const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

describe('partSizeFor', () => {
  const table: [string, number | undefined, number, number][] = [
    ['no estimate: the minimum', undefined, 16 * MiB, 16 * MiB],
    ['no estimate, minimum rounded up to a MiB', undefined, 5 * MiB + 1, 6 * MiB],
    ['empty object', 0, 5 * MiB, 5 * MiB],
    ['the minimum already fits 100 GiB', 100 * GiB, 16 * MiB, 16 * MiB],
    ['60 GiB × 1.25 / 10,000 = 7.68 MiB → 8 MiB', 60 * GiB, 5 * MiB, 8 * MiB],
    ['1 TiB × 1.25 / 10,000 = 131.07 MiB → 132 MiB', TiB, 16 * MiB, 132 * MiB],
    ['exactly 10,000 parts of 8 MiB with headroom', (MAX_PARTS * 8 * MiB) / HEADROOM, 5 * MiB, 8 * MiB],
    ['one byte more needs 9 MiB', (MAX_PARTS * 8 * MiB) / HEADROOM + 1, 5 * MiB, 9 * MiB],
    ['beyond 5 GiB parts: capped', 50 * TiB, 5 * MiB, MAX_PART_BYTES],
  ];
  for (const [name, expected, min, part] of table) {
    it(name, () => assert.equal(partSizeFor(expected, min), part));
  }

  it('rejects sizes S3 cannot take and estimates that are not byte counts', () => {
    assert.throws(() => partSizeFor(undefined, 4 * MiB), RangeError);
    assert.throws(() => partSizeFor(undefined, MAX_PART_BYTES + 1), RangeError);
    assert.throws(() => partSizeFor(undefined, Number.NaN), RangeError);
    assert.throws(() => partSizeFor(-1, 5 * MiB), RangeError);
    assert.throws(() => partSizeFor(Number.POSITIVE_INFINITY, 5 * MiB), RangeError);
  });

  it('is the smallest MiB multiple ≥ the minimum that fits the estimate with headroom (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 60 * TiB }), fc.integer({ min: MIN_PART_BYTES, max: 64 * MiB }), (expected, min) => {
        const part = partSizeFor(expected, min);
        assert.equal(part % MiB, 0);
        assert.ok(part >= min || part === MAX_PART_BYTES);
        assert.ok(part <= MAX_PART_BYTES);
        if (part < MAX_PART_BYTES) assert.ok(maxObjectBytes(part) >= expected * HEADROOM);
        // One MiB less would break a rule.
        const smaller = part - MiB;
        assert.ok(smaller < min || maxObjectBytes(smaller) < expected * HEADROOM);
      }),
    );
  });

  it('maxObjectBytes: 16 MiB parts (the default) hold 156.25 GiB', () => {
    assert.equal(maxObjectBytes(16 * MiB), 156.25 * GiB);
  });
});

describe('queueSizeFor', () => {
  it('keeps part × queue within the configured budget, never below one part', () => {
    assert.equal(queueSizeFor(16 * MiB, 16 * MiB, 4), 4);
    assert.equal(queueSizeFor(32 * MiB, 16 * MiB, 4), 2);
    assert.equal(queueSizeFor(40 * MiB, 16 * MiB, 4), 1);
    assert.equal(queueSizeFor(640 * MiB, 16 * MiB, 4), 1);
    for (const part of [16, 20, 33, 64, 100, 5000]) {
      const q = queueSizeFor(part * MiB, 16 * MiB, 4);
      assert.ok(q >= 1 && (q === 1 || q * part <= 64), `${part} MiB → ${q}`);
    }
  });
});
