/**
 * The classifier from the command line:
 *   ceerion learn spam|ham [--user U]          a message on stdin; learned | relearned | duplicate
 *   ceerion train --spam PATH... --ham PATH... [--out FILE] [--no-activate] [--note TEXT] [--replay]
 *   ceerion classify FILE|- [--json] [--model FILE]
 *   ceerion eval [--folds 5] [--seed 1] [--out bench/results] [--no-bogofilter] [--limit N]
 * PATH is a directory of message files, a maildir or an mbox. Every command that uses PostgreSQL
 * runs the classifier migrations first. Usage errors exit 2, failures 1. `ceerion model …` is in
 * cli/model.ts.
 */
import { createHash } from 'node:crypto';
import { readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { engineFromSections, engineSections, SpamEngine } from '../classifier/engine/engine.ts';
import { encodeFeatures } from '../classifier/engine/payload.ts';
import { ClassifierRuntime } from '../classifier/engine/runtime.ts';
import { trainEngine, type Labelled } from '../classifier/engine/train.ts';
import { detectMailSource, readMailSource, readMbox } from '../classifier/eval/corpus.ts';
import { StoreLearner } from '../classifier/learn/learner.ts';
import { decodeModel, encodeModel, verifyModel } from '../classifier/model/container.ts';
import type { MailClass } from '../classifier/types.ts';
import {
  cliLogger,
  command,
  configOption,
  failure,
  humanBytes,
  loadConfig,
  readInput,
  readStdin,
  usage,
  usageExits,
  withClassifierDb,
} from './classifier-support.ts';
import { printClassification } from './classify-output.ts';
import { formatSeconds, Progress } from './progress.ts';

/** Messages in a source without reading them (an mbox is scanned): the progress bar's total. */
async function countMessages(p: string): Promise<number> {
  const kind = await detectMailSource(p);
  let n = 0;
  if (kind === 'mbox') {
    for await (const _ of readMbox(p)) n++;
    return n;
  }
  // Same selection as readMailSource: cur/ and new/ of a maildir, no dot files, files only.
  for (const dir of kind === 'maildir' ? [path.join(p, 'cur'), path.join(p, 'new')] : [p]) {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.name.startsWith('.')) continue;
      if (e.isFile() || (e.isSymbolicLink() && (await stat(path.join(dir, e.name)).catch(() => undefined))?.isFile())) n++;
    }
  }
  return n;
}

async function checkPaths(paths: string[] | undefined, flag: string): Promise<string[]> {
  if (!paths?.length) throw usage(`${flag} PATH is required (a directory of messages, a maildir or an mbox)`);
  for (const p of paths) if (!(await stat(p).catch(() => undefined))) throw usage(`${flag} ${p}: no such file or directory`);
  return paths;
}

interface TrainOptions {
  config?: string;
  spam?: string[];
  ham?: string[];
  out?: string;
  activate: boolean;
  note?: string;
  replay?: boolean;
}

async function train(opts: TrainOptions): Promise<void> {
  const sources: Array<[MailClass, string[]]> = [
    ['spam', await checkPaths(opts.spam, '--spam')],
    ['ham', await checkPaths(opts.ham, '--ham')],
  ];
  if (opts.out && opts.replay) throw usage('--replay applies to a model saved in PostgreSQL, not to --out');
  const config = loadConfig(opts);
  const cfg = config.classifier;
  // Learns recorded from here on apply on top of the new model; older ones are taken to be in the
  // corpus (users' Junk and Inbox folders), so they are not counted twice. --replay: all of them.
  const since = opts.out || opts.replay ? 0n : await withClassifierDb(config, (_pool, store) => store.lastEventId());
  const started = performance.now();
  const engine = await SpamEngine.create(cfg);
  let total = 0;
  for (const [, paths] of sources) for (const p of paths) total += await countMessages(p);
  if (total === 0) throw failure('no messages found in the given paths');
  const samples: Labelled[] = [];
  const counts = { spam: 0, ham: 0 };
  const reading = new Progress('reading messages', total);
  for (const [cls, paths] of sources) {
    for (const p of paths) {
      for await (const raw of readMailSource(p)) {
        samples.push({ features: engine.features(raw), cls });
        counts[cls]++;
        reading.update(samples.length);
      }
    }
  }
  reading.finish(samples.length);
  for (const cls of ['spam', 'ham'] as const) if (counts[cls] === 0) throw failure(`no ${cls} messages found in ${(cls === 'spam' ? opts.spam : opts.ham)!.join(', ')}`);
  const featureSecs = reading.seconds;

  let stage: Progress | undefined;
  let stageName = '';
  const model = await trainEngine(cfg, samples, {
    onProgress: (name, done, n) => {
      if (name !== stageName) {
        // A stage ends when the next begins; trainEngine does not report every last step.
        stage?.complete();
        stageName = name;
        stage = new Progress(name, n, name === 'reservoir states' ? 'msgs' : 'steps');
      }
      stage!.update(done);
    },
  });
  stage?.complete();
  const trainSecs = (performance.now() - started) / 1000 - featureSecs;
  const blob = encodeModel(engineSections(model, { source: 'train', spam: counts.spam, ham: counts.ham, ...(opts.note ? { note: opts.note } : {}) }));
  const sha = createHash('sha256').update(blob).digest('hex');
  const out: string[] = [
    `trained on ${samples.length} messages (${counts.spam} spam, ${counts.ham} ham) in ${formatSeconds(featureSecs + trainSecs)}: ` +
      `reading ${formatSeconds(featureSecs)} (${Math.round(samples.length / Math.max(featureSecs, 1e-3))} msgs/s), training ${formatSeconds(trainSecs)}; mode ${model.combiner.mode}`,
  ];
  if (opts.out) {
    await writeFile(opts.out, blob);
    out.push(`wrote ${opts.out} (${humanBytes(blob.length)}, sha256 ${sha})`);
  } else {
    await withClassifierDb(config, async (_pool, store) => {
      const version = await store.saveModel(blob, { lastEventId: since, note: opts.note ?? null, activate: opts.activate });
      const active = (await store.listVersions()).find((v) => v.version === version)?.active ?? false;
      out.push(
        `saved model version ${version} (${humanBytes(blob.length)}, sha256 ${sha}), ${active ? 'active: running milters load it within seconds' : 'not active (ceerion model activate ' + version + ')'}`,
      );
    });
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

async function learn(clsArg: string, opts: { config?: string; user?: string }): Promise<void> {
  if (clsArg !== 'spam' && clsArg !== 'ham') throw usage(`the class is spam or ham, not ${JSON.stringify(clsArg)}`);
  if (opts.user !== undefined && !/^[^\s\p{Cc}]{1,320}$/u.test(opts.user)) throw usage('--user must be 1-320 characters without spaces or control characters');
  const raw = await readStdin();
  if (raw.length === 0) throw usage('the message on stdin is empty');
  const config = loadConfig(opts);
  // Features depend on the config, not on a model: an untrained engine computes the same payload.
  const engine = await SpamEngine.create(config.classifier);
  await withClassifierDb(config, async (_pool, store) => {
    const learner = new StoreLearner({ store, payload: (m) => encodeFeatures(engine.features(m)) });
    const r = await learner.learn(raw, clsArg, opts.user !== undefined ? { user: opts.user } : {});
    const scope = opts.user !== undefined ? ` for user ${opts.user}` : '';
    process.stdout.write(`${r.status} ${r.contentHash}${r.eventId ? ` (event ${r.eventId}${scope})` : ''}\n`);
  });
}

async function classify(file: string, opts: { config?: string; json?: boolean; model?: string }): Promise<void> {
  const raw = await readInput(file, 'message');
  const config = loadConfig(opts);
  let engine: SpamEngine;
  let source: Record<string, unknown>;
  if (opts.model) {
    const blob = await readInput(opts.model, 'model');
    const report = verifyModel(blob);
    if (!report.ok) throw failure(`${opts.model} is not a valid model file:\n  ${report.problems.join('\n  ')}`);
    engine = await engineFromSections(config.classifier, decodeModel(blob).sections);
    source = { file: opts.model };
  } else {
    const rt = await withClassifierDb(config, (pool) => ClassifierRuntime.load({ cfg: config, pool, log: cliLogger() }));
    if (rt.modelVersion === null && rt.lastEventId === 0n) throw failure('no model in PostgreSQL yet: train one (ceerion train) or pass --model FILE');
    engine = rt.current;
    source = { version: rt.modelVersion, lastEventId: String(rt.lastEventId), learnsApplied: rt.stats.applied };
  }
  // Debug tokens, so the top tokens read as words instead of hashes.
  const started = performance.now();
  const result = engine.classifyFeatures(engine.features(raw, true), started);
  printClassification(result, { engine, source, json: opts.json ?? false });
}

interface EvalOptions {
  config?: string;
  folds: string;
  seed: string;
  out: string;
  bogofilter: boolean;
  limit?: string;
}

const intArg = (text: string, flag: string, min: number): number => {
  if (!/^\d+$/.test(text) || Number(text) < min) throw usage(`${flag}: ${JSON.stringify(text)} is not a whole number ≥ ${min}`);
  return Number(text);
};

async function evaluate(opts: EvalOptions): Promise<void> {
  const folds = intArg(opts.folds, '--folds', 2);
  const seed = intArg(opts.seed, '--seed', 0);
  const limit = opts.limit === undefined ? undefined : intArg(opts.limit, '--limit', 1);
  const config = loadConfig(opts);
  // Loaded here: every other command (the milter included) starts without the evaluation code.
  const [{ bogofilterVersion }, { loadSpamAssassin }, { engineModel }, { renderTable, writeReport }, { runEvaluation }] = await Promise.all([
    import('../classifier/eval/bogofilter.ts'),
    import('../classifier/eval/corpus.ts'),
    import('../classifier/eval/engine-model.ts'),
    import('../classifier/eval/report.ts'),
    import('../classifier/eval/runner.ts'),
  ]);
  if (opts.bogofilter && !(await bogofilterVersion())) throw failure('bogofilter not found: install it (apt-get install bogofilter) or pass --no-bogofilter');
  const t0 = performance.now();
  const corpus = await loadSpamAssassin(limit !== undefined ? { limitPerGroup: limit } : {});
  process.stderr.write(`corpus: ${corpus.length} messages loaded in ${formatSeconds((performance.now() - t0) / 1000)}\n`);
  const started = new Map<string, number>();
  const result = await runEvaluation({
    corpus,
    folds,
    seed,
    includeBogofilter: opts.bogofilter,
    models: { '': engineModel({ cfg: config.classifier }) },
    onProgress: (e) => {
      const name = e.model || 'ceerion';
      const head = `${name} fold ${e.fold + 1}/${e.folds}`;
      if (e.stage === 'train') {
        if (!started.has(name)) started.set(name, performance.now());
        process.stderr.write(`${head}: training on ${e.total} messages\n`);
      } else if (e.stage === 'score') process.stderr.write(`${head}: scored ${e.done}/${e.total}\n`);
      else {
        const since = started.get(name);
        const eta = since !== undefined ? `, ETA ${formatSeconds((((performance.now() - since) / (e.fold + 1)) * (e.folds - e.fold - 1)) / 1000)}` : '';
        process.stderr.write(`${head}: done in ${formatSeconds((e.ms ?? 0) / 1000)}${eta}\n`);
      }
    },
  });
  const c = result.corpus;
  const written = await writeReport(result, opts.out, { title: 'CEERION classifier evaluation' });
  process.stdout.write(
    `${c.n} messages (${c.spam} spam, ${c.ham} ham, ${c.hardHam} hard ham); ${result.folds} folds, seed ${result.seed}` +
      `${result.bogofilterVersion ? `; baseline ${result.bogofilterVersion}` : ''}; ${formatSeconds((performance.now() - t0) / 1000)}\n\n` +
      `${renderTable(result)}\n\nwrote ${written.markdown} and ${written.svg}\n`,
  );
}

export function registerClassifierCommands(program: Command): void {
  usageExits(configOption(program.command('learn')))
    .description('learn one message (on stdin) as spam or ham; every milter applies it within seconds')
    .argument('<class>', 'spam or ham')
    .option('--user <name>', "learn for this user's model only (scope user:NAME)")
    .action((cls: string, opts: { config?: string; user?: string }) => command('learn', () => learn(cls, opts)));

  usageExits(configOption(program.command('train')))
    .description('build a model from labelled corpora and save it in PostgreSQL as the active version (or to --out)')
    .option('--spam <path...>', 'spam: directories of message files, maildirs or mboxes')
    .option('--ham <path...>', 'ham: directories of message files, maildirs or mboxes')
    .option('--out <file>', 'write the model container to FILE instead of PostgreSQL')
    .option('--no-activate', 'save without making it the active version')
    .option('--note <text>', 'a note stored with the version')
    .option('--replay', 'apply every retained learn on top (default: only learns recorded after training started)')
    .action((opts: TrainOptions) => command('train', () => train(opts)));

  usageExits(configOption(program.command('classify')))
    .description("score one message with the active model (plus the learns after it) and show each component's part")
    .argument('<file>', 'the message file, or - for stdin')
    .option('--json', 'machine-readable output')
    .option('--model <file>', 'use this model file instead of PostgreSQL')
    .action((file: string, opts: { config?: string; json?: boolean; model?: string }) => command('classify', () => classify(file, opts)));

  usageExits(configOption(program.command('eval')))
    .description('cross-validate the classifier (and bogofilter) on the SpamAssassin corpus; writes eval.md and roc.svg')
    .option('--folds <k>', 'folds', '5')
    .option('--seed <n>', 'fold assignment seed', '1')
    .option('--out <dir>', 'where eval.md and roc.svg go', 'bench/results')
    .option('--no-bogofilter', 'leave the bogofilter baseline out')
    .option('--limit <n>', 'only the first N messages of each corpus group (quick runs)')
    .action((opts: EvalOptions) => command('eval', () => evaluate(opts)));
}
