/**
 * Classification metrics over (score, label, hard) arrays. Everything is computed on groups of
 * equal scores: bogofilter gives thousands of messages exactly 0 or 1, and a metric that splits a
 * tie by input order would report a threshold nobody can set. So at any threshold all messages with
 * the same score go the same way, and AUC counts a spam/ham tie as half a correct ordering.
 *
 * Convention: a message is flagged at threshold t when score >= t (config: "at or above this goes
 * to Junk"); the reject count uses score > reject (config: "above this is rejected").
 */
import type { MailClass } from '../types.ts';

export interface MetricOptions {
  /** Decision threshold for accuracy, precision, recall, F1 and FPR. Default 0.5. */
  threshold?: number;
  /** Ham scored strictly above this is counted as "would be rejected". Default 0.8 (config default). */
  rejectThreshold?: number;
  /** FPR bounds for "spam recall at FPR ≤ bound". Default 0.1% and 1%. */
  fprBounds?: readonly number[];
}

export interface RecallAtFpr {
  maxFpr: number;
  /** Spam recall at the lowest threshold whose ham FPR is within maxFpr (0 when none is). */
  recall: number;
  fpr: number;
  /** The chosen threshold (score >= threshold flags); Infinity when nothing can be flagged. */
  threshold: number;
  spamCaught: number;
  hamFlagged: number;
}

export interface Metrics {
  n: number;
  spam: number;
  ham: number;
  hardHam: number;
  threshold: number;
  tp: number;
  fp: number;
  tn: number;
  fn: number;
  accuracy: number;
  /** NaN when nothing is flagged. */
  precision: number;
  recall: number;
  f1: number;
  /** Ham false-positive rate at `threshold`. */
  fpr: number;
  hardHamFp: number;
  hardHamFpr: number;
  rejectThreshold: number;
  hamAboveReject: number;
  spamAboveReject: number;
  auc: number;
  recallAtFpr: RecallAtFpr[];
}

export interface TieGroup {
  score: number;
  spam: number;
  ham: number;
}

function checkInputs(scores: ArrayLike<number>, labels: ArrayLike<MailClass>): void {
  if (scores.length !== labels.length) throw new RangeError(`${scores.length} scores but ${labels.length} labels`);
  for (let i = 0; i < scores.length; i++) {
    if (!Number.isFinite(scores[i])) throw new RangeError(`score ${i} is ${scores[i]}; scores must be finite`);
  }
}

/** Distinct scores, highest first, with how many spam and ham share each. */
export function tieGroups(scores: ArrayLike<number>, labels: ArrayLike<MailClass>): TieGroup[] {
  checkInputs(scores, labels);
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  const groups: TieGroup[] = [];
  for (const i of order) {
    const s = scores[i]!;
    let g = groups[groups.length - 1];
    if (!g || g.score !== s) groups.push((g = { score: s, spam: 0, ham: 0 }));
    if (labels[i] === 'spam') g.spam++;
    else g.ham++;
  }
  return groups;
}

/**
 * Area under the ROC curve = Mann-Whitney U / (spam × ham) with mid-ranks for ties, i.e.
 * P(spam scores above ham) + ½ P(equal). NaN when either class is absent.
 */
export function auc(scores: ArrayLike<number>, labels: ArrayLike<MailClass>): number {
  return aucOfGroups(tieGroups(scores, labels));
}

function aucOfGroups(groups: TieGroup[]): number {
  let spam = 0;
  let ham = 0;
  for (const g of groups) {
    spam += g.spam;
    ham += g.ham;
  }
  if (spam === 0 || ham === 0) return NaN;
  // Walk from the lowest score up: each spam beats every ham below it and ties half of its group.
  // Integer arithmetic until the final division, so the result is exact for any corpus size here.
  let hamBelow = 0;
  let twiceU = 0;
  for (let i = groups.length - 1; i >= 0; i--) {
    const g = groups[i]!;
    twiceU += g.spam * (2 * hamBelow + g.ham);
    hamBelow += g.ham;
  }
  return twiceU / 2 / (spam * ham);
}

/**
 * Spam recall at the lowest threshold whose ham FPR is ≤ maxFpr. Thresholds are only ever placed
 * at distinct scores, so a tie group is flagged entirely or not at all.
 */
export function recallAtFpr(scores: ArrayLike<number>, labels: ArrayLike<MailClass>, maxFpr: number): RecallAtFpr {
  return recallAtFprOfGroups(tieGroups(scores, labels), maxFpr);
}

function recallAtFprOfGroups(groups: TieGroup[], maxFpr: number): RecallAtFpr {
  const spam = groups.reduce((a, g) => a + g.spam, 0);
  const ham = groups.reduce((a, g) => a + g.ham, 0);
  let best: RecallAtFpr = { maxFpr, recall: 0, fpr: 0, threshold: Infinity, spamCaught: 0, hamFlagged: 0 };
  let tp = 0;
  let fp = 0;
  for (const g of groups) {
    tp += g.spam;
    fp += g.ham;
    const fpr = ham ? fp / ham : 0;
    // FPR only grows as the threshold falls, so the first group over the bound ends the search.
    if (fpr > maxFpr) break;
    best = { maxFpr, recall: spam ? tp / spam : NaN, fpr, threshold: g.score, spamCaught: tp, hamFlagged: fp };
  }
  return best;
}

export interface RocPoint {
  fpr: number;
  tpr: number;
  /** Flag score >= threshold; Infinity for the (0, 0) corner. */
  threshold: number;
}

/** ROC vertices, one per distinct score (a tie group is a straight segment), from (0,0) to (1,1). */
export function rocCurve(scores: ArrayLike<number>, labels: ArrayLike<MailClass>): RocPoint[] {
  const groups = tieGroups(scores, labels);
  const spam = groups.reduce((a, g) => a + g.spam, 0);
  const ham = groups.reduce((a, g) => a + g.ham, 0);
  const pts: RocPoint[] = [{ fpr: 0, tpr: 0, threshold: Infinity }];
  let tp = 0;
  let fp = 0;
  for (const g of groups) {
    tp += g.spam;
    fp += g.ham;
    pts.push({ fpr: ham ? fp / ham : 0, tpr: spam ? tp / spam : 0, threshold: g.score });
  }
  return pts;
}

export function computeMetrics(
  scores: ArrayLike<number>,
  labels: ArrayLike<MailClass>,
  hard: ArrayLike<boolean>,
  opts: MetricOptions = {},
): Metrics {
  const threshold = opts.threshold ?? 0.5;
  const rejectThreshold = opts.rejectThreshold ?? 0.8;
  const groups = tieGroups(scores, labels);
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  let hardHam = 0;
  let hardHamFp = 0;
  let hamAboveReject = 0;
  let spamAboveReject = 0;
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i]!;
    const flagged = s >= threshold;
    if (labels[i] === 'spam') {
      if (flagged) tp++;
      else fn++;
      if (s > rejectThreshold) spamAboveReject++;
    } else {
      if (flagged) fp++;
      else tn++;
      if (s > rejectThreshold) hamAboveReject++;
      if (hard[i]) {
        hardHam++;
        if (flagged) hardHamFp++;
      }
    }
  }
  const spam = tp + fn;
  const ham = fp + tn;
  const precision = tp + fp ? tp / (tp + fp) : NaN;
  const recall = spam ? tp / spam : NaN;
  return {
    n: scores.length,
    spam,
    ham,
    hardHam,
    threshold,
    tp,
    fp,
    tn,
    fn,
    accuracy: scores.length ? (tp + tn) / scores.length : NaN,
    precision,
    recall,
    f1: tp ? (2 * tp) / (2 * tp + fp + fn) : 0,
    fpr: ham ? fp / ham : NaN,
    hardHamFp,
    hardHamFpr: hardHam ? hardHamFp / hardHam : NaN,
    rejectThreshold,
    hamAboveReject,
    spamAboveReject,
    auc: aucOfGroups(groups),
    recallAtFpr: (opts.fprBounds ?? [0.001, 0.01]).map((b) => recallAtFprOfGroups(groups, b)),
  };
}

export interface FoldedMetrics {
  /** Over the pooled out-of-fold scores of all folds. */
  pooled: Metrics;
  /** AUC of each fold's test set on its own: the spread shows how stable the pooled figure is. */
  foldAuc: number[];
}

export function evaluateFolds(
  scores: ArrayLike<number>,
  labels: ArrayLike<MailClass>,
  hard: ArrayLike<boolean>,
  assignment: ArrayLike<number>,
  k: number,
  opts: MetricOptions = {},
): FoldedMetrics {
  const foldAuc: number[] = [];
  for (let f = 0; f < k; f++) {
    const s: number[] = [];
    const l: MailClass[] = [];
    for (let i = 0; i < scores.length; i++) {
      if (assignment[i] !== f) continue;
      s.push(scores[i]!);
      l.push(labels[i]!);
    }
    foldAuc.push(auc(s, l));
  }
  return { pooled: computeMetrics(scores, labels, hard, opts), foldAuc };
}
