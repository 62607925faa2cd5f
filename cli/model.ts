/**
 * `ceerion model`: the classifier's stored versions.
 *   ceerion model list [--json]
 *   ceerion model export [VERSION] --out FILE     default: the active version
 *   ceerion model import FILE [--activate] [--note TEXT]
 *   ceerion model verify FILE|VERSION             container integrity, then that the sections load
 *   ceerion model activate VERSION                running milters switch within seconds
 *   ceerion model compact [--note TEXT] [--no-prune]
 *   ceerion model starter [--limit N]             train one from the SpamAssassin corpus if none is stored
 * compact saves the active model plus every learn after it as a new active version and deletes the
 * events it now includes, so a starting milter replays nothing. It deletes per-user events too
 * (the runtime does not apply those yet; see classifier/engine/runtime.ts).
 */
import { stat, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import type { Command } from 'commander';
import { engineFromSections } from '../classifier/engine/engine.ts';
import { ClassifierRuntime } from '../classifier/engine/runtime.ts';
import { decodeModel, verifyModel } from '../classifier/model/container.ts';
import type { ModelReport } from '../classifier/model/types.ts';
import type { Config } from '../core/config/schema.ts';
import { table } from '../core/text-table.ts';
import { ensureStarterModel } from '../stack/starter-model.ts';
import {
  cliLogger,
  command,
  configOption,
  describeError,
  failure,
  humanBytes,
  loadConfig,
  readInput,
  usage,
  usageExits,
  versionArg,
  withClassifierDb,
} from './classifier-support.ts';

type Opts = { config?: string };

async function list(opts: Opts & { json?: boolean }): Promise<void> {
  const config = loadConfig(opts);
  const versions = await withClassifierDb(config, (_pool, store) => store.listVersions());
  if (opts.json) {
    const rows = versions.map((v) => ({ ...v, lastEventId: String(v.lastEventId) }));
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (versions.length === 0) {
    process.stdout.write('no model versions stored yet (ceerion train)\n');
    return;
  }
  const rows = versions.map((v) => [
    `${v.version}${v.active ? ' *' : ''}`,
    v.createdAt.toISOString().replace(/\.\d+Z$/, 'Z'),
    humanBytes(v.bytes),
    v.sections.map((s) => s.name).join(','),
    String(v.lastEventId),
    v.sha256.slice(0, 12),
    v.note ?? '',
  ]);
  process.stdout.write(`${table(['version', 'created', 'size', 'sections', 'last event', 'sha256', 'note'], rows)}\n* active\n`);
}

async function exportModel(versionText: string | undefined, opts: Opts & { out?: string }): Promise<void> {
  const version = versionText === undefined ? undefined : versionArg(versionText);
  if (!opts.out) throw usage('--out FILE is required');
  const config = loadConfig(opts);
  const blob = await withClassifierDb(config, (_pool, store) => store.exportModel(version));
  await writeFile(opts.out, blob);
  const sha = createHash('sha256').update(blob).digest('hex');
  process.stdout.write(`exported ${version === undefined ? 'the active version' : `version ${version}`} to ${opts.out} (${humanBytes(blob.length)}, sha256 ${sha})\n`);
}

async function importModel(file: string, opts: Opts & { activate?: boolean; note?: string }): Promise<void> {
  const blob = await readInput(file, 'model');
  const config = loadConfig(opts);
  // Check before connecting: a damaged file is reported the same with PostgreSQL down.
  const report = verifyModel(blob);
  if (!report.ok) throw failure(`${file} is not a valid model file:\n  ${report.problems.join('\n  ')}`);
  await loadable(config, blob, file);
  const version = await withClassifierDb(config, (_pool, store) =>
    store.importModel(blob, { activate: opts.activate ?? false, note: opts.note ?? `imported from ${file}` }),
  );
  process.stdout.write(`imported ${file} as version ${version}${opts.activate ? ', active' : ' (ceerion model activate ' + version + ' to use it)'}\n`);
}

/** The sections must also make an engine under this config (a container can be sound and still foreign). */
async function loadable(config: Config, blob: Buffer, what: string): Promise<void> {
  try {
    await engineFromSections(config.classifier, decodeModel(blob).sections);
  } catch (err) {
    throw failure(`${what}: the container is intact but the classifier cannot load it: ${describeError(err)}`);
  }
}

function printReport(what: string, r: ModelReport): void {
  const lines = [`${what}: ${r.ok ? 'ok' : 'DAMAGED'} (${humanBytes(r.bytes)}${r.formatVersion !== undefined ? `, format ${r.formatVersion}` : ''})`];
  if (r.sections.length) {
    lines.push(table(['section', 'bytes', 'sha256'], r.sections.map((s) => [s.name, String(s.bytes), s.sha256])));
  }
  for (const p of r.problems) lines.push(`problem: ${p}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function verify(target: string, opts: Opts): Promise<void> {
  const config = loadConfig(opts);
  // A file of that name wins over a version number: `verify 3` in a directory holding ./3 means the file.
  const isFile = target === '-' || (await stat(target).catch(() => undefined)) !== undefined;
  let blob: Buffer;
  let what: string;
  if (isFile) {
    blob = await readInput(target, 'model');
    what = target;
  } else {
    if (!/^\d+$/.test(target)) throw usage(`${target}: no such file, and not a model version`);
    const version = versionArg(target);
    blob = await withClassifierDb(config, (_pool, store) => store.exportModel(version));
    what = `version ${version}`;
  }
  const report = verifyModel(blob);
  printReport(what, report);
  if (!report.ok) throw failure(`${what} is damaged (${report.problems.length} problem${report.problems.length === 1 ? '' : 's'})`);
  await loadable(config, blob, what);
  process.stdout.write('the classifier loads it under this configuration\n');
}

async function activate(versionText: string, opts: Opts): Promise<void> {
  const version = versionArg(versionText);
  const config = loadConfig(opts);
  await withClassifierDb(config, (_pool, store) => store.activate(version));
  process.stdout.write(`version ${version} is active: running milters load it within seconds\n`);
}

async function compact(opts: Opts & { note?: string; prune: boolean }): Promise<void> {
  const config = loadConfig(opts);
  await withClassifierDb(config, async (pool, store) => {
    const rt = await ClassifierRuntime.load({ cfg: config, pool, log: cliLogger() });
    const applied = rt.stats.applied + rt.stats.otherScopes;
    if (rt.modelVersion === null && applied === 0) throw failure('nothing to compact: no model and no learns stored yet');
    if (applied === 0) {
      process.stdout.write(`nothing to compact: version ${rt.modelVersion} already includes every learn\n`);
      return;
    }
    const note = opts.note ?? `compacted: version ${rt.modelVersion ?? 'none'} + ${rt.stats.applied} learns`;
    const snap = await rt.snapshot(note);
    const pruned = opts.prune ? await store.pruneEvents(snap.lastEventId + 1n) : 0;
    process.stdout.write(
      `saved version ${snap.version} (active, ${humanBytes(snap.bytes)}): version ${rt.modelVersion ?? 'none'} + ${rt.stats.applied} learns, through event ${snap.lastEventId}` +
        (rt.stats.otherScopes ? `; ${rt.stats.otherScopes} per-user learns not included` : '') +
        (opts.prune ? `; deleted ${pruned} events it includes\n` : '; events kept (--no-prune)\n'),
    );
  });
}

/**
 * The starter model (stack/starter-model.ts): what `ceerion start` runs in a child process after
 * readiness, so the ~15 s of training never blocks the supervisor's health checks and signals.
 * The last stdout line is the outcome: present, trained or unavailable.
 */
async function starter(opts: Opts & { limit?: string }): Promise<void> {
  const config = loadConfig(opts);
  const limit = opts.limit === undefined ? undefined : Number(opts.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw usage(`--limit must be a whole number > 0, got ${opts.limit}`);
  const outcome = await ensureStarterModel(config, cliLogger(), limit ? { limitPerGroup: limit } : {});
  process.stdout.write(`starter model: ${outcome}\n`);
}

export function registerModelCommands(program: Command): void {
  // Set before the subcommands are made, so they inherit it.
  const model = usageExits(program.command('model')).description('classifier model versions in PostgreSQL: list, export, import, verify, activate, compact, starter');

  configOption(model.command('list'))
    .description('stored versions, newest first; * marks the active one')
    .option('--json', 'machine-readable output')
    .action((opts: Opts & { json?: boolean }) => command('model list', () => list(opts)));

  configOption(model.command('export'))
    .description('write a stored version (default: the active one) to a file')
    .argument('[version]', 'the version to export')
    .option('--out <file>', 'where to write the model container')
    .action((version: string | undefined, opts: Opts & { out?: string }) => command('model export', () => exportModel(version, opts)));

  configOption(model.command('import'))
    .description('store a model file (verified first) as a new version')
    .argument('<file>', 'a model container (ceerion model export, ceerion train --out)')
    .option('--activate', 'make it the active version')
    .option('--note <text>', 'a note stored with the version')
    .action((file: string, opts: Opts & { activate?: boolean; note?: string }) => command('model import', () => importModel(file, opts)));

  configOption(model.command('verify'))
    .description("check a model file's or a stored version's integrity (every problem listed) and that it loads")
    .argument('<target>', 'a model file, or a stored version number')
    .action((target: string, opts: Opts) => command('model verify', () => verify(target, opts)));

  configOption(model.command('activate'))
    .description('make a stored version the active one')
    .argument('<version>', 'the version (ceerion model list)')
    .action((version: string, opts: Opts) => command('model activate', () => activate(version, opts)));

  configOption(model.command('compact'))
    .description('save the active model plus the learns after it as a new active version, then delete those learn events')
    .option('--note <text>', 'a note stored with the version')
    .option('--no-prune', 'keep the learn events')
    .action((opts: Opts & { note?: string; prune: boolean }) => command('model compact', () => compact(opts)));

  configOption(model.command('starter'))
    .description('unless a model is stored: train one from the SpamAssassin public corpus (dev dependency) and activate it')
    .option('--limit <n>', 'only the first N messages of each corpus group (a quick trial model)')
    .action((opts: Opts & { limit?: string }) => command('model starter', () => starter(opts)));
}
