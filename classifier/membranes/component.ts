/**
 * MembraneComponent: receptors → P-system evolution → skin → probability.
 *
 * The skin turns what reached it into a rule-hit vector x (x[s] = charge that signal s, a receptor
 * or a rule, delivered to the skin) and scores logistic(bias + Σ w[s]·x[s]). Before any learning
 * every w[s] equals the file's `gain`, which is exactly logistic(gain · Σcharges + bias): the
 * hand-written rules as written. Learning fits w (and bias) by logistic regression on x, the way
 * SpamAssassin's score optimiser fits rule scores, with an L2 pull towards the hand-written prior
 * so a rule seen in a handful of messages keeps roughly its authored charge.
 *
 *  - learn(): one SGD step (weight -1 takes the opposite step: an approximate unlearn).
 *  - fit():   the batch optimum by Newton/IRLS (convex, so independent of earlier online steps).
 */
import type { Component, ComponentScore, MailClass, MessageFeatures } from '../types.ts';
import { DEFAULT_RULES_URL, loadRules, type CompiledRules } from './compile.ts';
import { sense, type Obj } from './receptors.ts';
import { evolve } from './system.ts';

export interface MembraneOptions {
  /** Compiled rules; default: classifier/membranes/rules.yaml. */
  rules?: CompiledRules;
  /** Online SGD step size. */
  learningRate?: number;
  /** Online pull towards the rules' own weights, per step. */
  l2?: number;
}

export interface MembraneFitOptions {
  /** Strength of the pull towards the rules' own weights (a prior with variance 1/l2). */
  l2?: number;
  /** Newton iterations at most. */
  iterations?: number;
}

export type LabelledFeatures = { features: MessageFeatures; cls: MailClass } | readonly [MessageFeatures, MailClass];

/** What one pass computed; `score` is a summary of this. */
export interface MembraneRun {
  /** Charge reaching the skin per signal (receptors first, then rules; see rules.signals). */
  x: Float64Array;
  /** Objects emitted (receptors) or applications (rules) per signal, reaching the skin or not. */
  hits: Float64Array;
  /** Σ charges at the skin. */
  sum: number;
  steps: number;
  dissolved: string[];
  /** bias + Σ w·x. */
  logOdds: number;
  probability: number;
}

export interface MembraneState {
  format: 'ceerion-membranes';
  version: 1;
  rulesDigest: string;
  bias: number;
  /** By signal id, so a state survives edits of the rules file (unknown ids are skipped). */
  weights: Record<string, number>;
  /** Messages learned in which the signal fired: [spam, ham]. */
  stats: Record<string, [number, number]>;
  learned: number;
  reputation: Record<string, number>;
}

const sigmoid = (z: number) => (Number.isNaN(z) ? 0.5 : z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));
const round = (x: number) => Math.round(x * 1000) / 1000;

let defaultRules: CompiledRules | undefined;

export class MembraneComponent implements Component {
  readonly name = 'membranes';
  readonly rules: CompiledRules;
  private readonly weights: Float64Array;
  private readonly prior: Float64Array;
  private bias: number;
  private readonly spamHits: Float64Array;
  private readonly hamHits: Float64Array;
  private learnedCount = 0;
  private readonly reputation: Map<string, number>;
  private readonly lr: number;
  private readonly l2: number;
  /** Reused between runs: receptors empty it first. */
  private readonly state: Obj[][];
  /** Charge-free marker receptors: they only feed rules, so `fired` leaves them out. */
  private readonly marker: Uint8Array;

  constructor(opts: MembraneOptions = {}) {
    this.rules = opts.rules ?? (defaultRules ??= loadRules(DEFAULT_RULES_URL));
    const S = this.rules.signals.length;
    this.prior = new Float64Array(S).fill(this.rules.gain);
    this.weights = Float64Array.from(this.prior);
    this.bias = this.rules.bias;
    this.spamHits = new Float64Array(S);
    this.hamHits = new Float64Array(S);
    this.reputation = new Map(this.rules.reputation);
    this.lr = opts.learningRate ?? 0.02;
    this.l2 = opts.l2 ?? 1e-3;
    this.state = this.rules.membranes.map(() => []);
    this.marker = new Uint8Array(S);
    for (const r of this.rules.receptors) if (r.kind !== 'reputation' && r.charge === 0) this.marker[r.signal] = 1;
  }

  get learned(): number {
    return this.learnedCount;
  }

  /** Adds or replaces a domain's (or IP's) reputation charge; 0 removes it. */
  setReputation(domain: string, charge: number): void {
    if (!Number.isFinite(charge)) throw new RangeError(`reputation charge for ${domain} must be finite`);
    const d = domain.trim().toLowerCase();
    if (charge === 0) this.reputation.delete(d);
    else this.reputation.set(d, charge);
  }

  getReputation(domain: string): number | undefined {
    return this.reputation.get(domain.trim().toLowerCase());
  }

  run(features: MessageFeatures): MembraneRun {
    const hits = new Float64Array(this.rules.signals.length);
    sense(this.rules, features, this.reputation, this.state, hits);
    const { steps, dissolved } = evolve(this.rules, this.state, hits);
    const x = new Float64Array(this.rules.signals.length);
    let sum = 0;
    for (const o of this.state[this.rules.skin]!) {
      x[o.o] = x[o.o]! + o.c;
      sum += o.c;
    }
    let z = this.bias;
    for (let s = 0; s < x.length; s++) if (x[s] !== 0) z += this.weights[s]! * x[s]!;
    return { x, hits, sum, steps, dissolved, logOdds: z, probability: sigmoid(z) };
  }

  score(features: MessageFeatures): ComponentScore {
    const r = this.run(features);
    const signals: Array<{ id: string; charge: number; logOdds: number }> = [];
    const fired: string[] = [];
    for (let s = 0; s < r.x.length; s++) {
      if (r.x[s] !== 0) signals.push({ id: this.rules.signals[s]!, charge: round(r.x[s]!), logOdds: round(this.weights[s]! * r.x[s]!) });
      if (r.hits[s]! > 0 && this.marker[s] === 0) fired.push(this.rules.signals[s]!);
    }
    signals.sort((a, b) => Math.abs(b.logOdds) - Math.abs(a.logOdds));
    const details: Record<string, unknown> = { sum: round(r.sum), steps: r.steps, signals: signals.slice(0, 12), fired: fired.slice(0, 32) };
    if (r.dissolved.length) details.dissolved = r.dissolved;
    // The rules are hand-written, so the component has an opinion before it has learned anything.
    return { name: this.name, probability: r.probability, voted: true, details };
  }

  learn(features: MessageFeatures, cls: MailClass, weight: 1 | -1 = 1): void {
    const r = this.run(features);
    const y = cls === 'spam' ? 1 : 0;
    const g = r.probability - y;
    const step = this.lr * weight;
    for (let s = 0; s < r.x.length; s++) {
      const x = r.x[s]!;
      if (x !== 0) {
        const pull = weight > 0 ? this.l2 * (this.weights[s]! - this.prior[s]!) : 0;
        this.weights[s] = this.weights[s]! - step * g * x - this.lr * pull;
      }
    }
    this.bias -= step * g;
    this.count(r.hits, y, weight);
  }

  private count(hits: Float64Array, y: number, weight: number): void {
    const table = y === 1 ? this.spamHits : this.hamHits;
    for (let s = 0; s < hits.length; s++) if (hits[s]! > 0) table[s] = Math.max(0, table[s]! + weight);
    this.learnedCount = Math.max(0, this.learnedCount + weight);
  }

  /**
   * Batch fit: L2-regularised logistic regression of the labels on the rule-hit vectors, by Newton's
   * method, penalising the distance to the rules' own weights. Signals that never reach the skin
   * in `samples` return to their prior. Hit statistics and `learned` count the samples too.
   */
  fit(samples: Iterable<LabelledFeatures>, opts: MembraneFitOptions = {}): { iterations: number; logLoss: number } {
    const l2 = opts.l2 ?? 1;
    const rows: Array<{ idx: number[]; val: number[]; y: number }> = [];
    const active = new Map<number, number>(); // signal → column (1-based; column 0 is the bias)
    for (const sample of samples) {
      const [features, cls] = Array.isArray(sample) ? (sample as readonly [MessageFeatures, MailClass]) : [(sample as { features: MessageFeatures }).features, (sample as { cls: MailClass }).cls];
      const r = this.run(features);
      const y = cls === 'spam' ? 1 : 0;
      this.count(r.hits, y, 1);
      const idx: number[] = [0];
      const val: number[] = [1];
      for (let s = 0; s < r.x.length; s++) {
        if (r.x[s] === 0) continue;
        let col = active.get(s);
        if (col === undefined) active.set(s, (col = active.size + 1));
        idx.push(col);
        val.push(r.x[s]!);
      }
      rows.push({ idx, val, y });
    }
    const n = active.size + 1;
    const theta = new Float64Array(n);
    const theta0 = new Float64Array(n);
    theta[0] = this.bias;
    theta0[0] = this.rules.bias;
    for (const [s, col] of active) {
      theta[col] = this.weights[s]!;
      theta0[col] = this.prior[s]!;
    }
    // The bias gets a token penalty only, so an all-spam sample cannot push it to infinity.
    const penalty = (j: number) => (j === 0 ? 1e-3 : l2);
    let iterations = 0;
    let logLoss = 0;
    for (; iterations < (opts.iterations ?? 25); ) {
      iterations++;
      const h = new Float64Array(n * n);
      const grad = new Float64Array(n);
      logLoss = 0;
      for (const row of rows) {
        let z = 0;
        for (let k = 0; k < row.idx.length; k++) z += theta[row.idx[k]!]! * row.val[k]!;
        const p = sigmoid(z);
        logLoss -= row.y ? Math.log(Math.max(p, 1e-15)) : Math.log(Math.max(1 - p, 1e-15));
        const wgt = Math.max(p * (1 - p), 1e-12);
        for (let a = 0; a < row.idx.length; a++) {
          const ia = row.idx[a]!;
          grad[ia] = grad[ia]! + (p - row.y) * row.val[a]!;
          for (let b = 0; b < row.idx.length; b++) h[ia * n + row.idx[b]!] = h[ia * n + row.idx[b]!]! + wgt * row.val[a]! * row.val[b]!;
        }
      }
      for (let j = 0; j < n; j++) {
        grad[j] = grad[j]! + penalty(j) * (theta[j]! - theta0[j]!);
        h[j * n + j] = h[j * n + j]! + penalty(j);
      }
      const delta = choleskySolve(h, grad, n);
      let biggest = 0;
      for (let j = 0; j < n; j++) {
        theta[j] = theta[j]! - delta[j]!;
        biggest = Math.max(biggest, Math.abs(delta[j]!));
      }
      if (!(biggest > 1e-9)) break;
    }
    this.weights.set(this.prior);
    this.bias = theta[0]!;
    for (const [s, col] of active) this.weights[s] = theta[col]!;
    return { iterations, logLoss: rows.length ? logLoss / rows.length : 0 };
  }

  /** Per-signal learned weight and hit statistics, for `classify --explain`-style reports. */
  signalStats(): Array<{ id: string; weight: number; spam: number; ham: number }> {
    return this.rules.signals.map((id, s) => ({ id, weight: this.weights[s]!, spam: this.spamHits[s]!, ham: this.hamHits[s]! }));
  }

  toJSON(): MembraneState {
    const weights: Record<string, number> = {};
    const stats: Record<string, [number, number]> = {};
    this.rules.signals.forEach((id, s) => {
      weights[id] = this.weights[s]!;
      if (this.spamHits[s]! > 0 || this.hamHits[s]! > 0) stats[id] = [this.spamHits[s]!, this.hamHits[s]!];
    });
    return {
      format: 'ceerion-membranes',
      version: 1,
      rulesDigest: this.rules.digest,
      bias: this.bias,
      weights,
      stats,
      learned: this.learnedCount,
      reputation: Object.fromEntries(this.reputation),
    };
  }

  serialize(): Buffer {
    return Buffer.from(JSON.stringify(this.toJSON()));
  }

  /** Restores learned state. Weights are matched by signal id; ids the current rules lack are skipped. */
  restore(state: MembraneState | Buffer): void {
    const st = Buffer.isBuffer(state) ? (JSON.parse(state.toString('utf8')) as MembraneState) : state;
    if (st?.format !== 'ceerion-membranes' || st.version !== 1) throw new Error('not a ceerion-membranes v1 state');
    const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
    this.weights.set(this.prior);
    this.spamHits.fill(0);
    this.hamHits.fill(0);
    this.rules.signals.forEach((id, s) => {
      const w = st.weights?.[id];
      if (finite(w)) this.weights[s] = w;
      const hs = st.stats?.[id];
      if (hs && finite(hs[0]) && finite(hs[1])) {
        this.spamHits[s] = hs[0];
        this.hamHits[s] = hs[1];
      }
    });
    this.bias = finite(st.bias) ? st.bias : this.rules.bias;
    this.learnedCount = finite(st.learned) ? st.learned : 0;
    this.reputation.clear();
    for (const [d, c] of Object.entries(st.reputation ?? {})) if (finite(c)) this.reputation.set(d, c);
  }

  static load(state: MembraneState | Buffer, opts: MembraneOptions = {}): MembraneComponent {
    const c = new MembraneComponent(opts);
    c.restore(state);
    return c;
  }
}

/** Solves H x = g for a small symmetric positive definite H (Cholesky; H is overwritten). */
function choleskySolve(h: Float64Array, g: Float64Array, n: number): Float64Array {
  for (let j = 0; j < n; j++) {
    let d = h[j * n + j]!;
    for (let k = 0; k < j; k++) d -= h[j * n + k]! ** 2;
    const l = Math.sqrt(Math.max(d, 1e-12));
    h[j * n + j] = l;
    for (let i = j + 1; i < n; i++) {
      let s = h[i * n + j]!;
      for (let k = 0; k < j; k++) s -= h[i * n + k]! * h[j * n + k]!;
      h[i * n + j] = s / l;
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = g[i]!;
    for (let k = 0; k < i; k++) s -= h[i * n + k]! * y[k]!;
    y[i] = s / h[i * n + i]!;
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < n; k++) s -= h[k * n + i]! * x[k]!;
    x[i] = s / h[i * n + i]!;
  }
  return x;
}
