import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { dayNumber, MAX_DAY, TokenTable } from '../../../classifier/bayes/token-table.ts';

const key = (hi: number, lo: number) => `${hi}:${lo}`;

function sortedEntries(t: TokenTable) {
  return [...t.entries()].sort((a, b) => a.hi - b.hi || a.lo - b.lo);
}

describe('TokenTable', () => {
  test('add, get, size; counts never go below 0; zero counts delete', () => {
    const t = new TokenTable();
    t.add(1, 2, 3, 0, 100);
    t.add(1, 2, 0, 2, 101);
    assert.deepEqual(t.get(1, 2), { hi: 1, lo: 2, spam: 3, ham: 2, lastSeen: 101 });
    t.add(1, 2, -10, 0);
    assert.deepEqual(t.get(1, 2), { hi: 1, lo: 2, spam: 0, ham: 2, lastSeen: 101 });
    assert.equal(t.size, 1);
    t.add(1, 2, 0, -2);
    assert.equal(t.get(1, 2), undefined);
    assert.equal(t.size, 0);
    t.add(9, 9, -1, -1); // subtracting from an absent token stores nothing
    assert.equal(t.size, 0);
    t.add(0, 0, 1, 0); // the all-zero hash is an ordinary key
    assert.equal(t.get(0, 0)?.spam, 1);
  });

  test('lastSeen only moves forward and is clamped to uint16', () => {
    const t = new TokenTable();
    t.add(5, 5, 1, 0, 200);
    t.add(5, 5, 1, 0, 150);
    assert.equal(t.get(5, 5)?.lastSeen, 200);
    t.add(5, 5, 1, 0, 1e9);
    assert.equal(t.get(5, 5)?.lastSeen, MAX_DAY);
    assert.equal(dayNumber(86_400_000 * 3.5), 3);
  });

  test('matches a Map model under random adds and deletes (collisions, growth, backward shift)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: -3, max: 3 }), fc.integer({ min: -3, max: 3 })), { maxLength: 400 }),
        (ops) => {
          const t = new TokenTable();
          const model = new Map<string, [number, number]>();
          for (const [k, ds, dh] of ops) {
            // Keys differing only in hi, and hi values that collide in the low bits, stress probing.
            const hi = (k * 0x10000) >>> 0;
            const lo = k % 7;
            t.add(hi, lo, ds, dh, 1);
            const [s, h] = model.get(key(hi, lo)) ?? [0, 0];
            const ns = Math.max(0, s + ds);
            const nh = Math.max(0, h + dh);
            if (ns + nh === 0) model.delete(key(hi, lo));
            else model.set(key(hi, lo), [ns, nh]);
          }
          assert.equal(t.size, model.size);
          for (const [k, [s, h]] of model) {
            const [hi, lo] = k.split(':').map(Number) as [number, number];
            const e = t.get(hi, lo);
            assert.ok(e, `missing ${k}`);
            assert.equal(e.spam, s);
            assert.equal(e.ham, h);
          }
          let n = 0;
          t.forEach(() => n++);
          assert.equal(n, model.size);
        },
      ),
      { numRuns: 200 },
    );
  });

  test('prune removes stale, rare tokens and shrinks', () => {
    const t = new TokenTable();
    for (let i = 0; i < 1000; i++) t.add(i, i, i < 500 ? 1 : 10, 0, i < 800 ? 10 : 20);
    const cap = t.capacity;
    assert.equal(t.prune(15, 5), 500); // tokens 0..499: seen day 10 and count 1
    assert.equal(t.size, 500);
    assert.ok(t.capacity < cap);
    assert.equal(t.get(10, 10), undefined);
    assert.equal(t.get(600, 600)?.spam, 10);
    assert.equal(t.prune(15), 300); // every token not seen since day 15
    assert.equal(t.size, 200);
    assert.equal(t.prune(15), 0);
  });

  test('serialization round trip and header checks', () => {
    const t = new TokenTable();
    for (let i = 0; i < 5000; i++) t.add((i * 2654435761) >>> 0, i, i % 3, (i % 5) + 0.5, i % 300);
    const buf = t.serialize();
    assert.equal(buf.length, 16 + 18 * 5000);
    assert.equal(buf.toString('latin1', 0, 4), 'CTT1');
    const u = TokenTable.deserialize(buf);
    assert.deepEqual(sortedEntries(u), sortedEntries(t));
    assert.throws(() => TokenTable.deserialize(Buffer.from('nope nope nope nope')), /magic/);
    assert.throws(() => TokenTable.deserialize(buf.subarray(0, 100)), /truncated/);
    const bad = Buffer.from(buf);
    bad.writeUInt16LE(99, 4);
    assert.throws(() => TokenTable.deserialize(bad), /version/);
  });

  test('1M tokens stay well under 50 MB (arrayBuffers delta < 80 MB including growth garbage)', () => {
    const before = process.memoryUsage().arrayBuffers;
    const t = new TokenTable();
    let x = 0x12345678;
    for (let i = 0; i < 1_000_000; i++) {
      // xorshift32 keys: distinct enough, no per-token allocation in the test itself
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      t.add(x >>> 0, i, 1, 0, 19000);
    }
    const after = process.memoryUsage().arrayBuffers;
    assert.ok(t.size > 999_000, `size ${t.size}`);
    assert.ok(t.byteLength < 50 * 2 ** 20, `table ${t.byteLength} bytes`);
    assert.ok(after - before < 80 * 2 ** 20, `arrayBuffers grew by ${((after - before) / 2 ** 20).toFixed(1)} MB`);
    const buf = t.serialize();
    assert.equal(buf.length, 16 + 18 * t.size);
  });
});
