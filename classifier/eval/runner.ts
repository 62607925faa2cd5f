/**
 * k-fold cross-validation of any number of models (and optionally bogofilter) on one corpus with
 * one fold assignment, so every column of the report saw exactly the same train/test splits.
 */
import type { MailClass } from '../types.ts';
import { bogofilterCrossValidate, bogofilterVersion, type BogofilterOptions } from './bogofilter.ts';
import { loadSpamAssassin, type CorpusMessage } from './corpus.ts';
import { assignFolds, foldSplits } from './folds.ts';
import { evaluateFolds, type MetricOptions, type Metrics } from './metrics.ts';

/** One spam probability, or several named ones (components and their combination). */
export type ModelScores = number | Record<string, number>;

export interface EvalModel {
  train(msgs: CorpusMessage[]): Promise<void> | void;
  score(msg: CorpusMessage): ModelScores | Promise<ModelScores>;
}

/** Called once per fold: every fold trains a fresh model. */
export type EvalModelFactory = () => EvalModel | Promise<EvalModel>;

export interface ProgressEvent {
  model: string;
  fold: number;
  folds: number;
  stage: 'train' | 'score' | 'done';
  /** Messages scored so far in this fold (stage "score"). */
  done?: number;
  total?: number;
  /** Time the finished stage took ("score" at its end, "done"). */
  ms?: number;
}

export interface EvaluationOptions extends MetricOptions {
  /**
   * Models by name. A model returning a number is one column named after it; one returning
   * {a, b} gives columns "name.a" and "name.b" (or just "a" and "b" when the name is "").
   */
  models?: Record<string, EvalModelFactory>;
  folds?: number;
  seed?: number;
  /** Default: the whole SpamAssassin corpus. */
  corpus?: CorpusMessage[];
  /** true or options: add a "bogofilter" column (needs the binary). */
  includeBogofilter?: boolean | BogofilterOptions;
  onProgress?: (e: ProgressEvent) => void;
}

export interface Timing {
  /** Training, summed over folds. */
  trainMs: number;
  /** Scoring, summed over folds. */
  scoreMs: number;
  msgsPerSec: number;
  /** Whole model run; for bogofilter less than the sums because folds run in parallel. */
  wallMs: number;
}

export interface ColumnResult {
  name: string;
  /** The models key (or "bogofilter") the column came from; columns of one model share timing. */
  model: string;
  /** Out-of-fold scores in corpus order. */
  scores: Float64Array;
  metrics: Metrics;
  foldAuc: number[];
  timing: Timing;
}

export interface EvaluationResult {
  folds: number;
  seed: number;
  corpus: { n: number; spam: number; ham: number; hardHam: number };
  ids: string[];
  labels: MailClass[];
  hard: boolean[];
  /** Fold of each message. */
  assignment: Uint8Array;
  columns: ColumnResult[];
  metricOptions: MetricOptions;
  bogofilterVersion?: string;
}

function columnName(model: string, key: string): string {
  return model === '' ? key : `${model}.${key}`;
}

async function runModel(
  model: string,
  factory: EvalModelFactory,
  corpus: CorpusMessage[],
  assignment: Uint8Array,
  k: number,
  onProgress?: (e: ProgressEvent) => void,
): Promise<{ columns: Map<string, Float64Array>; timing: Timing }> {
  const columns = new Map<string, Float64Array>();
  const column = (name: string): Float64Array => {
    let c = columns.get(name);
    if (!c) columns.set(name, (c = new Float64Array(corpus.length).fill(NaN)));
    return c;
  };
  let trainMs = 0;
  let scoreMs = 0;
  const t0 = performance.now();
  for (const split of foldSplits(assignment, k)) {
    const fold = split.fold;
    onProgress?.({ model, fold, folds: k, stage: 'train', total: split.train.length });
    const a = performance.now();
    const m = await factory();
    await m.train(split.train.map((i) => corpus[i]!));
    const b = performance.now();
    trainMs += b - a;
    let done = 0;
    for (const i of split.test) {
      const s = await m.score(corpus[i]!);
      if (typeof s === 'number') column(model)[i] = s;
      else for (const [key, v] of Object.entries(s)) column(columnName(model, key))[i] = v;
      if (++done % 500 === 0) onProgress?.({ model, fold, folds: k, stage: 'score', done, total: split.test.length });
    }
    const c = performance.now();
    scoreMs += c - b;
    onProgress?.({ model, fold, folds: k, stage: 'done', done, total: split.test.length, ms: c - a });
  }
  // Every message must have every column: a component that abstains should say 0.5, not vanish,
  // or its metrics would silently cover a different set of messages than the others'.
  for (const [name, scores] of columns) {
    const missing = scores.findIndex((v) => Number.isNaN(v));
    if (missing >= 0) throw new Error(`model "${model}" gave no "${name}" score for ${corpus[missing]!.id}`);
  }
  const timing = { trainMs, scoreMs, msgsPerSec: scoreMs > 0 ? (corpus.length / scoreMs) * 1000 : Infinity, wallMs: performance.now() - t0 };
  return { columns, timing };
}

export async function runEvaluation(opts: EvaluationOptions = {}): Promise<EvaluationResult> {
  const k = opts.folds ?? 5;
  const seed = opts.seed ?? 1;
  const corpus = opts.corpus ?? (await loadSpamAssassin());
  const assignment = assignFolds(corpus, k, seed);
  const labels = corpus.map((m) => m.label);
  const hard = corpus.map((m) => m.hard);
  const metricOptions: MetricOptions = {
    threshold: opts.threshold ?? 0.5,
    rejectThreshold: opts.rejectThreshold ?? 0.8,
    fprBounds: opts.fprBounds ?? [0.001, 0.01],
  };
  const columns: ColumnResult[] = [];
  const addColumn = (name: string, model: string, scores: Float64Array, timing: Timing): void => {
    const { pooled, foldAuc } = evaluateFolds(scores, labels, hard, assignment, k, metricOptions);
    columns.push({ name, model, scores, metrics: pooled, foldAuc, timing });
  };

  let version: string | undefined;
  // bogofilter first: its parallel processes would otherwise skew our models' timings.
  if (opts.includeBogofilter) {
    const bopts = typeof opts.includeBogofilter === 'object' ? opts.includeBogofilter : {};
    version = await bogofilterVersion(bopts.bin);
    if (!version) throw new Error(`bogofilter not found (${bopts.bin ?? 'bogofilter'})`);
    const r = await bogofilterCrossValidate(corpus, assignment, k, {
      ...bopts,
      onFold: (t) => {
        bopts.onFold?.(t);
        opts.onProgress?.({ model: 'bogofilter', fold: t.fold, folds: k, stage: 'done', ms: t.trainMs + t.scoreMs });
      },
    });
    addColumn('bogofilter', 'bogofilter', r.scores, {
      trainMs: r.trainMs,
      scoreMs: r.scoreMs,
      msgsPerSec: r.scoreMs > 0 ? (corpus.length / r.scoreMs) * 1000 : Infinity,
      wallMs: r.wallMs,
    });
  }

  for (const [model, factory] of Object.entries(opts.models ?? {})) {
    const r = await runModel(model, factory, corpus, assignment, k, opts.onProgress);
    for (const [name, scores] of r.columns) {
      if (columns.some((c) => c.name === name)) throw new Error(`duplicate column name "${name}"`);
      addColumn(name, model, scores, r.timing);
    }
  }

  return {
    folds: k,
    seed,
    corpus: { n: corpus.length, spam: labels.filter((l) => l === 'spam').length, ham: labels.filter((l) => l === 'ham').length, hardHam: hard.filter(Boolean).length },
    ids: corpus.map((m) => m.id),
    labels,
    hard,
    assignment,
    columns,
    metricOptions,
    ...(version ? { bogofilterVersion: version } : {}),
  };
}
