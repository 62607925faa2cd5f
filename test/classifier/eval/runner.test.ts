/**
 * The runner with stand-in models on a corpus slice: folds never leak test messages into training,
 * multi-score models become several columns, and the report files come out well-formed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { bogofilterVersion } from '../../../classifier/eval/bogofilter.ts';
import { loadSpamAssassin, type CorpusMessage } from '../../../classifier/eval/corpus.ts';
import { renderMarkdown, writeReport } from '../../../classifier/eval/report.ts';
import { runEvaluation, type EvalModel, type EvalModelFactory } from '../../../classifier/eval/runner.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ceerion-eval-runner-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const corpus = await loadSpamAssassin({ limitPerGroup: 20 });

/** A crude word-count model: share of a message's words seen more in training spam than ham. */
function wordModel(log: { trained: Set<string>[]; scoredUnseen: boolean[] }): EvalModelFactory {
  return (): EvalModel => {
    const spam = new Map<string, number>();
    const ham = new Map<string, number>();
    const seen = new Set<string>();
    log.trained.push(seen);
    const words = (m: CorpusMessage) => new Set(m.raw.toString('latin1').toLowerCase().match(/[a-z]{3,12}/g) ?? []);
    return {
      train(msgs) {
        for (const m of msgs) {
          seen.add(m.id);
          const t = m.label === 'spam' ? spam : ham;
          for (const w of words(m)) t.set(w, (t.get(w) ?? 0) + 1);
        }
      },
      score(m) {
        log.scoredUnseen.push(!seen.has(m.id));
        let s = 0;
        let n = 0;
        for (const w of words(m)) {
          const a = spam.get(w) ?? 0;
          const b = ham.get(w) ?? 0;
          if (a + b === 0) continue;
          n++;
          if (a > b) s++;
        }
        return n ? s / n : 0.5;
      },
    };
  };
}

test('runEvaluation: out-of-fold scores only, one fresh model per fold, columns per named score', async () => {
  const log = { trained: [] as Set<string>[], scoredUnseen: [] as boolean[] };
  const events: string[] = [];
  const word = wordModel(log);
  const r = await runEvaluation({
    corpus,
    folds: 4,
    seed: 3,
    models: {
      word,
      // Several named scores from one model: each becomes "multi.<name>".
      multi: () => ({ train() {}, score: (m) => ({ constant: 0.5, oracle: m.label === 'spam' ? 0.9 : 0.1 }) }),
      '': () => ({ train() {}, score: (m) => ({ bare: m.hard ? 1 : 0 }) }),
    },
    onProgress: (e) => e.stage === 'done' && events.push(`${e.model}:${e.fold}`),
  });
  assert.deepEqual(r.columns.map((c) => c.name), ['word', 'multi.constant', 'multi.oracle', 'bare']);
  assert.equal(log.trained.length, 4, 'factory called once per fold');
  assert.equal(log.scoredUnseen.length, corpus.length);
  assert.ok(log.scoredUnseen.every(Boolean), 'no message is scored by a model that trained on it');
  assert.deepEqual(events.slice(0, 4), ['word:0', 'word:1', 'word:2', 'word:3']);
  const byName = Object.fromEntries(r.columns.map((c) => [c.name, c]));
  assert.equal(byName['multi.oracle']!.metrics.auc, 1);
  assert.equal(byName['multi.constant']!.metrics.auc, 0.5);
  assert.deepEqual(byName['multi.oracle']!.foldAuc, [1, 1, 1, 1]);
  assert.ok(byName['word']!.metrics.auc > 0.8, `word model AUC ${byName['word']!.metrics.auc}`);
  assert.equal(byName['multi.oracle']!.timing, byName['multi.constant']!.timing);
  assert.deepEqual(r.corpus, { n: 100, spam: 40, ham: 60, hardHam: 20 });
  assert.equal(r.ids.length, 100);
});

test('runEvaluation: a model that drops a score for some messages is an error', async () => {
  await assert.rejects(
    runEvaluation({
      corpus,
      folds: 2,
      models: { flaky: () => ({ train() {}, score: (m): Record<string, number> => (m.label === 'spam' ? { a: 1, b: 1 } : { a: 0 }) }) },
    }),
    /gave no "flaky.b" score/,
  );
});

test('writeReport: eval.md with every column and metric row, roc.svg with one polyline per column', async () => {
  const withBogofilter = (await bogofilterVersion()) !== undefined;
  const r = await runEvaluation({
    corpus,
    folds: 2,
    includeBogofilter: withBogofilter,
    models: { coin: () => ({ train() {}, score: (m) => (m.id.length % 3) / 2 }), oracle: () => ({ train() {}, score: (m) => (m.label === 'spam' ? 1 : 0) }) },
  });
  const names = [...(withBogofilter ? ['bogofilter'] : []), 'coin', 'oracle'];
  assert.deepEqual(r.columns.map((c) => c.name), names);
  const dir = path.join(tmp, 'bench', 'results');
  const w = await writeReport(r, dir);
  const md = readFileSync(w.markdown, 'utf8');
  const svg = readFileSync(w.svg, 'utf8');
  assert.equal(w.markdown, path.join(dir, 'eval.md'));
  assert.ok(md.includes(`| metric `) && names.every((n) => md.includes(` ${n} `)));
  for (const row of ['AUC (pooled out-of-fold)', 'Spam recall @ FPR ≤ 0.1%', 'Spam recall @ FPR ≤ 1%', 'Ham FPR @ 0.5', 'Hard-ham FPR @ 0.5', 'Ham > reject (0.8)', 'Scoring (msgs/s)']) {
    assert.ok(md.includes(`| ${row}`), row);
  }
  assert.ok(md.includes('![ROC curves](roc.svg)'));
  assert.ok(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'));
  assert.equal(svg.match(/<polyline\b/g)?.length, names.length);
  // The oracle's row shows a perfect model; rendering is deterministic.
  assert.match(md, /\| AUC \(pooled out-of-fold\) +\|.* 1\.00000 +\|/);
  assert.equal(renderMarkdown(r, { rocFile: 'roc.svg' }), md);
});
