import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { plattFit, Readout, solveRidge } from '../../../classifier/esn/readout.ts';
import { Rng } from '../../../classifier/esn/rng.ts';

/** Plain Gaussian elimination with partial pivoting: the independent reference. */
function gaussSolve(m: number[][], b: number[]): number[] {
  const n = b.length;
  const a = m.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r]![c]!) > Math.abs(a[p]![c]!)) p = r;
    [a[c], a[p]] = [a[p]!, a[c]!];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = a[r]![c]! / a[c]![c]!;
      for (let k = c; k <= n; k++) a[r]![k] = a[r]![k]! - f * a[c]![k]!;
    }
  }
  return a.map((row, i) => row[n]! / row[i]!);
}

/** Direct weighted ridge: (Σ w_i x_i x_iᵀ + ridge I) θ = Σ w_i y_i x_i. */
function directRidge(xs: Float64Array[], ys: number[], ridge: number, weights = xs.map(() => 1)): number[] {
  const d = xs[0]!.length;
  const m = Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => (i === j ? ridge : 0)));
  const b = new Array(d).fill(0);
  xs.forEach((x, e) => {
    for (let i = 0; i < d; i++) {
      b[i] += weights[e]! * ys[e]! * x[i]!;
      for (let j = 0; j < d; j++) m[i]![j] = m[i]![j]! + weights[e]! * x[i]! * x[j]!;
    }
  });
  return gaussSolve(m, b);
}

function data(n: number, d: number, seed = 1) {
  const r = new Rng(seed);
  const truth = Float64Array.from({ length: d }, () => r.gaussian());
  const xs = Array.from({ length: n }, () => Float64Array.from({ length: d }, (_, i) => (i === d - 1 ? 1 : r.uniform(-1, 1))));
  const spam = xs.map((x) => x.reduce((s, v, i) => s + v * truth[i]!, 0) + 0.3 * r.gaussian() > 0);
  return { xs, spam, ys: spam.map((s) => (s ? 1 : -1)) };
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol * Math.max(1, Math.abs(b[i]!)), `[${i}] ${a[i]} vs ${b[i]}`);
};

describe('Readout', () => {
  test('Cholesky ridge solve equals a direct solve', () => {
    const { xs, ys } = data(40, 7);
    const d = 7;
    const lower = new Float64Array(d * d);
    const b = new Float64Array(d);
    for (const [e, x] of xs.entries()) {
      for (let i = 0; i < d; i++) {
        b[i] = b[i]! + ys[e]! * x[i]!;
        for (let j = 0; j <= i; j++) lower[i * d + j] = lower[i * d + j]! + x[i]! * x[j]!;
      }
    }
    close(solveRidge(lower, b, d, 0.5), directRidge(xs, ys, 0.5), 1e-10);
  });

  test('normal equations and RLS (λ_f = 1) both give the ridge solution', () => {
    const { xs, spam, ys } = data(60, 9);
    const ne = new Readout(9, { ridge: 2 });
    const rls = new Readout(9, { ridge: 2, mode: 'rls' });
    xs.forEach((x, i) => {
      ne.learn(x, spam[i]!);
      rls.learn(x, spam[i]!);
    });
    const want = directRidge(xs, ys, 2);
    ne.value(xs[0]!); // lazy solve
    close(ne.weights, want, 1e-9);
    close(rls.weights, want, 1e-8);
  });

  test('RLS forgetting equals exponentially weighted ridge', () => {
    const { xs, spam, ys } = data(50, 6, 3);
    const f = 0.97;
    const rls = new Readout(6, { ridge: 1, mode: 'rls', forgetting: f });
    xs.forEach((x, i) => rls.learn(x, spam[i]!));
    const n = xs.length;
    const weights = xs.map((_, i) => f ** (n - 1 - i));
    close(rls.weights, directRidge(xs, ys, f ** n, weights), 1e-7);
  });

  test('unlearn reverses learn in both modes', () => {
    const { xs, spam } = data(80, 8, 5);
    for (const mode of ['normal-equations', 'rls'] as const) {
      const r = new Readout(8, { mode });
      xs.slice(0, 60).forEach((x, i) => r.learn(x, spam[i]!));
      r.solve();
      const before = Float64Array.from(r.weights);
      xs.slice(60).forEach((x, i) => r.learn(x, spam[60 + i]!));
      r.solve();
      assert.ok(Math.abs(r.weights[0]! - before[0]!) > 1e-6);
      xs.slice(60).forEach((x, i) => r.learn(x, spam[60 + i]!, -1));
      r.solve();
      close(r.weights, before, 1e-8);
    }
  });

  test('resolveEvery debounces the lazy solve', () => {
    const { xs, spam } = data(30, 4, 9);
    const r = new Readout(4, { resolveEvery: 10 });
    xs.slice(0, 10).forEach((x, i) => r.learn(x, spam[i]!));
    r.value(xs[0]!);
    const w = Float64Array.from(r.weights);
    r.learn(xs[10]!, spam[10]!);
    r.value(xs[0]!);
    assert.deepEqual(r.weights, w); // 1 pending learn < 10: weights unchanged
    r.solve();
    assert.notDeepEqual(r.weights, w);
  });

  test('Platt scaling recovers a known logistic model', () => {
    const r = new Rng(11);
    const values: number[] = [];
    const labels: boolean[] = [];
    for (let i = 0; i < 20000; i++) {
      const v = r.uniform(-2, 2);
      values.push(v);
      labels.push(r.next() < 1 / (1 + Math.exp(-(2 * v - 0.5))));
    }
    const { a, b } = plattFit(values, labels);
    assert.ok(Math.abs(a - 2) < 0.15 && Math.abs(b + 0.5) < 0.1, `a ${a} b ${b}`);
    assert.deepEqual(plattFit([1, 2], [true, true]), { a: 3, b: 0 }); // one class: default
  });

  test('cross-validated values come from models that did not see the example', () => {
    const { xs, spam } = data(50, 5, 13);
    const r = new Readout(5, { ridge: 0.01 });
    xs.forEach((x, i) => r.learn(x, spam[i]!));
    const cv = r.crossValues(xs, spam, 5);
    const held = new Readout(5, { ridge: 0.01 });
    xs.forEach((x, i) => i % 5 !== 0 && held.learn(x, spam[i]!));
    assert.ok(Math.abs(cv[0]! - held.value(xs[0]!)) < 1e-9);
  });

  test('serialization round trip in both modes', () => {
    const { xs, spam } = data(40, 6, 17);
    for (const mode of ['normal-equations', 'rls'] as const) {
      const r = new Readout(6, { mode, ridge: 0.7, forgetting: 0.99, resolveEvery: 3 });
      xs.forEach((x, i) => r.learn(x, spam[i]!));
      r.fitCalibration([0.1, -0.2, 0.5], [true, false, true]);
      const s = Readout.deserialize(r.serialize());
      assert.deepEqual(s.options, r.options);
      assert.deepEqual(s.calibration, r.calibration);
      assert.equal(s.value(xs[3]!), r.value(xs[3]!));
      s.learn(xs[0]!, true);
      r.learn(xs[0]!, true);
      assert.ok(s.serialize().equals(r.serialize()));
    }
    assert.throws(() => Readout.deserialize(Buffer.alloc(100)), /magic/);
  });
});
