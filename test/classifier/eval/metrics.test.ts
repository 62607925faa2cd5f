/**
 * Metrics against hand-computed cases, ties above all (bogofilter scores thousands of messages
 * exactly 0 or 1), plus properties checked against brute force on random tied data.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { auc, computeMetrics, evaluateFolds, recallAtFpr, rocCurve, tieGroups } from '../../../classifier/eval/metrics.ts';
import type { MailClass } from '../../../classifier/types.ts';

const S = 'spam' as const;
const H = 'ham' as const;

/** Scores and labels from [score, label] pairs. */
function data(pairs: Array<[number, MailClass]>): { s: number[]; l: MailClass[] } {
  return { s: pairs.map((p) => p[0]), l: pairs.map((p) => p[1]) };
}

function bruteAuc(s: number[], l: MailClass[]): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < s.length; i++) {
    if (l[i] !== S) continue;
    for (let j = 0; j < s.length; j++) {
      if (l[j] !== H) continue;
      den++;
      num += s[i]! > s[j]! ? 1 : s[i] === s[j] ? 0.5 : 0;
    }
  }
  return num / den;
}

test('AUC: separated = 1, reversed = 0, all equal = 0.5', () => {
  const sep = data([[0.9, S], [0.8, S], [0.2, H], [0.1, H], [0.0, H]]);
  assert.equal(auc(sep.s, sep.l), 1);
  const rev = data([[0.1, S], [0.9, H], [0.8, H]]);
  assert.equal(auc(rev.s, rev.l), 0);
  const same = data([[0.5, S], [0.5, S], [0.5, H], [0.5, H], [0.5, H]]);
  assert.equal(auc(same.s, same.l), 0.5);
  // bogofilter-like: every score 0 or 1, separated, is still perfect.
  const bf = data([[1, S], [1, S], [0, H], [0, H]]);
  assert.equal(auc(bf.s, bf.l), 1);
});

test('AUC with ties counts each spam/ham tie as half', () => {
  // Pairs: 0.8 beats both ham (2); each 0.5 spam ties one ham (0.5) and beats 0.2 (1): 2 + 2 × 1.5 = 5 of 6.
  const d = data([[0.8, S], [0.5, S], [0.5, S], [0.5, H], [0.2, H]]);
  assert.equal(auc(d.s, d.l), 5 / 6);
  // One of two ham tied with all spam at 1: 2 × (1 + 0.5) / 4.
  const e = data([[1, S], [1, S], [1, H], [0, H]]);
  assert.equal(auc(e.s, e.l), 0.75);
});

test('AUC is NaN without one of the classes, and input order does not matter', () => {
  assert.ok(Number.isNaN(auc([0.1, 0.2], [S, S])));
  assert.ok(Number.isNaN(auc([], [])));
  assert.throws(() => auc([NaN, 0.1], [S, H]), /finite/);
  assert.throws(() => auc([0.1], [S, H]), /labels/);
});

test('AUC equals brute-force pair counting on random tied scores', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.boolean()), { minLength: 2, maxLength: 60 }),
      (rows) => {
        const s = rows.map((r) => r[0] / 5);
        const l = rows.map((r): MailClass => (r[1] ? S : H));
        if (!l.includes(S) || !l.includes(H)) return;
        assert.ok(Math.abs(auc(s, l) - bruteAuc(s, l)) < 1e-12);
      },
    ),
    { numRuns: 300 },
  );
});

test('recall at FPR: a tie group with one ham in it is flagged whole or not at all', () => {
  // Three spam share score 1 with one ham; 500 ham → flagging that group costs FPR 0.2%.
  const pairs: Array<[number, MailClass]> = [[1, S], [1, S], [1, S], [1, H], [0.9, S]];
  for (let i = 0; i < 499; i++) pairs.push([0, H]);
  const d = data(pairs);
  // ≤ 0.1%: the score-1 group can't be flagged, so nothing can: recall 0, no usable threshold.
  // (Splitting the tie by input order would wrongly claim 3/4.)
  const strict = recallAtFpr(d.s, d.l, 0.001);
  assert.deepEqual(strict, { maxFpr: 0.001, recall: 0, fpr: 0, threshold: Infinity, spamCaught: 0, hamFlagged: 0 });
  // ≤ 1%: lowest admissible threshold is 0.9 (the 0 group would flag all ham).
  const loose = recallAtFpr(d.s, d.l, 0.01);
  assert.equal(loose.threshold, 0.9);
  assert.equal(loose.recall, 1);
  assert.equal(loose.hamFlagged, 1);
  assert.equal(loose.fpr, 1 / 500);
});

test('recall at FPR: an FPR exactly at the bound is allowed', () => {
  const pairs: Array<[number, MailClass]> = [[0.99, S], [0.98, H], [0.7, S], [0.6, S], [0.5, H]];
  for (let i = 0; i < 998; i++) pairs.push([0.1, H]);
  const d = data(pairs); // 1000 ham: one FP = 0.1% exactly
  const r = recallAtFpr(d.s, d.l, 0.001);
  assert.equal(r.threshold, 0.6);
  assert.equal(r.recall, 1);
  assert.equal(r.hamFlagged, 1);
  // Below one ham's worth, only the top spam is safe.
  const r0 = recallAtFpr(d.s, d.l, 0.0005);
  assert.equal(r0.threshold, 0.99);
  assert.equal(r0.recall, 1 / 3);
});

test('recall at FPR: chosen threshold is within the bound, the next lower score is not, and order is irrelevant', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 8 }), fc.boolean()), { minLength: 1, maxLength: 80 }),
      fc.constantFrom(0, 0.001, 0.01, 0.05, 0.2),
      fc.integer(),
      (rows, bound, seed) => {
        const s = rows.map((r) => r[0] / 8);
        const l = rows.map((r): MailClass => (r[1] ? S : H));
        const ham = l.filter((x) => x === H).length;
        const spam = l.length - ham;
        const fprAt = (t: number) => (ham ? s.filter((v, i) => v >= t && l[i] === H).length / ham : 0);
        const r = recallAtFpr(s, l, bound);
        assert.ok(r.fpr <= bound);
        if (r.threshold !== Infinity) {
          assert.ok(s.includes(r.threshold));
          assert.equal(r.fpr, fprAt(r.threshold));
          assert.equal(r.spamCaught, s.filter((v, i) => v >= r.threshold && l[i] === S).length);
          if (spam) assert.equal(r.recall, r.spamCaught / spam);
        }
        const lower = s.filter((v) => v < r.threshold);
        if (lower.length) assert.ok(fprAt(Math.max(...lower)) > bound);
        // A permutation gives the same answer.
        const perm = s.map((_, i) => i).sort((a, b) => ((a * 7919 + seed) % 101) - ((b * 7919 + seed) % 101));
        assert.deepEqual(recallAtFpr(perm.map((i) => s[i]!), perm.map((i) => l[i]!), bound), r);
      },
    ),
    { numRuns: 300 },
  );
});

test('computeMetrics: threshold is inclusive, reject is strict, hard ham counted apart', () => {
  const scores = [0.9, 0.5, 0.4, 0.8, 0.5, 0.1, 0.85];
  const labels: MailClass[] = [S, S, S, H, H, H, H];
  const hard = [false, false, false, true, false, false, true];
  const m = computeMetrics(scores, labels, hard, { threshold: 0.5, rejectThreshold: 0.8 });
  assert.deepEqual([m.tp, m.fn, m.fp, m.tn], [2, 1, 3, 1]);
  assert.equal(m.accuracy, 3 / 7);
  assert.equal(m.precision, 2 / 5);
  assert.equal(m.recall, 2 / 3);
  assert.equal(m.f1, (2 * 2) / (2 * 2 + 3 + 1));
  assert.equal(m.fpr, 3 / 4);
  assert.equal(m.hardHam, 2);
  assert.equal(m.hardHamFp, 2);
  assert.equal(m.hardHamFpr, 1);
  assert.equal(m.hamAboveReject, 1); // 0.85 only; 0.8 is not above 0.8
  assert.equal(m.spamAboveReject, 1);
  assert.equal(m.auc, bruteAuc(scores, labels));
  assert.deepEqual(
    m.recallAtFpr.map((r) => r.maxFpr),
    [0.001, 0.01],
  );
});

test('computeMetrics: precision is NaN when nothing is flagged, F1 then 0', () => {
  const m = computeMetrics([0.1, 0.2], [S, H], [false, false], { threshold: 0.5 });
  assert.ok(Number.isNaN(m.precision));
  assert.equal(m.f1, 0);
  assert.equal(m.recall, 0);
});

test('ROC curve: one vertex per distinct score, from (0,0) to (1,1)', () => {
  const d = data([[1, S], [1, H], [0.5, S], [0, H]]);
  assert.deepEqual(rocCurve(d.s, d.l), [
    { fpr: 0, tpr: 0, threshold: Infinity },
    { fpr: 0.5, tpr: 0.5, threshold: 1 },
    { fpr: 0.5, tpr: 1, threshold: 0.5 },
    { fpr: 1, tpr: 1, threshold: 0 },
  ]);
  assert.deepEqual(tieGroups(d.s, d.l), [
    { score: 1, spam: 1, ham: 1 },
    { score: 0.5, spam: 1, ham: 0 },
    { score: 0, spam: 0, ham: 1 },
  ]);
});

test('evaluateFolds: pooled metrics over all, AUC per fold on its own', () => {
  // Fold 0 is perfect, fold 1 is reversed; pooled sees both.
  const scores = [0.9, 0.1, 0.2, 0.8];
  const labels: MailClass[] = [S, H, S, H];
  const r = evaluateFolds(scores, labels, [false, false, false, false], [0, 0, 1, 1], 2);
  assert.deepEqual(r.foldAuc, [1, 0]);
  assert.equal(r.pooled.auc, bruteAuc(scores, labels));
  assert.equal(r.pooled.n, 4);
});
