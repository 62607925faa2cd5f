/**
 * The reservoir component: DeepESN pooled features → ridge/RLS readout → Platt-calibrated spam
 * probability. The reservoir holds no learned state (it is regenerated from seed + options), so
 * the serialised model is just options, counts and the readout.
 *
 * pool() is public so a caller scoring and then learning the same message (or re-training
 * several readouts) can pool once and use scorePooled() / learnPooled().
 */
import type { Component, ComponentScore, MailClass, MessageFeatures } from '../types.ts';
import { type Calibration, Readout, READOUT_DEFAULTS, type ReadoutOptions } from './readout.ts';
import { DeepESN, RESERVOIR_DEFAULTS, type ReservoirOptions } from './reservoir.ts';

export interface ReservoirComponentOptions extends ReservoirOptions, ReadoutOptions {
  /** Learned spam AND ham messages needed before the component votes. */
  minLearned: number;
}

export const RESERVOIR_COMPONENT_DEFAULTS: Readonly<ReservoirComponentOptions> = Object.freeze({
  ...RESERVOIR_DEFAULTS,
  ...READOUT_DEFAULTS,
  minLearned: 20,
});

/** Size/depth presets (merge over the defaults): feature length 2·N·depth + 1 = 201, 601, 1601. */
export const ESN_PRESETS = {
  conservative: { reservoirSize: 50, treeDepth: 2 },
  balanced: { reservoirSize: 100, treeDepth: 3 },
  aggressive: { reservoirSize: 200, treeDepth: 4 },
} as const satisfies Record<string, Partial<ReservoirOptions>>;

export interface TrainingSample {
  /** Either the message features or their pooled vector (from pool()). */
  features?: MessageFeatures;
  pooled?: Float64Array;
  cls: MailClass;
}

const MAGIC = 0x4e534543; // "CESN"
const VERSION = 1;
const RESERVOIR_KEYS = ['reservoirSize', 'spectralRadius', 'leakRate', 'inputScaling', 'density', 'inputNonzeros', 'treeDepth', 'interScaling', 'seed'] as const;
const HEADER_BYTES = 8 + 8 * (RESERVOIR_KEYS.length + 3);

export class ReservoirComponent implements Component {
  readonly name = 'reservoir';
  readonly options: Readonly<ReservoirComponentOptions>;
  readonly esn: DeepESN;
  readonly readout: Readout;
  /** Learned messages per class (net of unlearns). */
  nspam = 0;
  nham = 0;
  private readonly scratch: Float64Array;

  constructor(options: Partial<ReservoirComponentOptions> = {}, readout?: Readout) {
    this.options = Object.freeze({ ...RESERVOIR_COMPONENT_DEFAULTS, ...options });
    this.esn = new DeepESN(this.options);
    this.readout = readout ?? new Readout(this.esn.featureSize, this.options);
    if (this.readout.dim !== this.esn.featureSize) throw new Error('reservoir: readout size does not match the reservoir');
    this.scratch = new Float64Array(this.esn.featureSize);
  }

  get voting(): boolean {
    return this.nspam >= this.options.minLearned && this.nham >= this.options.minLearned;
  }

  /** Pooled reservoir features of a message (a fresh array the caller may keep). */
  pool(features: MessageFeatures): Float64Array {
    return this.esn.pool(features);
  }

  score(features: MessageFeatures): ComponentScore {
    if (!this.voting) return this.abstain(stepCount(features));
    return this.scorePooled(this.esn.pool(features, this.scratch), stepCount(features));
  }

  scorePooled(pooled: Float64Array, steps?: number): ComponentScore {
    if (!this.voting) return this.abstain(steps);
    const value = this.readout.value(pooled);
    return {
      name: this.name,
      probability: this.readout.probability(value),
      voted: true,
      details: { steps, layers: this.options.treeDepth, readout: value },
    };
  }

  private abstain(steps?: number): ComponentScore {
    return {
      name: this.name,
      probability: 0.5,
      voted: false,
      details: { reason: 'learning', steps, layers: this.options.treeDepth, nspam: this.nspam, nham: this.nham },
    };
  }

  learn(features: MessageFeatures, cls: MailClass, weight: 1 | -1 = 1): void {
    this.learnPooled(this.esn.pool(features, this.scratch), cls, weight);
  }

  learnPooled(pooled: Float64Array, cls: MailClass, weight: 1 | -1 = 1): void {
    this.readout.learn(pooled, cls === 'spam', weight);
    if (cls === 'spam') this.nspam = Math.max(0, this.nspam + weight);
    else this.nham = Math.max(0, this.nham + weight);
  }

  /**
   * Batch training: learns every sample, solves, then fits the Platt calibration. In
   * normal-equations mode with enough samples the calibration uses k-fold held-out readout
   * values (training-set values are overconfident); otherwise the in-sample values.
   */
  fit(samples: TrainingSample[], folds = 5): Calibration {
    const xs = samples.map((s) => s.pooled ?? (s.features ? this.esn.pool(s.features) : undefined));
    const spam = samples.map((s) => s.cls === 'spam');
    xs.forEach((x, i) => {
      if (!x) throw new Error(`reservoir: sample ${i} has neither features nor pooled`);
      this.learnPooled(x, samples[i]!.cls);
    });
    const pooled = xs as Float64Array[];
    this.readout.solve();
    const values =
      this.options.mode === 'normal-equations' && samples.length >= 4 * folds
        ? this.readout.crossValues(pooled, spam, folds)
        : pooled.map((x) => this.readout.value(x));
    return this.readout.fitCalibration(values, spam);
  }

  /** Header "CESN", version u16, float64 reservoir options, minLearned, nspam, nham; then the readout. */
  serialize(): Buffer {
    const readout = this.readout.serialize();
    const buf = Buffer.alloc(HEADER_BYTES + readout.length);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    dv.setUint32(0, MAGIC, true);
    dv.setUint16(4, VERSION, true);
    const nums = [...RESERVOIR_KEYS.map((k) => this.options[k]), this.options.minLearned, this.nspam, this.nham];
    nums.forEach((v, i) => dv.setFloat64(8 + 8 * i, v, true));
    readout.copy(buf, HEADER_BYTES);
    return buf;
  }

  static deserialize(buf: Uint8Array): ReservoirComponent {
    if (buf.byteLength < HEADER_BYTES) throw new Error('reservoir: truncated header');
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    if (dv.getUint32(0, true) !== MAGIC) throw new Error('reservoir: bad magic');
    const version = dv.getUint16(4, true);
    if (version !== VERSION) throw new Error(`reservoir: unsupported version ${version}`);
    const opts: Partial<ReservoirComponentOptions> = {};
    RESERVOIR_KEYS.forEach((k, i) => (opts[k] = dv.getFloat64(8 + 8 * i, true)));
    const base = 8 + 8 * RESERVOIR_KEYS.length;
    opts.minLearned = dv.getFloat64(base, true);
    const readout = Readout.deserialize(buf.subarray(HEADER_BYTES));
    const c = new ReservoirComponent({ ...opts, ...readout.options }, readout);
    c.nspam = dv.getFloat64(base + 8, true);
    c.nham = dv.getFloat64(base + 16, true);
    return c;
  }
}

function stepCount(f: MessageFeatures): number {
  return f.steps.length > 0 ? f.steps.length : f.sequence.length > 0 ? 1 : 0;
}
