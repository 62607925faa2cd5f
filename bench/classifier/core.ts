/**
 * Throughput of the two pure-math classifier components on one core, on synthetic features:
 * 300 unique tokens a message (from a 20,000-token vocabulary with spammy and hammy parts), and
 * a reading-order stream of 64 steps × 8 tokens. Bayes is trained on 2,000 messages, each ESN
 * preset on 400 (fit: learn + solve + Platt).
 *
 * Rates are per CPU-second of this process (see rate()). Prints, per ESN preset: Bayes score/s and learn/s, ESN pool/s, score/s (pool + readout),
 * learn/s (pool + normal-equation update), the Cholesky solve time, and Bayes + ESN score/s
 * against the 10,000 msg/s target.
 *
 *   node --import tsx bench/classifier/core.ts [--seconds S]
 */
import os from 'node:os';
import { table } from '../../core/text-table.ts';
import { BayesFilter } from '../../classifier/bayes/bayes.ts';
import { ESN_PRESETS, ReservoirComponent } from '../../classifier/esn/esn.ts';
import { Rng } from '../../classifier/esn/rng.ts';
import type { MailClass, MessageFeatures } from '../../classifier/types.ts';

const argv = process.argv.slice(2);
const SECONDS = Number(argv[argv.indexOf('--seconds') + 1] || 0) || 1;
const TARGET = 10_000;

const rng = new Rng(2024);
const VOCAB = 20_000;
const vocab = Uint32Array.from({ length: 2 * VOCAB }, () => rng.nextU32());

/** Tokens 0..1999 lean spam, 2000..3999 lean ham, the rest are shared. */
function message(cls: MailClass): MessageFeatures {
  const ids = new Set<number>();
  while (ids.size < 300) {
    const r = rng.next();
    ids.add(r < 0.15 ? (cls === 'spam' ? 0 : 2000) + rng.int(2000) : 4000 + rng.int(VOCAB - 4000));
  }
  const list = [...ids];
  const tokens = new Uint32Array(600);
  list.forEach((t, i) => {
    tokens[2 * i] = vocab[2 * t]!;
    tokens[2 * i + 1] = vocab[2 * t + 1]!;
  });
  const sequence = new Uint32Array(64 * 8 * 2);
  for (let i = 0; i < 64 * 8; i++) {
    const t = list[rng.int(list.length)]!;
    sequence[2 * i] = vocab[2 * t]!;
    sequence[2 * i + 1] = vocab[2 * t + 1]!;
  }
  return {
    tokens,
    sequence,
    steps: Uint32Array.from({ length: 64 }, (_, i) => i * 8),
    text: '',
    subject: '',
    urls: [],
    urlDomains: [],
    auth: {},
    html: { tags: 0, hiddenTextChars: 0, textChars: 0 },
    attachmentTypes: [],
    numeric: {},
  };
}

const cls = (i: number): MailClass => (i % 2 === 0 ? 'spam' : 'ham');
const probes = Array.from({ length: 256 }, (_, i) => message(cls(i)));

/**
 * Calls fn(i) repeatedly for about SECONDS of this process's CPU time (after a warm-up) and
 * returns calls per CPU-second: on a shared machine wall-clock rates mostly measure the
 * neighbours, CPU time measures our single core's work (GC helper threads included, which only
 * makes the figure conservative).
 */
function rate(fn: (i: number) => void): number {
  for (let i = 0; i < 200; i++) fn(i);
  let n = 0;
  const c0 = process.cpuUsage();
  let cpuMs = 0;
  while (cpuMs < SECONDS * 1000) {
    for (let k = 0; k < 50; k++) fn(n++);
    const c = process.cpuUsage(c0);
    cpuMs = (c.user + c.system) / 1000;
  }
  return (n * 1000) / cpuMs;
}

const bayes = new BayesFilter();
for (let i = 0; i < 2000; i++) bayes.learn(message(cls(i)), cls(i));
const bayesScore = rate((i) => bayes.score(probes[i & 255]!));
const bayesLearn = rate((i) => {
  // learn then unlearn keeps the table the same size; the pair counts as two learns
  const m = probes[(i >> 1) & 255]!;
  bayes.learn(m, cls(i >> 1), i & 1 ? -1 : 1);
});
const acc = probes.filter((m, i) => bayes.score(m).probability > 0.5 === (cls(i) === 'spam')).length / probes.length;

const rows: Array<Array<string | number>> = [];
for (const [preset, opts] of Object.entries(ESN_PRESETS)) {
  const esn = new ReservoirComponent({ ...opts });
  const train = Array.from({ length: 400 }, (_, i) => ({ features: message(cls(i)), cls: cls(i) }));
  esn.fit(train);
  const c0 = process.cpuUsage();
  esn.readout.solve();
  const c = process.cpuUsage(c0);
  const solveMs = (c.user + c.system) / 1000;
  const out = new Float64Array(esn.esn.featureSize);
  const pool = rate((i) => esn.esn.pool(probes[i & 255]!, out));
  const score = rate((i) => esn.score(probes[i & 255]!));
  const learn = rate((i) => esn.learn(probes[(i >> 1) & 255]!, cls(i >> 1), i & 1 ? -1 : 1));
  const both = rate((i) => {
    bayes.score(probes[i & 255]!);
    esn.score(probes[i & 255]!);
  });
  const esnAcc = probes.filter((m, i) => esn.score(m).probability > 0.5 === (cls(i) === 'spam')).length / probes.length;
  rows.push([
    `${preset} N=${opts.reservoirSize} d=${opts.treeDepth}`,
    esn.esn.featureSize,
    Math.round(bayesScore),
    Math.round(bayesLearn),
    Math.round(pool),
    Math.round(score),
    Math.round(learn),
    solveMs,
    Math.round(both),
    both >= TARGET ? 'yes' : 'no',
    `${(acc * 100).toFixed(0)}% / ${(esnAcc * 100).toFixed(0)}%`,
  ]);
}

console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log(
  table(
    ['ESN preset', 'D', 'Bayes score/s', 'Bayes learn/s', 'ESN pool/s', 'ESN score/s', 'ESN learn/s', 'ESN solve ms', 'Bayes+ESN score/s', `>= ${TARGET}`, 'acc bayes/esn'],
    rows,
  ),
);
