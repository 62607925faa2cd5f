/**
 * Deep echo state network (Gallicchio & Micheli's DeepESN): `treeDepth` leaky-tanh reservoirs
 * stacked so layer 0 reads the tokens and layer k > 0 reads layer k−1's fresh state.
 *
 *   x_k ← (1 − a)·x_k + a·tanh(W_k x_k + in_k),   in_0 = Σ_{tokens of the step} column(token),
 *                                                  in_k = W_inter,k x_{k−1}
 *
 * Input weights are never stored. A token's column of W_in is derived on the fly from
 * (seed, 64-bit token hash): `inputNonzeros` positions and ±inputScaling signs come from
 * successive mix32 hashes of the token. So the vocabulary is unbounded, needs no memory, and a
 * token means the same thing in every process that shares the seed. (Two of a column's positions
 * may coincide; they then simply add.)
 *
 * Recurrent weights are sparse (CSR) with a fixed count of round(density·N) nonzeros per row,
 * uniform in [−1, 1], rescaled so the spectral radius equals `spectralRadius` (estimated from the
 * norm growth of a power iteration; a random sparse matrix's spectrum is a disc, so plain
 * eigenvector power iteration would not converge, but the growth rate does).
 *
 * Speed: per layer, W_k and W_inter,k are fused into one CSR matrix over the concatenated state
 * of all layers, so each step is one sparse pass per layer, and tanh is a table lookup with linear
 * interpolation (|error| < 2e-6).
 */
import type { MessageFeatures } from '../types.ts';
import { mix32, mix32i, Rng } from './rng.ts';

export interface ReservoirOptions {
  /** Units per layer (N). */
  reservoirSize: number;
  spectralRadius: number;
  /** a in (0, 1]: 1 = no leak (state fully replaced each step). */
  leakRate: number;
  inputScaling: number;
  /** Fraction of nonzeros in each W_k and W_inter,k. */
  density: number;
  /** Nonzeros in a token's (virtual) input column. */
  inputNonzeros: number;
  /** Stacked layers. */
  treeDepth: number;
  /** Scale of the inter-layer weights (uniform in [−interScaling, interScaling]). */
  interScaling: number;
  seed: number;
}

export const RESERVOIR_DEFAULTS: Readonly<ReservoirOptions> = Object.freeze({
  reservoirSize: 100,
  spectralRadius: 0.95,
  leakRate: 0.3,
  inputScaling: 1,
  density: 0.1,
  inputNonzeros: 8,
  treeDepth: 2,
  interScaling: 1,
  seed: 1,
});

/** Compressed sparse rows of an n×cols matrix. */
export interface CsrMatrix {
  rows: number;
  cols: number;
  rowPtr: Int32Array;
  col: Int32Array;
  val: Float64Array;
}

export function csrMatVec(m: CsrMatrix, x: Float64Array, out: Float64Array): Float64Array {
  const { rowPtr, col, val } = m;
  for (let i = 0; i < m.rows; i++) {
    let s = 0;
    for (let j = rowPtr[i]!; j < rowPtr[i + 1]!; j++) s += val[j]! * x[col[j]!]!;
    out[i] = s;
  }
  return out;
}

/** A rows×cols matrix with exactly `perRow` distinct random columns per row, values uniform in ±scale. */
export function randomSparse(rng: Rng, rows: number, cols: number, perRow: number, scale: number): CsrMatrix {
  const k = Math.max(1, Math.min(cols, perRow));
  const rowPtr = new Int32Array(rows + 1);
  const col = new Int32Array(rows * k);
  const val = new Float64Array(rows * k);
  const pool = Int32Array.from({ length: cols }, (_, i) => i);
  for (let i = 0; i < rows; i++) {
    // Partial Fisher–Yates picks k distinct columns; sorted so the pass over x is monotone.
    for (let j = 0; j < k; j++) {
      const r = j + Math.floor(rng.next() * (cols - j));
      const t = pool[j]!;
      pool[j] = pool[r]!;
      pool[r] = t;
    }
    const picked = pool.slice(0, k).sort();
    for (let j = 0; j < k; j++) {
      col[i * k + j] = picked[j]!;
      val[i * k + j] = rng.uniform(-scale, scale);
    }
    rowPtr[i + 1] = (i + 1) * k;
  }
  return { rows, cols, rowPtr, col, val };
}

/**
 * Spectral radius of a square matrix from the mean log growth of ‖W^t v‖ over `iterations`
 * steps after `warmup` steps (the warm-up removes the start vector's transient).
 */
export function spectralRadius(m: CsrMatrix, seed = 0x5eed, iterations = 600, warmup = 200): number {
  const rng = new Rng(seed);
  let v = Float64Array.from({ length: m.rows }, () => rng.uniform(-1, 1));
  let w = new Float64Array(m.rows);
  let logSum = 0;
  for (let it = 0; it < warmup + iterations; it++) {
    csrMatVec(m, v, w);
    let norm = 0;
    for (let i = 0; i < w.length; i++) norm += w[i]! * w[i]!;
    norm = Math.sqrt(norm);
    if (norm === 0 || !Number.isFinite(norm)) return 0;
    if (it >= warmup) logSum += Math.log(norm);
    for (let i = 0; i < w.length; i++) w[i] = w[i]! / norm;
    [v, w] = [w, v];
  }
  return Math.exp(logSum / iterations);
}

/**
 * tanh by linear interpolation in a table over [−8, 8] at 1/256 spacing (4,098 entries, 32 KB):
 * |error| < 2e-6, about 6× cheaper than Math.tanh and 1.7× cheaper than a rational approximation,
 * which matters because it runs N·depth times per step. Beyond ±8, tanh is 1 to within 2.3e-7.
 */
const TANH_RANGE = 8;
const TANH_STEPS = 256;
const TANH_TABLE = Float64Array.from({ length: 2 * TANH_RANGE * TANH_STEPS + 2 }, (_, i) => Math.tanh(i / TANH_STEPS - TANH_RANGE));
const TANH_LAST = 2 * TANH_RANGE * TANH_STEPS;

export function tanhFast(x: number): number {
  const t = (x + TANH_RANGE) * TANH_STEPS;
  if (!(t > 0)) return -1; // also maps NaN to −1 rather than poisoning the state
  if (t >= TANH_LAST) return 1;
  const i = t | 0;
  const a = TANH_TABLE[i]!;
  return a + (TANH_TABLE[i + 1]! - a) * (t - i);
}

export interface ReservoirLayer {
  /** Recurrent weights (N×N), already scaled to the spectral radius. */
  w: CsrMatrix;
  /** Weights from the previous layer (N×N); null for layer 0. */
  inter: CsrMatrix | null;
}

type SequenceInput = Pick<MessageFeatures, 'sequence' | 'steps'>;

export class DeepESN {
  readonly options: Readonly<ReservoirOptions>;
  readonly layers: ReservoirLayer[];
  /** Length of pool()'s output: mean and final state per layer, plus a constant 1. */
  readonly featureSize: number;
  private readonly seedKey: number;
  /** Per layer: W_k and W_inter,k fused, columns indexing the all-layer state vector. */
  private readonly fused: CsrMatrix[];
  private readonly state: Float64Array;
  private readonly pre: Float64Array;
  private readonly sums: Float64Array;

  constructor(options: Partial<ReservoirOptions> = {}) {
    const o = (this.options = Object.freeze({ ...RESERVOIR_DEFAULTS, ...options }));
    const n = o.reservoirSize;
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new RangeError('reservoir: reservoirSize must be an integer in 1..65535');
    if (!Number.isInteger(o.treeDepth) || o.treeDepth < 1) throw new RangeError('reservoir: treeDepth must be an integer ≥ 1');
    if (!(o.leakRate > 0 && o.leakRate <= 1)) throw new RangeError('reservoir: leakRate must be in (0, 1]');
    if (!(o.density > 0 && o.density <= 1)) throw new RangeError('reservoir: density must be in (0, 1]');
    if (!Number.isInteger(o.inputNonzeros) || o.inputNonzeros < 1) throw new RangeError('reservoir: inputNonzeros must be an integer ≥ 1');
    this.seedKey = mix32((o.seed >>> 0) ^ 0x243f6a88);
    const rng = new Rng(o.seed);
    const perRow = Math.max(1, Math.round(o.density * n));
    this.layers = [];
    for (let k = 0; k < o.treeDepth; k++) {
      const w = randomSparse(rng, n, n, perRow, 1);
      const rho = spectralRadius(w, mix32(o.seed + k + 1));
      if (rho > 0) for (let j = 0; j < w.val.length; j++) w.val[j] = (w.val[j]! * o.spectralRadius) / rho;
      const inter = k === 0 ? null : randomSparse(rng, n, n, perRow, o.interScaling);
      this.layers.push({ w, inter });
    }
    this.fused = this.layers.map((l, k) => fuse(l, k, n, o.treeDepth));
    this.featureSize = 2 * n * o.treeDepth + 1;
    this.state = new Float64Array(n * o.treeDepth);
    this.pre = new Float64Array(n);
    this.sums = new Float64Array(n * o.treeDepth);
  }

  /** Adds a token's input column (times `times`) into `u` (length N). */
  addInput(hi: number, lo: number, u: Float64Array, times = 1): void {
    const n = this.options.reservoirSize;
    const s = this.options.inputScaling * times;
    const key = mix32i(lo ^ mix32i(hi ^ this.seedKey));
    for (let j = 1; j <= this.options.inputNonzeros; j++) {
      const r = mix32i((key + Math.imul(j, 0x9e3779b9)) | 0);
      // High 16 bits pick the row (multiply-shift, no modulo bias worth noting), bit 0 the sign.
      const pos = ((r >>> 16) * n) >>> 16;
      u[pos] = u[pos]! + (r & 1 ? -s : s);
    }
  }

  /**
   * Runs the token stream from a zero state and returns the pooled features (a new array unless
   * `out` is given). Step i holds tokens steps[i]..steps[i+1]−1 of `sequence`; tokens present
   * without any steps count as one step. Zero steps → all-zero states (and the bias 1).
   */
  pool(features: SequenceInput, out: Float64Array = new Float64Array(this.featureSize)): Float64Array {
    const { reservoirSize: n, treeDepth: depth, leakRate: a } = this.options;
    const { state, pre, sums, fused } = this;
    const seq = features.sequence;
    const steps = features.steps;
    const nTok = seq.length >>> 1;
    const nSteps = steps.length > 0 ? steps.length : nTok > 0 ? 1 : 0;
    state.fill(0);
    sums.fill(0);
    for (let s = 0; s < nSteps; s++) {
      const start = steps.length > 0 ? Math.min(steps[s]!, nTok) : 0;
      const end = s + 1 < steps.length ? Math.min(steps[s + 1]!, nTok) : nTok;
      pre.fill(0);
      for (let t = start; t < end; t++) this.addInput(seq[2 * t]!, seq[2 * t + 1]!, pre);
      for (let k = 0; k < depth; k++) {
        const m = fused[k]!;
        layerStep(m.col, m.val, m.rowPtr[1]! - m.rowPtr[0]!, n, k * n, k === 0, state, pre, sums, a);
      }
    }
    const inv = nSteps > 0 ? 1 / nSteps : 0;
    for (let k = 0; k < depth; k++) {
      const o = 2 * k * n;
      for (let i = 0; i < n; i++) {
        out[o + i] = sums[k * n + i]! * inv;
        out[o + n + i] = state[k * n + i]!;
      }
    }
    out[2 * n * depth] = 1;
    return out;
  }
}

/**
 * One leaky update of the layer whose state starts at `base`: pre ← W_fused·state (+ pre for
 * layer 0, which holds the token input), then state ← (1−a)·state + a·tanh(pre), sums += state.
 * Every row's input is computed before any of this layer's state changes. A small module-level
 * function so V8 optimises it on its own; rows have a fixed length, and four accumulators break
 * the floating-point add dependency chain that otherwise bounds this loop.
 */
function layerStep(
  col: Int32Array,
  val: Float64Array,
  rowLen: number,
  n: number,
  base: number,
  addPre: boolean,
  state: Float64Array,
  pre: Float64Array,
  sums: Float64Array,
  a: number,
): void {
  for (let i = 0, p = 0; i < n; i++) {
    let a0 = addPre ? pre[i]! : 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    const e = p + rowLen;
    for (; p + 3 < e; p += 4) {
      a0 += val[p]! * state[col[p]!]!;
      a1 += val[p + 1]! * state[col[p + 1]!]!;
      a2 += val[p + 2]! * state[col[p + 2]!]!;
      a3 += val[p + 3]! * state[col[p + 3]!]!;
    }
    for (; p < e; p++) a0 += val[p]! * state[col[p]!]!;
    pre[i] = a0 + a1 + (a2 + a3);
  }
  const keep = 1 - a;
  for (let i = 0; i < n; i++) {
    const x = keep * state[base + i]! + a * tanhFast(pre[i]!);
    state[base + i] = x;
    sums[base + i] = sums[base + i]! + x;
  }
}

/** Layer k's W_k (columns k·N..) and W_inter,k (columns (k−1)·N..) as one CSR over all states. */
function fuse(layer: ReservoirLayer, k: number, n: number, depth: number): CsrMatrix {
  const parts: Array<[CsrMatrix, number]> = layer.inter ? [[layer.inter, (k - 1) * n], [layer.w, k * n]] : [[layer.w, k * n]];
  const nnz = parts.reduce((s, [m]) => s + m.val.length, 0);
  const rowPtr = new Int32Array(n + 1);
  const col = new Int32Array(nnz);
  const val = new Float64Array(nnz);
  let p = 0;
  for (let i = 0; i < n; i++) {
    for (const [m, offset] of parts) {
      for (let j = m.rowPtr[i]!; j < m.rowPtr[i + 1]!; j++) {
        col[p] = m.col[j]! + offset;
        val[p++] = m.val[j]!;
      }
    }
    rowPtr[i + 1] = p;
  }
  return { rows: n, cols: n * depth, rowPtr, col, val };
}
