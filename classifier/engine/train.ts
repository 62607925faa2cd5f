/**
 * Batch training from labelled features, and the stacker.
 *
 * The stacker (a logistic regression over the components' log-odds) must be fitted on scores the
 * components gave to messages they did not learn, or it would trust whichever part memorises the
 * training set best (Bayes, always). So: split the training set into `stackFolds` folds, train
 * fresh components on all but one, score the held-out one, and fit the stacker on those
 * out-of-fold rows. Then train every component once more on everything.
 *
 * The reservoir's pooled states depend only on the features and the (seeded) reservoir, so each
 * message is pooled once and reused by every fold.
 */
import type { ClassifierConfig } from '../../core/config/classifier.ts';
import { STACK_COLUMNS, stackRow } from '../combine/combiner.ts';
import { fitLogistic, type LogisticModel } from '../combine/logistic.ts';
import type { MailClass, MessageFeatures } from '../types.ts';
import { type EngineParts, SpamEngine } from './engine.ts';

export interface Labelled {
  features: MessageFeatures;
  cls: MailClass;
}

export interface TrainOptions {
  /** Folds for the stacker's out-of-fold scores (0 = no stacker: weighted mode). */
  stackFolds?: number;
  /** Extra weight of ham rows in the stacker: a false positive costs more than a miss. */
  hamWeight?: number;
  onProgress?: (stage: string, done: number, total: number) => void;
}

/** Trains `parts` (fresh, batch mode) on the samples at `idx`. */
function trainParts(parts: EngineParts, samples: Labelled[], pooled: Float64Array[] | undefined, idx: number[]): void {
  const sel = idx.map((i) => samples[i]!);
  if (parts.bayes) for (const s of sel) parts.bayes.learn(s.features, s.cls);
  if (parts.reservoir && pooled) parts.reservoir.fit(idx.map((i) => ({ pooled: pooled[i]!, cls: samples[i]!.cls })));
  if (parts.linear) parts.linear.fit(sel);
  if (parts.membranes) parts.membranes.fit(sel);
  if (parts.affect) parts.affect.fit(sel);
}

/** Deterministic stratified fold of each sample (round robin within each class, in input order). */
function innerFolds(samples: Labelled[], k: number): number[] {
  const seen = { spam: 0, ham: 0 };
  return samples.map((s) => seen[s.cls]++ % k);
}

export async function trainEngine(cfg: ClassifierConfig, samples: Labelled[], opts: TrainOptions = {}): Promise<SpamEngine> {
  const k = cfg.mode === 'stacked' ? (opts.stackFolds ?? 3) : 0;
  const probe = await SpamEngine.freshParts(cfg, false);
  let pooled: Float64Array[] | undefined;
  if (probe.reservoir) {
    pooled = [];
    for (const [i, s] of samples.entries()) {
      pooled.push(probe.reservoir.pool(s.features).slice());
      if (i % 500 === 0) opts.onProgress?.('reservoir states', i, samples.length);
    }
  }

  let stacker: LogisticModel | null = null;
  const spamCount = samples.filter((s) => s.cls === 'spam').length;
  if (k >= 2 && spamCount >= k && samples.length - spamCount >= k) {
    const fold = innerFolds(samples, k);
    const rows: number[][] = new Array(samples.length);
    for (let f = 0; f < k; f++) {
      opts.onProgress?.('stacker folds', f, k);
      const parts = await SpamEngine.freshParts(cfg, false);
      const train = samples.map((_, i) => i).filter((i) => fold[i] !== f);
      trainParts(parts, samples, pooled, train);
      const engine = new SpamEngine(cfg, parts);
      for (let i = 0; i < samples.length; i++) {
        if (fold[i] !== f) continue;
        const s = samples[i]!;
        const components = parts.reservoir && pooled ? scoresWithPooled(engine, s.features, pooled[i]!) : engine.componentScores(s.features);
        rows[i] = stackRow(engine.combineInput(s.features, components), cfg.persona.creativity);
      }
    }
    const y = samples.map((s) => (s.cls === 'spam' ? 1 : 0));
    // 8: measured on the 5-fold evaluation, it halves ham above 0.5 and keeps ham above reject at bogofilter's level.
    const hamWeight = opts.hamWeight ?? 8;
    stacker = fitLogistic([...STACK_COLUMNS], rows, y, { l2: 1e-2, rowWeights: y.map((v) => (v ? 1 : hamWeight)) });
  }

  opts.onProgress?.('final model', 0, 1);
  const parts = await SpamEngine.freshParts(cfg, false);
  trainParts(
    parts,
    samples,
    pooled,
    samples.map((_, i) => i),
  );
  parts.stacker = stacker;
  opts.onProgress?.('final model', 1, 1);
  return new SpamEngine(cfg, parts);
}

/** Component scores, with the reservoir's from a precomputed pooled state. */
export function scoresWithPooled(engine: SpamEngine, f: MessageFeatures, pooled: Float64Array) {
  const p = engine.parts;
  const out = [];
  if (p.bayes) out.push(p.bayes.score(f));
  if (p.reservoir) out.push(p.reservoir.scorePooled(pooled, f.steps.length));
  if (p.linear) out.push(p.linear.score(f));
  if (p.membranes) out.push(p.membranes.score(f));
  if (p.affect) out.push(p.affect.score(f));
  return out;
}
