/**
 * Stratified k-fold assignment. Strata are spam, easy ham and hard ham: hard ham is what produces
 * false positives, so a fold without its share would make that fold's FPR look better than it is.
 */
import type { MailClass } from '../types.ts';

export type Stratum = 'spam' | 'ham' | 'hard-ham';
export const STRATA: readonly Stratum[] = ['spam', 'ham', 'hard-ham'];

export interface Stratifiable {
  label: MailClass;
  hard: boolean;
}

export function stratumOf(m: Stratifiable): Stratum {
  if (m.label === 'spam') return 'spam';
  return m.hard ? 'hard-ham' : 'ham';
}

/** mulberry32: tiny, fast, good enough for shuffling, and the same on every platform. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffle<T>(items: T[], rand: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/**
 * The fold (0..k-1) of every item, by position. Each stratum is shuffled with the seed and dealt
 * round-robin; the dealing position carries over from one stratum to the next, so every stratum is
 * within ±1 of equal per fold and the fold totals are too (restarting at fold 0 for each stratum
 * would make fold 0 up to three messages larger). Depends only on the items' order and strata.
 */
export function assignFolds(items: readonly Stratifiable[], k = 5, seed = 1): Uint8Array {
  if (!Number.isInteger(k) || k < 2 || k > 255) throw new RangeError(`folds must be an integer in 2..255, got ${k}`);
  const rand = seededRandom(seed);
  const fold = new Uint8Array(items.length);
  let deal = 0;
  for (const s of STRATA) {
    const idx: number[] = [];
    items.forEach((m, i) => {
      if (stratumOf(m) === s) idx.push(i);
    });
    for (const i of shuffle(idx, rand)) fold[i] = deal++ % k;
  }
  return fold;
}

export interface FoldSplit {
  fold: number;
  /** Item positions, ascending. */
  train: number[];
  test: number[];
}

export function foldSplits(assignment: ArrayLike<number>, k: number): FoldSplit[] {
  const splits: FoldSplit[] = Array.from({ length: k }, (_, fold) => ({ fold, train: [], test: [] }));
  for (let i = 0; i < assignment.length; i++) {
    const f = assignment[i]!;
    splits.forEach((s) => (s.fold === f ? s.test : s.train).push(i));
  }
  return splits;
}
