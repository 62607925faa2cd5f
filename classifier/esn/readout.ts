/**
 * Linear readout of the pooled reservoir features, target y = +1 (spam) / −1 (ham).
 *
 * Two ways to keep it trained online:
 *  - 'normal-equations' (default): keep A = Σ c·x xᵀ and b = Σ c·y x exactly (c = ±1, so unlearn
 *    subtracts what learn added) and solve (A + ridge·I) w = b by Cholesky, lazily: the first
 *    value() after `resolveEvery` learns re-solves. O(D²) a learn, O(D³/6) a solve (D = 401:
 *    ~10 ms). Only the lower triangle of A is maintained.
 *  - 'rls': recursive least squares with forgetting factor λ_f (the Memory trait): P = A⁻¹ and w
 *    are updated by Sherman–Morrison in O(D²) a learn, no solves. Unlearn is the rank-1 downdate,
 *    exact up to rounding when λ_f = 1, approximate with forgetting (the old contribution has
 *    since decayed, so this removes a little too much).
 * Forgetting in normal-equations mode decays A and b the same way (the ridge stays constant).
 *
 * The readout value maps to a probability with Platt scaling sigmoid(a·v + b): fitCalibration()
 * fits (a, b) on labelled values (ideally held-out ones); online learning keeps the current pair.
 */

export type ReadoutMode = 'normal-equations' | 'rls';

export interface ReadoutOptions {
  /** Ridge (Tikhonov) regulariser λ added to the diagonal. */
  ridge: number;
  mode: ReadoutMode;
  /** Forgetting factor λ_f in (0, 1]; 1 = remember everything. */
  forgetting: number;
  /** Normal-equations mode: re-solve at most once per this many learns. */
  resolveEvery: number;
}

export const READOUT_DEFAULTS: Readonly<ReadoutOptions> = Object.freeze({
  ridge: 1,
  mode: 'normal-equations',
  forgetting: 1,
  resolveEvery: 1,
});

/** Platt parameters: p = 1 / (1 + exp(−(a·v + b))). The default treats v ∈ [−1, 1] as 5 %…95 %. */
export interface Calibration {
  a: number;
  b: number;
}

const MAGIC = 0x4f445243; // "CRDO"
const VERSION = 1;

export class Readout {
  readonly dim: number;
  readonly options: Readonly<ReadoutOptions>;
  /** Current weights (solved lazily in normal-equations mode; call value() or solve() first). */
  readonly weights: Float64Array;
  calibration: Calibration = { a: 3, b: 0 };
  /** Normal equations, or P = A⁻¹ in RLS mode (dim × dim, row-major). */
  private readonly mat: Float64Array;
  private readonly rhs: Float64Array;
  private pending = 0;
  private solved = true;

  constructor(dim: number, options: Partial<ReadoutOptions> = {}) {
    this.dim = dim;
    const o = (this.options = Object.freeze({ ...READOUT_DEFAULTS, ...options }));
    if (!(o.ridge > 0)) throw new RangeError('readout: ridge must be > 0');
    if (!(o.forgetting > 0 && o.forgetting <= 1)) throw new RangeError('readout: forgetting must be in (0, 1]');
    this.weights = new Float64Array(dim);
    this.mat = new Float64Array(dim * dim);
    this.rhs = new Float64Array(o.mode === 'rls' ? 0 : dim);
    if (o.mode === 'rls') for (let i = 0; i < dim; i++) this.mat[i * dim + i] = 1 / o.ridge;
  }

  /** Adds (weight +1) or removes (−1) one example; `spam` selects the target +1 / −1. */
  learn(x: Float64Array, spam: boolean, weight: 1 | -1 = 1): void {
    const y = spam ? 1 : -1;
    if (this.options.mode === 'rls') this.rlsUpdate(x, y, weight);
    else this.accumulate(x, y, weight);
  }

  private accumulate(x: Float64Array, y: number, c: number): void {
    const { dim: n, mat, rhs } = this;
    const f = c > 0 ? this.options.forgetting : 1;
    for (let i = 0; i < n; i++) {
      const cx = c * x[i]!;
      const row = i * n;
      if (f === 1) {
        for (let j = 0; j <= i; j++) mat[row + j] = mat[row + j]! + cx * x[j]!;
      } else {
        for (let j = 0; j <= i; j++) mat[row + j] = f * mat[row + j]! + cx * x[j]!;
      }
      rhs[i] = f * rhs[i]! + cx * y;
    }
    this.pending++;
    this.solved = false;
  }

  /** Sherman–Morrison on A' = λA + c·x xᵀ: gain k = c·Px / (λ + c·xᵀPx), P' = (P − k (Px)ᵀ)/λ. */
  private rlsUpdate(x: Float64Array, y: number, c: number): void {
    const { dim: n, mat: p, weights: w } = this;
    const lambda = c > 0 ? this.options.forgetting : 1;
    const px = new Float64Array(n);
    let xpx = 0;
    let pred = 0;
    for (let i = 0; i < n; i++) {
      let s = 0;
      const row = i * n;
      for (let j = 0; j < n; j++) s += p[row + j]! * x[j]!;
      px[i] = s;
      xpx += x[i]! * s;
      pred += w[i]! * x[i]!;
    }
    const denom = lambda + c * xpx;
    // A downdate that would make A singular (removing the only evidence along x) is skipped.
    if (!(Math.abs(denom) > 1e-12)) return;
    const g = c / denom;
    const err = y - pred;
    for (let i = 0; i < n; i++) w[i] = w[i]! + g * px[i]! * err;
    // Update the lower triangle and mirror it, so P stays exactly symmetric (and serialising
    // only the lower triangle loses nothing).
    const inv = 1 / lambda;
    for (let i = 0; i < n; i++) {
      const row = i * n;
      const gi = g * px[i]!;
      for (let j = 0; j <= i; j++) {
        const v = (p[row + j]! - gi * px[j]!) * inv;
        p[row + j] = v;
        p[j * n + i] = v;
      }
    }
  }

  /** Solves (A + ridge·I) w = b now (normal-equations mode). */
  solve(): void {
    if (this.options.mode === 'rls') return;
    this.weights.set(solveRidge(this.mat, this.rhs, this.dim, this.options.ridge));
    this.pending = 0;
    this.solved = true;
  }

  /** The raw readout w·x (re-solving first if enough learns are pending). */
  value(x: Float64Array): number {
    if (!this.solved && (this.pending >= this.options.resolveEvery || allZero(this.weights))) this.solve();
    const w = this.weights;
    let s = 0;
    for (let i = 0; i < this.dim; i++) s += w[i]! * x[i]!;
    return s;
  }

  probability(value: number): number {
    const z = this.calibration.a * value + this.calibration.b;
    return 1 / (1 + Math.exp(-z));
  }

  /**
   * Normal-equations mode: readout values of `xs` from models that did not see them (k-fold:
   * A_fold = A − Σ_{held out} x xᵀ), for an honest Platt fit. The examples must already have
   * been learned.
   */
  crossValues(xs: Float64Array[], spam: boolean[], folds = 5): Float64Array {
    if (this.options.mode === 'rls') throw new Error('readout: crossValues needs normal-equations mode');
    const n = this.dim;
    const out = new Float64Array(xs.length);
    for (let f = 0; f < folds; f++) {
      const mat = this.mat.slice();
      const rhs = this.rhs.slice();
      for (let e = f; e < xs.length; e += folds) {
        const x = xs[e]!;
        const y = spam[e] ? 1 : -1;
        for (let i = 0; i < n; i++) {
          const xi = x[i]!;
          for (let j = 0; j <= i; j++) mat[i * n + j] = mat[i * n + j]! - xi * x[j]!;
          rhs[i] = rhs[i]! - xi * y;
        }
      }
      const w = solveRidge(mat, rhs, n, this.options.ridge);
      for (let e = f; e < xs.length; e += folds) out[e] = dot(w, xs[e]!);
    }
    return out;
  }

  /** Fits and installs Platt's (a, b) on readout values and their labels. */
  fitCalibration(values: ArrayLike<number>, spam: ArrayLike<boolean>): Calibration {
    this.calibration = plattFit(values, spam);
    return this.calibration;
  }

  /**
   * Header "CRDO", version u16, mode u8, then float64 dim, ridge, forgetting, resolveEvery,
   * calibration a, b, pending, solved; then the lower triangle of the matrix (A or P),
   * then b (normal equations only) and w.
   */
  serialize(): Buffer {
    const n = this.dim;
    const tri = (n * (n + 1)) / 2;
    const nums = [n, this.options.ridge, this.options.forgetting, this.options.resolveEvery, this.calibration.a, this.calibration.b, this.pending, this.solved ? 1 : 0];
    const buf = Buffer.alloc(8 + 8 * nums.length + 8 * (tri + this.rhs.length + n));
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    dv.setUint32(0, MAGIC, true);
    dv.setUint16(4, VERSION, true);
    dv.setUint8(6, this.options.mode === 'rls' ? 1 : 0);
    let o = 8;
    const put = (v: number) => {
      dv.setFloat64(o, v, true);
      o += 8;
    };
    nums.forEach(put);
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) put(this.mat[i * n + j]!);
    this.rhs.forEach(put);
    this.weights.forEach(put);
    return buf;
  }

  static deserialize(buf: Uint8Array): Readout {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    if (buf.byteLength < 72 || dv.getUint32(0, true) !== MAGIC) throw new Error('readout: bad magic');
    if (dv.getUint16(4, true) !== VERSION) throw new Error('readout: unsupported version');
    const mode: ReadoutMode = dv.getUint8(6) === 1 ? 'rls' : 'normal-equations';
    let o = 8;
    const get = () => {
      const v = dv.getFloat64(o, true);
      o += 8;
      return v;
    };
    const [n, ridge, forgetting, resolveEvery, a, b, pending, solved] = Array.from({ length: 8 }, get) as [number, number, number, number, number, number, number, number];
    const need = 72 + 8 * ((n * (n + 1)) / 2 + (mode === 'rls' ? 0 : n) + n);
    if (buf.byteLength < need) throw new Error('readout: truncated');
    const r = new Readout(n, { ridge, mode, forgetting, resolveEvery });
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        const v = get();
        r.mat[i * n + j] = v;
        if (mode === 'rls') r.mat[j * n + i] = v; // P is used in full
      }
    }
    for (let i = 0; i < r.rhs.length; i++) r.rhs[i] = get();
    for (let i = 0; i < n; i++) r.weights[i] = get();
    r.calibration = { a, b };
    r.pending = pending;
    r.solved = solved === 1;
    return r;
  }
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function allZero(w: Float64Array): boolean {
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
  return true;
}

/**
 * Solves (A + ridge·I) w = b with A given by its lower triangle (row-major n×n). Cholesky
 * L Lᵀ in a copy; the inner loops run along rows, so both operands are contiguous.
 */
export function solveRidge(a: Float64Array, b: Float64Array, n: number, ridge: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let s = a[ri + j]! + (i === j ? ridge : 0);
      for (let k = 0; k < j; k++) s -= l[ri + k]! * l[rj + k]!;
      if (i === j) {
        // Rounding after many learn/unlearn pairs can push a pivot to ≤ 0; ridge keeps it sane.
        l[ri + i] = Math.sqrt(s > 0 ? s : ridge);
      } else {
        l[ri + j] = s / l[rj + j]!;
      }
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= l[i * n + k]! * y[k]!;
    y[i] = s / l[i * n + i]!;
  }
  const w = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < n; k++) s -= l[k * n + i]! * w[k]!;
    w[i] = s / l[i * n + i]!;
  }
  return w;
}

/**
 * Platt scaling by Newton's method with backtracking (Lin, Lin & Weng 2007), with Platt's
 * smoothed targets so a perfectly separated training set does not give infinite slopes.
 */
export function plattFit(values: ArrayLike<number>, spam: ArrayLike<boolean>): Calibration {
  const len = values.length;
  let pos = 0;
  for (let i = 0; i < len; i++) if (spam[i]) pos++;
  const neg = len - pos;
  if (pos === 0 || neg === 0) return { a: 3, b: 0 };
  const hi = (pos + 1) / (pos + 2);
  const lo = 1 / (neg + 2);
  const t = Float64Array.from({ length: len }, (_, i) => (spam[i] ? hi : lo));
  // Model p = 1/(1+exp(A·f + B)) as in the paper; returned as a = −A, b = −B.
  let A = 0;
  let B = Math.log((neg + 1) / (pos + 1));
  const loss = (A: number, B: number) => {
    let s = 0;
    for (let i = 0; i < len; i++) {
      const f = values[i]! * A + B;
      s += f >= 0 ? t[i]! * f + Math.log1p(Math.exp(-f)) : (t[i]! - 1) * f + Math.log1p(Math.exp(f));
    }
    return s;
  };
  let fval = loss(A, B);
  for (let it = 0; it < 100; it++) {
    let h11 = 1e-12;
    let h22 = 1e-12;
    let h21 = 0;
    let g1 = 0;
    let g2 = 0;
    for (let i = 0; i < len; i++) {
      const f = values[i]! * A + B;
      const p = f >= 0 ? Math.exp(-f) / (1 + Math.exp(-f)) : 1 / (1 + Math.exp(f));
      const q = 1 - p;
      const d2 = p * q;
      const v = values[i]!;
      h11 += v * v * d2;
      h22 += d2;
      h21 += v * d2;
      const d1 = t[i]! - p;
      g1 += v * d1;
      g2 += d1;
    }
    if (Math.abs(g1) < 1e-5 && Math.abs(g2) < 1e-5) break;
    const det = h11 * h22 - h21 * h21;
    const dA = -(h22 * g1 - h21 * g2) / det;
    const dB = -(-h21 * g1 + h11 * g2) / det;
    const gd = g1 * dA + g2 * dB;
    let step = 1;
    while (step >= 1e-10) {
      const nA = A + step * dA;
      const nB = B + step * dB;
      const nf = loss(nA, nB);
      if (nf < fval + 1e-4 * step * gd) {
        A = nA;
        B = nB;
        fval = nf;
        break;
      }
      step /= 2;
    }
    if (step < 1e-10) break;
  }
  return { a: -A, b: -B };
}
