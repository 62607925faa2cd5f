/**
 * AffectComponent: a small logistic regression on the affect vector. It starts with no opinion
 * (all weights 0, p = 0.5) and abstains (voted = false) until it has learned `minLearned`
 * messages; learn() takes one SGD step, fit() runs shuffled SGD epochs over a batch.
 *
 * The persona's dominance acts here, at scoring time: the model's log-odds are multiplied by
 * (0.5 + dominance), so 0.5 scores as learned, 1 is 1.5× as decisive, 0 half as decisive. It is
 * deliberately not part of training, so changing the persona needs no retraining.
 */
import type { Component, ComponentScore, MailClass, MessageFeatures } from '../types.ts';
import { AFFECT_FEATURES, extractAffect, normalizePersona, type AffectOptions, type AffectVector, type Persona } from './extract.ts';
import { EMOTIONS } from './lexicon.ts';

export interface AffectComponentOptions {
  persona?: Partial<Persona>;
  /** Messages learned before the component votes (default 50). */
  minLearned?: number;
  /** Online SGD step size (default 0.05). */
  learningRate?: number;
  /** L2 penalty on the weights (default 1e-4). */
  l2?: number;
  /** Extraction options (segmenting, smoothing); persona and subject are supplied by the component. */
  extract?: Omit<AffectOptions, 'persona' | 'subject'>;
}

export interface AffectFitOptions {
  epochs?: number;
  learningRate?: number;
  /** Shuffle seed, so fits are reproducible. */
  seed?: number;
}

export type LabelledFeatures = { features: MessageFeatures; cls: MailClass } | readonly [MessageFeatures, MailClass];

export interface AffectState {
  format: 'ceerion-affect';
  version: 1;
  features: string[];
  weights: number[];
  bias: number;
  learned: number;
}

const D = AFFECT_FEATURES.length;
const sigmoid = (z: number) => (Number.isNaN(z) ? 0.5 : z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));
const round = (x: number) => Math.round(x * 1000) / 1000;

export class AffectComponent implements Component {
  readonly name = 'affect';
  readonly persona: Persona;
  readonly minLearned: number;
  private readonly weights = new Float64Array(D);
  private bias = 0;
  private learnedCount = 0;
  private readonly lr: number;
  private readonly l2: number;
  private readonly extractOptions: AffectOptions;

  constructor(opts: AffectComponentOptions = {}) {
    this.persona = normalizePersona(opts.persona);
    this.minLearned = Math.max(0, opts.minLearned ?? 50);
    this.lr = opts.learningRate ?? 0.05;
    this.l2 = opts.l2 ?? 1e-4;
    this.extractOptions = { ...opts.extract, persona: this.persona };
  }

  get learned(): number {
    return this.learnedCount;
  }

  extract(features: MessageFeatures): AffectVector {
    return extractAffect(features.text ?? '', { ...this.extractOptions, subject: features.subject ?? '' });
  }

  private logOdds(v: Float64Array): number {
    let z = this.bias;
    for (let j = 0; j < D; j++) z += this.weights[j]! * v[j]!;
    return z;
  }

  score(features: MessageFeatures): ComponentScore {
    const a = this.extract(features);
    const z = this.logOdds(a.vector) * (0.5 + this.persona.dominance);
    const top = EMOTIONS.map((e) => [e, a.emotions[e]] as const)
      .filter(([, v]) => v > 0.05)
      .sort((x, y) => y[1] - x[1])
      .slice(0, 3)
      .map(([e, v]) => `${e} ${round(v)}`);
    return {
      name: this.name,
      probability: sigmoid(z),
      voted: this.learnedCount >= this.minLearned,
      details: { emotions: top, valence: round(a.valence), arousal: round(a.arousal), dominance: round(a.dominance), uncertainty: round(a.uncertainty), learned: this.learnedCount },
    };
  }

  private step(v: Float64Array, y: number, lr: number, weight: number): void {
    const g = sigmoid(this.logOdds(v)) - y;
    for (let j = 0; j < D; j++) this.weights[j] = this.weights[j]! - lr * (weight * g * v[j]! + (weight > 0 ? this.l2 * this.weights[j]! : 0));
    this.bias -= lr * weight * g;
  }

  /** One SGD step; weight −1 takes the opposite step (an approximate unlearn). */
  learn(features: MessageFeatures, cls: MailClass, weight: 1 | -1 = 1): void {
    this.step(this.extract(features).vector, cls === 'spam' ? 1 : 0, this.lr, weight);
    this.learnedCount = Math.max(0, this.learnedCount + weight);
  }

  /** Batch training: shuffled SGD epochs with a decaying step, continuing from the current weights. */
  fit(samples: Iterable<LabelledFeatures>, opts: AffectFitOptions = {}): { epochs: number; logLoss: number } {
    const rows: Array<{ v: Float64Array; y: number }> = [];
    for (const s of samples) {
      const [f, cls] = Array.isArray(s) ? (s as readonly [MessageFeatures, MailClass]) : [(s as { features: MessageFeatures }).features, (s as { cls: MailClass }).cls];
      rows.push({ v: this.extract(f).vector, y: cls === 'spam' ? 1 : 0 });
    }
    const epochs = opts.epochs ?? 30;
    const lr0 = opts.learningRate ?? 0.2;
    let seed = (opts.seed ?? 1) >>> 0 || 1;
    const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const order = rows.map((_, i) => i);
    for (let e = 0; e < epochs; e++) {
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      const lr = lr0 / (1 + e / 5);
      for (const i of order) this.step(rows[i]!.v, rows[i]!.y, lr, 1);
    }
    this.learnedCount += rows.length;
    let loss = 0;
    for (const r of rows) {
      const p = sigmoid(this.logOdds(r.v));
      loss -= r.y ? Math.log(Math.max(p, 1e-15)) : Math.log(Math.max(1 - p, 1e-15));
    }
    return { epochs, logLoss: rows.length ? loss / rows.length : 0 };
  }

  /** Learned weights by feature name (for reports). */
  weightsByFeature(): Record<string, number> {
    return Object.fromEntries(AFFECT_FEATURES.map((f, j) => [f, this.weights[j]!]));
  }

  toJSON(): AffectState {
    return { format: 'ceerion-affect', version: 1, features: [...AFFECT_FEATURES], weights: [...this.weights], bias: this.bias, learned: this.learnedCount };
  }

  serialize(): Buffer {
    return Buffer.from(JSON.stringify(this.toJSON()));
  }

  /** Restores weights by feature name, so adding a feature later keeps the others. */
  restore(state: AffectState | Buffer): void {
    const st = Buffer.isBuffer(state) ? (JSON.parse(state.toString('utf8')) as AffectState) : state;
    if (st?.format !== 'ceerion-affect' || st.version !== 1) throw new Error('not a ceerion-affect v1 state');
    const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
    this.weights.fill(0);
    (st.features ?? []).forEach((name, i) => {
      const j = (AFFECT_FEATURES as readonly string[]).indexOf(name);
      const w = st.weights?.[i];
      if (j >= 0 && finite(w)) this.weights[j] = w;
    });
    this.bias = finite(st.bias) ? st.bias : 0;
    this.learnedCount = finite(st.learned) ? st.learned : 0;
  }

  static load(state: AffectState | Buffer, opts: AffectComponentOptions = {}): AffectComponent {
    const c = new AffectComponent(opts);
    c.restore(state);
    return c;
  }
}
