/**
 * The bogofilter baseline against the real binary on a 200-message slice of the corpus. Skipped
 * (with the reason shown) where bogofilter is not installed: `apt-get install bogofilter`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { bogofilterCrossValidate, bogofilterVersion } from '../../../classifier/eval/bogofilter.ts';
import { loadSpamAssassin } from '../../../classifier/eval/corpus.ts';
import { assignFolds } from '../../../classifier/eval/folds.ts';
import { auc } from '../../../classifier/eval/metrics.ts';

const version = await bogofilterVersion();
const skip = version ? false : 'bogofilter is not installed';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ceerion-eval-bf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('bogofilterVersion: the installed version, undefined for a missing binary', { skip }, async () => {
  assert.match(version!, /^bogofilter version \d/);
  assert.equal(await bogofilterVersion('/nonexistent/bogofilter'), undefined);
});

test('2-fold bogofilter on 200 corpus messages: AUC > 0.9, a score for each, temp dirs removed', { skip }, async () => {
  const corpus = await loadSpamAssassin({ limitPerGroup: 40 });
  assert.equal(corpus.length, 200);
  const assignment = assignFolds(corpus, 2, 1);
  const root = mkdtempSync(path.join(tmp, 'run-'));
  const folds: number[] = [];
  const r = await bogofilterCrossValidate(corpus, assignment, 2, { tmpRoot: root, onFold: (t) => folds.push(t.fold) });
  assert.equal(r.scores.length, 200);
  assert.ok(r.scores.every((s) => s >= 0 && s <= 1), 'every message scored, within [0,1]');
  const a = auc(r.scores, corpus.map((m) => m.label));
  assert.ok(a > 0.9, `AUC ${a}`);
  assert.deepEqual(folds.sort(), [0, 1]);
  assert.deepEqual(r.folds.map((f) => f.testSize), [100, 100]);
  assert.deepEqual(readdirSync(root), [], 'temp directory removed');
  assert.ok(r.wallMs > 0 && r.trainMs > 0 && r.scoreMs > 0);
});

test('a failing bogofilter rejects and still removes the temp directory', { skip }, async () => {
  const corpus = await loadSpamAssassin({ limitPerGroup: 2 });
  const root = mkdtempSync(path.join(tmp, 'fail-'));
  // /bin/false stands in for a bogofilter that exits non-zero while registering.
  await assert.rejects(bogofilterCrossValidate(corpus, assignFolds(corpus, 2, 1), 2, { bin: '/bin/false', tmpRoot: root }), /exited 1/);
  assert.deepEqual(readdirSync(root), []);
});
