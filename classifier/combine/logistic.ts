/**
 * A small L2-regularised logistic regression fitted by Newton's method (IRLS). The inputs here are
 * a dozen columns (component log-odds and a few signals), so the exact Hessian is cheap and Newton
 * converges in a handful of iterations without learning-rate tuning.
 */

export interface LogisticModel {
  /** weights[0] is the intercept; weights[1..] go with the columns. */
  weights: number[];
  columns: string[];
}

export const sigmoid = (z: number): number => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

/** Log-odds of a probability, clamped so 0 and 1 stay finite (and ordered). */
export function logit(p: number, eps = 1e-9): number {
  const q = Math.min(1 - eps, Math.max(eps, Number.isFinite(p) ? p : 0.5));
  return Math.log(q / (1 - q));
}

export function predict(model: LogisticModel, x: ArrayLike<number>): number {
  let z = model.weights[0] ?? 0;
  for (let j = 0; j < model.columns.length; j++) z += (model.weights[j + 1] ?? 0) * (x[j] ?? 0);
  return sigmoid(z);
}

/** Solves A x = b for a small symmetric positive definite A (Cholesky), in place of A. */
export function solveSpd(a: Float64Array, b: Float64Array, n: number): Float64Array {
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j]!;
    for (let k = 0; k < j; k++) d -= a[j * n + k]! * a[j * n + k]!;
    if (d <= 1e-12) d = 1e-12; // keep going on a (numerically) singular column
    const l = Math.sqrt(d);
    a[j * n + j] = l;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j]!;
      for (let k = 0; k < j; k++) s -= a[i * n + k]! * a[j * n + k]!;
      a[i * n + j] = s / l;
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= a[i * n + k]! * y[k]!;
    y[i] = s / a[i * n + i]!;
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < n; k++) s -= a[k * n + i]! * x[k]!;
    x[i] = s / a[i * n + i]!;
  }
  return x;
}

export interface FitOptions {
  /** L2 penalty on the weights (not the intercept). */
  l2?: number;
  iterations?: number;
  /** Per-row weights, e.g. to make a false positive cost more than a miss. */
  rowWeights?: ArrayLike<number>;
}

/** Fits P(y=1 | x) on rows `x` (each columns.length long) and labels 0/1. */
export function fitLogistic(columns: string[], x: ArrayLike<number>[], y: ArrayLike<number>, opts: FitOptions = {}): LogisticModel {
  const l2 = opts.l2 ?? 1e-2;
  const n = columns.length + 1;
  const w = new Float64Array(n);
  for (let iter = 0; iter < (opts.iterations ?? 25); iter++) {
    const h = new Float64Array(n * n);
    const g = new Float64Array(n);
    for (let r = 0; r < x.length; r++) {
      const row = x[r]!;
      let z = w[0]!;
      for (let j = 1; j < n; j++) z += w[j]! * (row[j - 1] ?? 0);
      const p = sigmoid(z);
      const rw = opts.rowWeights ? (opts.rowWeights[r] ?? 1) : 1;
      const err = (p - (y[r] ?? 0)) * rw;
      const s = Math.max(p * (1 - p), 1e-9) * rw;
      for (let i = 0; i < n; i++) {
        const xi = i === 0 ? 1 : (row[i - 1] ?? 0);
        g[i] = g[i]! + err * xi;
        for (let j = 0; j <= i; j++) {
          const xj = j === 0 ? 1 : (row[j - 1] ?? 0);
          h[i * n + j] = h[i * n + j]! + s * xi * xj;
        }
      }
    }
    for (let i = 1; i < n; i++) {
      g[i] = g[i]! + l2 * w[i]!;
      h[i * n + i] = h[i * n + i]! + l2;
    }
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) h[i * n + j] = h[j * n + i]!;
    const step = solveSpd(h, g, n);
    let moved = 0;
    for (let i = 0; i < n; i++) {
      w[i] = w[i]! - step[i]!;
      moved = Math.max(moved, Math.abs(step[i]!));
    }
    if (moved < 1e-7) break;
  }
  return { weights: Array.from(w), columns: [...columns] };
}
