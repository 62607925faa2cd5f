import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type CsrMatrix, DeepESN } from '../../../classifier/esn/reservoir.ts';
import { Rng } from '../../../classifier/esn/rng.ts';

function tokens(seed: number, n: number): Uint32Array {
  const r = new Rng(seed);
  return Uint32Array.from({ length: 2 * n }, () => r.nextU32());
}

/** `steps` steps of `per` tokens each, from a vocabulary of hashes. */
function sequence(vocab: Uint32Array, steps: number, per: number, seed = 1) {
  const r = new Rng(seed);
  const sequence = new Uint32Array(steps * per * 2);
  for (let i = 0; i < steps * per; i++) {
    const t = r.int(vocab.length / 2);
    sequence[2 * i] = vocab[2 * t]!;
    sequence[2 * i + 1] = vocab[2 * t + 1]!;
  }
  return { sequence, steps: Uint32Array.from({ length: steps }, (_, i) => i * per) };
}

const bytes = (a: Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const norm = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, v) => s + v * v, 0));

/**
 * Independent spectral-radius check: dense copy of the matrix, a different start vector, a much
 * longer run, and the growth rate measured over the last half only.
 */
function denseRadius(m: CsrMatrix): number {
  const n = m.rows;
  const dense = Array.from({ length: n }, () => new Float64Array(n));
  for (let i = 0; i < n; i++) for (let j = m.rowPtr[i]!; j < m.rowPtr[i + 1]!; j++) dense[i]![m.col[j]!] = m.val[j]!;
  let v = Float64Array.from({ length: n }, (_, i) => Math.cos(i * 1.7) + 0.1);
  const iters = 4000;
  let logSum = 0;
  for (let it = 0; it < iters; it++) {
    const w = dense.map((row) => row.reduce((s, a, j) => s + a * v[j]!, 0));
    const nw = norm(w);
    if (it >= iters / 2) logSum += Math.log(nw);
    v = Float64Array.from(w, (x) => x / nw);
  }
  return Math.exp(logSum / (iters / 2));
}

describe('Rng', () => {
  test('same seed → same stream, different seed → different stream', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const sa = Array.from({ length: 100 }, () => a.nextU32());
    assert.deepEqual(sa, Array.from({ length: 100 }, () => b.nextU32()));
    assert.notDeepEqual(sa, Array.from({ length: 100 }, () => c.nextU32()));
  });

  test('uniform and gaussian moments', () => {
    const r = new Rng(7);
    const n = 100_000;
    let s = 0;
    let g = 0;
    let g2 = 0;
    for (let i = 0; i < n; i++) {
      const u = r.next();
      assert.ok(u >= 0 && u < 1);
      s += u;
      const z = r.gaussian();
      g += z;
      g2 += z * z;
    }
    assert.ok(Math.abs(s / n - 0.5) < 0.01);
    assert.ok(Math.abs(g / n) < 0.02);
    assert.ok(Math.abs(g2 / n - 1) < 0.03);
    const counts = new Array(7).fill(0);
    for (let i = 0; i < 70_000; i++) counts[r.int(7)]++;
    for (const c of counts) assert.ok(Math.abs(c - 10_000) < 500);
  });
});

describe('DeepESN', () => {
  const vocab = tokens(99, 300);
  const input = sequence(vocab, 64, 8);

  test('feature layout: mean and final state per layer plus a bias', () => {
    const esn = new DeepESN({ reservoirSize: 30, treeDepth: 3 });
    assert.equal(esn.featureSize, 2 * 30 * 3 + 1);
    const out = esn.pool(input);
    assert.equal(out.length, esn.featureSize);
    assert.equal(out[out.length - 1], 1);
  });

  test('same seed and options → bit-identical pooled features; another seed differs', () => {
    const a = new DeepESN({ seed: 5 }).pool(input);
    const b = new DeepESN({ seed: 5 }).pool(input);
    assert.ok(bytes(a).equals(bytes(b)));
    const reused = new DeepESN({ seed: 5 });
    reused.pool(sequence(vocab, 10, 3, 2)); // scratch state from a previous message must not leak
    assert.ok(bytes(reused.pool(input)).equals(bytes(a)));
    const c = new DeepESN({ seed: 6 }).pool(input);
    assert.ok(!bytes(a).equals(bytes(c)));
  });

  test('scaled W has the requested spectral radius (within 5 %, checked independently)', () => {
    for (const [n, rho] of [[50, 0.95], [100, 0.9], [200, 0.99]] as const) {
      const esn = new DeepESN({ reservoirSize: n, spectralRadius: rho, treeDepth: 2, seed: n });
      for (const layer of esn.layers) {
        const measured = denseRadius(layer.w);
        assert.ok(Math.abs(measured - rho) / rho < 0.05, `N=${n}: measured ${measured}, target ${rho}`);
      }
      assert.equal(esn.layers[0]!.inter, null);
      assert.ok(esn.layers[1]!.inter);
      // fixed count of nonzeros per row: round(density · N)
      assert.equal(esn.layers[0]!.w.val.length, n * Math.round(0.1 * n));
    }
  });

  test('input columns come from the token hash: inputNonzeros entries of ±inputScaling, no stored W_in', () => {
    const esn = new DeepESN({ reservoirSize: 1000, inputNonzeros: 8, inputScaling: 0.5 });
    const u = new Float64Array(1000);
    esn.addInput(123, 456, u);
    const nz = Array.from(u).filter((v) => v !== 0);
    assert.ok(nz.length >= 6 && nz.length <= 8);
    assert.ok(nz.every((v) => Math.abs(v) === 0.5 || Math.abs(v) === 1));
    const again = new Float64Array(1000);
    new DeepESN({ reservoirSize: 1000, inputNonzeros: 8, inputScaling: 0.5 }).addInput(123, 456, again);
    assert.deepEqual(again, u);
    const other = new Float64Array(1000);
    esn.addInput(123, 457, other);
    assert.notDeepEqual(other, u);
  });

  test('leak rate: a = 1 replaces the state, small a integrates slowly and remembers longer', () => {
    const n = 80;
    const one = { sequence: new Uint32Array([1, 2, 3, 4]), steps: new Uint32Array([0]) };
    const u = new Float64Array(n);
    new DeepESN({ reservoirSize: n }).addInput(1, 2, u);
    new DeepESN({ reservoirSize: n }).addInput(3, 4, u);
    const full = new DeepESN({ reservoirSize: n, leakRate: 1 }).pool(one);
    const slow = new DeepESN({ reservoirSize: n, leakRate: 0.05 }).pool(one);
    for (let i = 0; i < n; i++) {
      // Layer 0's final state after one step from zero is a·tanh(u) (mean = final for one step).
      assert.ok(Math.abs(full[n + i]! - Math.tanh(u[i]!)) < 1e-4);
      assert.ok(Math.abs(slow[n + i]! - 0.05 * Math.tanh(u[i]!)) < 1e-5);
      assert.equal(full[i], full[n + i]);
    }
    // One token step, then 30 empty steps: how much of layer 0's state is left?
    const pulse = { sequence: new Uint32Array([1, 2]), steps: Uint32Array.from({ length: 31 }, (_, i) => (i === 0 ? 0 : 1)) };
    const remaining = (a: number) => {
      const esn = new DeepESN({ reservoirSize: n, leakRate: a });
      return norm(esn.pool(pulse).subarray(n, 2 * n)) / norm(esn.pool({ sequence: pulse.sequence, steps: new Uint32Array([0]) }).subarray(n, 2 * n));
    };
    assert.ok(remaining(0.1) > 2 * remaining(1), `leak 0.1: ${remaining(0.1)}, leak 1: ${remaining(1)}`);
  });

  test('empty, step-less, malformed and huge inputs: finite, no NaN', () => {
    const esn = new DeepESN({ reservoirSize: 40, treeDepth: 2 });
    const empty = esn.pool({ sequence: new Uint32Array(0), steps: new Uint32Array(0) });
    assert.ok(empty.subarray(0, -1).every((v) => v === 0));
    assert.equal(empty[empty.length - 1], 1);
    const noSteps = esn.pool({ sequence: input.sequence, steps: new Uint32Array(0) });
    const oneStep = esn.pool({ sequence: input.sequence, steps: new Uint32Array([0]) });
    assert.deepEqual(noSteps, oneStep);
    const bad = esn.pool({ sequence: input.sequence.subarray(0, 7), steps: new Uint32Array([5, 2, 4e9, 1]) });
    assert.ok(bad.every(Number.isFinite));
    const huge = sequence(vocab, 1, 100_000);
    const h = esn.pool(huge);
    assert.ok(h.every((v) => Number.isFinite(v) && Math.abs(v) <= 1));
    const long = esn.pool(sequence(vocab, 20_000, 2));
    assert.ok(long.every(Number.isFinite));
  });

  test('pool() speed at N=100, depth 2, 64 steps of 8 tokens (reported, loosely bounded)', () => {
    const esn = new DeepESN({ reservoirSize: 100, treeDepth: 2 });
    const out = new Float64Array(esn.featureSize);
    for (let i = 0; i < 500; i++) esn.pool(input, out);
    const n = 2000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) esn.pool(input, out);
    const ms = (performance.now() - t0) / n;
    console.log(`# pool N=100 depth 2, 64×8 tokens: ${ms.toFixed(3)} ms`);
    assert.ok(ms < 5, `${ms} ms`);
  });

  test('rejects invalid options', () => {
    assert.throws(() => new DeepESN({ reservoirSize: 0 }), RangeError);
    assert.throws(() => new DeepESN({ leakRate: 0 }), RangeError);
    assert.throws(() => new DeepESN({ treeDepth: 0 }), RangeError);
    assert.throws(() => new DeepESN({ density: 2 }), RangeError);
  });
});
