/**
 * The classifier's speed and memory targets, measured on the SpamAssassin corpus (one core):
 *
 *   node --import tsx bench/classifier/pipeline.ts [--preset conservative|balanced|aggressive] [--mode stacked|weighted]
 *
 * - training: features + stacked training on 5,000 messages (target < 30 s);
 * - full pipeline: raw bytes → parse → features → every component → verdict (target ≥ 2,000/s);
 * - classifier core: features already extracted → components → verdict (target ≥ 5,000/s);
 * - memory: RSS of a process holding a model with 1M Bayes tokens (target ≤ 150 MB), measured in
 *   a child process so this process's corpus does not count.
 * Each timed loop runs twice and reports the second (the first warms up the JIT).
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { classifierSchema } from '../../core/config/classifier.ts';
import { SpamEngine } from '../../classifier/engine/engine.ts';
import { trainEngine } from '../../classifier/engine/train.ts';
import { loadSpamAssassin } from '../../classifier/eval/corpus.ts';
import { table } from '../../core/text-table.ts';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'conservative' },
    mode: { type: 'string', default: 'stacked' },
    'memory-child': { type: 'boolean', default: false },
    tokens: { type: 'string', default: '1000000' },
  },
});

if (values['memory-child']) {
  // A model with N distinct Bayes tokens, then RSS: what a milter process holds.
  const cfg = classifierSchema.parse({ preset: values.preset });
  const engine = await SpamEngine.create(cfg);
  const n = Number(values.tokens);
  const tokens = new Uint32Array(2000);
  const f = (await import('../../classifier/engine/payload.ts')).decodeFeatures;
  for (let done = 0; done < n; done += 1000) {
    for (let i = 0; i < 2000; i += 2) {
      const id = done + i / 2; // 1,000 new distinct tokens per message
      tokens[i] = Math.imul(id, 0x9e3779b1) >>> 0;
      tokens[i + 1] = id >>> 0;
    }
    const feats = { tokens, sequence: new Uint32Array(0), steps: new Uint32Array(0), text: '', subject: '', urls: [], urlDomains: [], auth: {}, html: { tags: 0, hiddenTextChars: 0, textChars: 0 }, attachmentTypes: [], numeric: {} };
    engine.parts.bayes?.learn(feats, done % 2000 === 0 ? 'spam' : 'ham');
  }
  global.gc?.();
  const m = process.memoryUsage();
  process.stdout.write(JSON.stringify({ tokens: engine.parts.bayes?.table.size ?? 0, rssMB: m.rss / 2 ** 20, heapMB: m.heapUsed / 2 ** 20, arrayBuffersMB: m.arrayBuffers / 2 ** 20 }));
  process.exit(0);
}

const cfg = classifierSchema.parse({ preset: values.preset, mode: values.mode });
const corpus = await loadSpamAssassin();
const rows: string[][] = [];
const rate = (n: number, ms: number) => `${Math.round((n / ms) * 1000).toLocaleString('en')}/s`;

// Training on 5,000 messages, features included.
const trainSet = corpus.slice(0, 5000);
const t0 = performance.now();
const extractor = await SpamEngine.create(cfg);
const samples = trainSet.map((m) => ({ features: extractor.features(m.raw), cls: m.label }));
const t1 = performance.now();
const engine = await trainEngine(cfg, samples);
const t2 = performance.now();
rows.push(['training, 5,000 messages', `${((t2 - t0) / 1000).toFixed(1)} s`, `features ${((t1 - t0) / 1000).toFixed(1)} s + fit ${((t2 - t1) / 1000).toFixed(1)} s`, '< 30 s']);

const timed = (fn: () => void) => {
  fn();
  const s = performance.now();
  fn();
  return performance.now() - s;
};
let sink = 0;
const full = timed(() => {
  for (const m of corpus) sink += engine.classify(m.raw).score;
});
const bytes = corpus.reduce((a, m) => a + m.raw.length, 0);
rows.push(['full pipeline (parse + features + classify)', rate(corpus.length, full), `${((bytes / full) * 1000 / 2 ** 20).toFixed(1)} MB/s`, '≥ 2,000/s']);
const feats = corpus.map((m) => engine.features(m.raw));
const core = timed(() => {
  for (const f of feats) sink += engine.classifyFeatures(f).score;
});
rows.push(['classifier core (features given)', rate(corpus.length, core), '', '≥ 5,000/s']);
const parseOnly = timed(() => {
  for (const m of corpus) sink += engine.features(m.raw).tokens.length;
});
rows.push(['parse + features only', rate(corpus.length, parseOnly), '', '']);
for (const c of engine.components()) {
  const ms = timed(() => {
    for (const f of feats) sink += c.score(f).probability;
  });
  rows.push([`  component ${c.name}`, rate(corpus.length, ms), '', '']);
}

const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', new URL(import.meta.url).pathname, '--memory-child', '--preset', values.preset!, '--tokens', values.tokens!], { encoding: 'utf8' });
if (child.status === 0) {
  const mem = JSON.parse(child.stdout);
  rows.push([`memory, model with ${Number(mem.tokens).toLocaleString('en')} tokens`, `${mem.rssMB.toFixed(0)} MB RSS`, `heap ${mem.heapMB.toFixed(0)} MB, buffers ${mem.arrayBuffersMB.toFixed(0)} MB`, '≤ 150 MB']);
} else rows.push(['memory', 'failed', child.stderr.slice(0, 200), '']);

console.log(`preset ${values.preset}, mode ${engine.combiner.mode}, ${corpus.length} messages (${(bytes / 2 ** 20).toFixed(1)} MB), node ${process.version}`);
console.log(table(['measure', 'result', 'detail', 'target'], rows));
if (sink === 42) console.log('');
