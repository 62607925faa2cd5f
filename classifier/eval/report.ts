/**
 * Renders an evaluation as Markdown (rows = metrics, columns = models: there are a handful of
 * models and a dozen metrics, so this is the way round that fits a page) and the ROC chart.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { table } from '../../core/text-table.ts';
import { rocCurve, type RecallAtFpr } from './metrics.ts';
import { renderRocSvg } from './roc.ts';
import type { ColumnResult, EvaluationResult } from './runner.ts';

export function percent(v: number, digits = 2): string {
  return Number.isFinite(v) ? `${(v * 100).toFixed(digits)}%` : 'n/a';
}

/** Thresholds near 1 as "1 − 3e-9": bogofilter's useful cut-offs differ only far behind the point. */
export function formatThreshold(t: number): string {
  if (t === Infinity) return 'none';
  if (t > 0.999 && t < 1) return `1 − ${(1 - t).toExponential(1)}`;
  return String(Number(t.toPrecision(4)));
}

function seconds(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(0)} s` : `${(ms / 1000).toFixed(2)} s`;
}

function rate(perSec: number): string {
  return Number.isFinite(perSec) ? Math.round(perSec).toLocaleString('en-US') : 'n/a';
}

function atFpr(r: RecallAtFpr | undefined): string {
  if (!r) return 'n/a';
  return `${percent(r.recall)} (${r.hamFlagged} FP, t ≥ ${formatThreshold(r.threshold)})`;
}

/** The metric rows of the table; each maps a column to its cell. */
function rows(result: EvaluationResult): Array<[string, (c: ColumnResult) => string]> {
  const o = result.metricOptions;
  const t = o.threshold ?? 0.5;
  const rej = o.rejectThreshold ?? 0.8;
  const bounds = o.fprBounds ?? [0.001, 0.01];
  return [
    ['AUC (pooled out-of-fold)', (c) => c.metrics.auc.toFixed(5)],
    [`AUC per fold (min–max of ${result.folds})`, (c) => `${Math.min(...c.foldAuc).toFixed(5)}–${Math.max(...c.foldAuc).toFixed(5)}`],
    ...bounds.map((b, i): [string, (c: ColumnResult) => string] => [`Spam recall @ FPR ≤ ${percent(b, b < 0.01 ? 1 : 0)}`, (c) => atFpr(c.metrics.recallAtFpr[i])]),
    [`Accuracy @ ${t}`, (c) => percent(c.metrics.accuracy)],
    [`Precision @ ${t}`, (c) => percent(c.metrics.precision)],
    [`Recall @ ${t}`, (c) => percent(c.metrics.recall)],
    [`F1 @ ${t}`, (c) => c.metrics.f1.toFixed(4)],
    [`Ham FPR @ ${t}`, (c) => `${percent(c.metrics.fpr, 3)} (${c.metrics.fp}/${c.metrics.ham})`],
    [`Hard-ham FPR @ ${t}`, (c) => `${percent(c.metrics.hardHamFpr)} (${c.metrics.hardHamFp}/${c.metrics.hardHam})`],
    [`Ham > reject (${rej})`, (c) => `${c.metrics.hamAboveReject}`],
    [`Spam > reject (${rej})`, (c) => `${c.metrics.spamAboveReject} (${percent(c.metrics.spamAboveReject / c.metrics.spam, 1)})`],
    [`Training (sum of ${result.folds} folds)`, (c) => seconds(c.timing.trainMs)],
    ['Scoring (msgs/s)', (c) => rate(c.timing.msgsPerSec)],
  ];
}

/** The metrics table alone (what the baseline script prints). */
export function renderTable(result: EvaluationResult): string {
  const cols = result.columns;
  return table(
    ['metric', ...cols.map((c) => c.name)],
    rows(result).map(([label, cell]) => [label, ...cols.map(cell)]),
  );
}

export function renderMarkdown(result: EvaluationResult, opts: { title?: string; rocFile?: string } = {}): string {
  const c = result.corpus;
  const o = result.metricOptions;
  const lines = [
    `# ${opts.title ?? 'Classifier evaluation'}`,
    '',
    `Corpus: ${c.n.toLocaleString('en-US')} messages: ${c.spam} spam, ${c.ham} ham (${c.hardHam} hard ham). ` +
      `${result.folds}-fold cross-validation, stratified by spam / easy ham / hard ham, seed ${result.seed}.`,
    '',
    'All figures are over the pooled out-of-fold scores (each message scored by the model that did ' +
      'not see it in training), except the per-fold AUC range. A message counts as spam at score ≥ ' +
      `${o.threshold ?? 0.5}; "reject" counts scores > ${o.rejectThreshold ?? 0.8}. "Spam recall @ FPR ≤ x" ` +
      'uses the lowest threshold whose ham false-positive rate stays within x; messages with equal ' +
      'scores always fall on the same side, so the threshold is one that can really be set.',
    '',
  ];
  if (result.bogofilterVersion) {
    lines.push(`Baseline: ${result.bogofilterVersion}, compiled-in defaults (\`-C\`), a fresh database per fold.`, '');
  }
  lines.push(renderTable(result), '');
  if (opts.rocFile) lines.push(`![ROC curves](${opts.rocFile})`, '');
  return lines.join('\n');
}

export function renderRoc(result: EvaluationResult, title = 'ROC (pooled out-of-fold scores)'): string {
  return renderRocSvg(
    result.columns.map((c) => ({ name: `${c.name} (AUC ${c.metrics.auc.toFixed(4)})`, points: rocCurve(c.scores, result.labels) })),
    { title },
  );
}

/** Writes DIR/eval.md and DIR/roc.svg (DIR is created) and returns their paths. */
export async function writeReport(result: EvaluationResult, dir: string, opts: { title?: string } = {}): Promise<{ markdown: string; svg: string }> {
  await mkdir(dir, { recursive: true });
  const markdown = path.join(dir, 'eval.md');
  const svg = path.join(dir, 'roc.svg');
  await writeFile(svg, renderRoc(result));
  await writeFile(markdown, renderMarkdown(result, { ...opts, rocFile: 'roc.svg' }));
  return { markdown, svg };
}
