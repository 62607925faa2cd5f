/**
 * How `ceerion classify` shows a verdict: the score and verdict, one row per component
 * (probability, whether it voted, its share of the final log-odds), the combiner's other terms,
 * and what the details say (Bayes' top tokens, fired membrane rules, affect's emotions).
 */
import type { SpamEngine } from '../classifier/engine/engine.ts';
import type { Classification, ComponentScore } from '../classifier/types.ts';
import { table } from '../core/text-table.ts';

export interface PrintOptions {
  engine: SpamEngine;
  /** Where the model came from: {file} or {version, lastEventId, learnsApplied}. */
  source: Record<string, unknown>;
  json: boolean;
  out?: { write(s: string): unknown };
}

interface TokenVote {
  token: string;
  p: number;
}

const isVotes = (v: unknown): v is TokenVote[] =>
  Array.isArray(v) && v.every((x) => typeof x === 'object' && x !== null && typeof (x as TokenVote).token === 'string');

function detailLines(c: ComponentScore): string[] {
  const lines: string[] = [];
  for (const [key, value] of Object.entries(c.details ?? {})) {
    if (isVotes(value)) {
      if (value.length) lines.push(`${c.name} ${key}: ${value.map((v) => `${v.token} (${v.p})`).join(', ')}`);
    } else if (Array.isArray(value)) {
      if (value.length) lines.push(`${c.name} ${key}: ${value.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(', ')}`);
    } else if (typeof value === 'number') lines.push(`${c.name} ${key}: ${Number(value.toPrecision(4))}`);
    else lines.push(`${c.name} ${key}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
  }
  return lines;
}

export function printClassification(r: Classification, opts: PrintOptions): void {
  const out = opts.out ?? process.stdout;
  const t = opts.engine.cfg.thresholds;
  const mode = opts.engine.combiner.mode;
  if (opts.json) {
    const body = {
      score: r.score,
      verdict: r.verdict,
      thresholds: t,
      mode,
      model: opts.source,
      ms: r.ms,
      components: r.components.map((c) => ({
        name: c.name,
        probability: c.probability,
        voted: c.voted,
        contribution: r.contributions[c.name] ?? 0,
        ...(c.details ? { details: c.details } : {}),
      })),
      contributions: r.contributions,
    };
    out.write(`${JSON.stringify(body, null, 2)}\n`);
    return;
  }
  const from = 'file' in opts.source ? `model file ${String(opts.source.file)}` : `model version ${opts.source.version ?? 'none'} + ${String(opts.source.learnsApplied)} learns`;
  const names = new Set(r.components.map((c) => c.name));
  const rows = r.components.map((c) => [c.name, c.probability.toFixed(4), c.voted ? 'yes' : 'no', (r.contributions[c.name] ?? 0).toFixed(3)]);
  // Stacker terms that are not components: the intercept and the auth signals.
  for (const [name, v] of Object.entries(r.contributions)) if (!names.has(name)) rows.push([name, '', '', v.toFixed(3)]);
  const lines = [
    `score ${r.score.toFixed(4)}, verdict ${r.verdict} (junk ≥ ${t.junk}, reject > ${t.reject}); ${mode} combination; ${from}; ${r.ms.toFixed(1)} ms`,
    '',
    table(['component', 'probability', 'voted', 'contribution'], rows),
  ];
  const details = r.components.flatMap(detailLines);
  if (details.length) lines.push('', ...details);
  out.write(`${lines.join('\n')}\n`);
}
