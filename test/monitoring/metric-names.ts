// The metric names the code exports, found the way a reader would: string literals that name a
// metric in the files that use prom-client, plus prom-client's default process metrics (prefixed
// ceerion_ by core/metrics.ts). Monitoring files may use only these (and Prometheus's own `up`).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../harness/milter-process.ts';
import { createRegistry } from '../../core/metrics.ts';

const SOURCE_DIRS = ['milter', 'policyd', 'lmtp-indexer', 'dovecot-plugins', 'classifier', 'core', 'backup', 'cli', 'stack', 'accounts'];
const METRIC_LITERAL = /'((?:ceerion|lmtp|reservoir)_[a-z0-9_]+)'/g;

function tsFiles(dir: string, out: string[] = []): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && e.name !== 'node_modules') tsFiles(p, out);
    else if (e.isFile() && e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

export async function exportedMetricNames(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const dir of SOURCE_DIRS) {
    for (const file of tsFiles(path.join(ROOT, dir))) {
      const text = readFileSync(file, 'utf8');
      if (!/from 'prom-client'/.test(text)) continue;
      for (const m of text.matchAll(METRIC_LITERAL)) names.add(m[1]!);
    }
  }
  const defaults = await createRegistry().getMetricsAsJSON();
  for (const m of defaults) names.add(m.name);
  return names;
}

/** Histogram and summary series carry a suffix on the family name. */
const SERIES_SUFFIX = /_(bucket|count|sum)$/;

/** The metric names a PromQL expression reads (label values and names inside {} are ignored). */
export function metricsInPromQL(expr: string): string[] {
  const bare = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, '{}');
  const found = new Set<string>();
  for (const m of bare.matchAll(/\b((?:ceerion|lmtp|reservoir)_[a-z0-9_]+|up)\b/g)) found.add(m[1]!);
  return [...found];
}

/** A name the code does not export (the family name of a _bucket/_count/_sum series counts). */
export function unknownMetrics(expr: string, known: Set<string>): string[] {
  return metricsInPromQL(expr).filter((n) => n !== 'up' && !known.has(n) && !known.has(n.replace(SERIES_SUFFIX, '')));
}
