/** The smoke test's report: one row per check (core/text-table.ts), then a summary line. Pure. */
import { table } from '../../core/text-table.ts';
import type { CheckResult } from './types.ts';

/** Long details (a reply with a queue id and a reference) are cut so the table stays readable. */
const MAX_DETAIL = 140;

export function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

export function renderResults(results: CheckResult[], totalMs: number): string {
  const rows = results.map((r, i) => [String(i + 1), r.title, r.ok ? 'pass' : 'FAIL', formatMs(r.ms), cut(r.detail)]);
  const failed = results.filter((r) => !r.ok).length;
  const summary = failed === 0 ? `all ${results.length} checks passed in ${formatMs(totalMs)}` : `${failed} of ${results.length} checks FAILED (${formatMs(totalMs)})`;
  return `${table(['#', 'check', 'result', 'time', 'detail'], rows)}\n\n${summary}\n`;
}

function cut(s: string): string {
  return s.length > MAX_DETAIL ? `${s.slice(0, MAX_DETAIL - 1)}…` : s;
}
