/**
 * bogofilter alone over the SpamAssassin corpus, k-fold, and its metrics table:
 *
 *   node --import tsx classifier/eval/bogofilter-baseline.ts [--folds 5] [--seed 1] [--out DIR]
 *
 * --out also writes DIR/eval.md and DIR/roc.svg.
 */
import { parseArgs } from 'node:util';
import { loadSpamAssassin } from './corpus.ts';
import { computeMetrics } from './metrics.ts';
import { renderTable, writeReport } from './report.ts';
import { runEvaluation } from './runner.ts';

const { values } = parseArgs({
  options: {
    folds: { type: 'string', default: '5' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string' },
  },
});

const t0 = performance.now();
const corpus = await loadSpamAssassin();
const t1 = performance.now();
const result = await runEvaluation({
  corpus,
  folds: Number(values.folds),
  seed: Number(values.seed),
  includeBogofilter: true,
  onProgress: (e) => process.stderr.write(`bogofilter fold ${e.fold + 1}/${e.folds} done in ${((e.ms ?? 0) / 1000).toFixed(2)} s\n`),
});
const t2 = performance.now();

const col = result.columns[0]!;
console.log(`${result.bogofilterVersion}; ${result.corpus.n} messages (${result.corpus.spam} spam, ${result.corpus.ham} ham, ${result.corpus.hardHam} hard ham); ${result.folds} folds, seed ${result.seed}`);
console.log(`corpus load ${((t1 - t0) / 1000).toFixed(2)} s; cross-validation wall ${(col.timing.wallMs / 1000).toFixed(2)} s (train ${(col.timing.trainMs / 1000).toFixed(2)} s + score ${(col.timing.scoreMs / 1000).toFixed(2)} s summed over folds); total ${((t2 - t0) / 1000).toFixed(2)} s`);
console.log();
console.log(renderTable(result));
// bogofilter's own verdicts: spam at >= spam_cutoff 0.99, ham at <= ham_cutoff 0.45, unsure between.
const own = computeMetrics(col.scores, result.labels, result.hard, { threshold: 0.99 });
let unsure = 0;
for (const s of col.scores) if (s > 0.45 && s < 0.99) unsure++;
console.log(
  `\nAt bogofilter's spam_cutoff 0.99: ${own.fp}/${own.ham} ham flagged (${own.hardHamFp} hard), ` +
    `spam recall ${(own.recall * 100).toFixed(2)}%; ${unsure} messages unsure (0.45 < score < 0.99).`,
);
if (values.out) {
  const w = await writeReport(result, values.out, { title: 'bogofilter baseline' });
  console.log(`\nwrote ${w.markdown} and ${w.svg}`);
}
