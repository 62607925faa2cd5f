/**
 * What the classifier and model commands share: the CliFailure pattern of cli/policy.ts (usage
 * errors exit 2, failures 1, one `ceerion NAME: message` line), a pool with the classifier's
 * migrations applied, and reading a message or a model file.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import pino from 'pino';
import type pg from 'pg';
import { ModelFormatError } from '../classifier/model/container.ts';
import { LearnInputError, migrateClassifier, ModelNotFoundError, PgModelStore } from '../classifier/model/store.ts';
import type { Config } from '../core/config/schema.ts';
import { MigrationError } from '../core/db/migrate.ts';
import { createPool, redactUrl } from '../core/db/pool.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { loadOrExit } from './runtime.ts';

/** Thrown inside a command; `command()` prints it and sets the exit code. */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly code: 1 | 2,
  ) {
    super(message);
  }
}

export const usage = (message: string): CliFailure => new CliFailure(message, 2);
export const failure = (message: string): CliFailure => new CliFailure(message, 1);

export function describeError(err: unknown): string {
  // Node reports a refused connection to a name with several addresses as an AggregateError with no message.
  if (err instanceof AggregateError && !err.message) return err.errors.map((e: Error) => e.message).join('; ');
  return (err as Error).message || String((err as { code?: string }).code ?? err);
}

/** Run one command: print a failure as `ceerion NAME: …` and set the exit code (usage 2, else 1). */
export async function command(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const code = err instanceof CliFailure ? err.code : err instanceof LearnInputError ? 2 : 1;
    let message = describeError(err);
    if (err instanceof ModelFormatError) message = `not a valid model file:\n  ${err.problems.join('\n  ')}`;
    else if (err instanceof ModelNotFoundError) message = err.message;
    process.stderr.write(`ceerion ${name}: ${message}\n`);
    process.exitCode = code;
  }
}

/**
 * Commander's own errors (unknown option, missing argument) are usage errors too: exit 2, not
 * commander's 1. Subcommands created afterwards inherit this.
 */
export function usageExits(cmd: Command): Command {
  return cmd.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
}

export const configOption = (cmd: Command): Command =>
  cmd.option('-c, --config <file>', 'YAML configuration file (CEERION_* environment variables override it)');

export function loadConfig(opts: { config?: string }): Config {
  return loadOrExit(opts.config ? { config: opts.config } : {});
}

/** Warnings only, on stderr: stdout carries the command's output (maybe JSON). */
export function cliLogger(): Logger {
  return createLogger('warn', 'cli', pino.destination({ dest: 2, sync: true }));
}

/** A pool with the classifier migrations applied, closed after `fn` whatever happens. */
export async function withClassifierDb<T>(config: Config, fn: (pool: pg.Pool, store: PgModelStore) => Promise<T>): Promise<T> {
  const pool = createPool(config.database, { max: 2 });
  try {
    try {
      await migrateClassifier(pool);
    } catch (err) {
      if (err instanceof MigrationError) throw failure(err.message);
      throw failure(`cannot use PostgreSQL at ${redactUrl(config.database.url)} (schema ${config.database.schema}): ${describeError(err)}`);
    }
    return await fn(pool, new PgModelStore(pool));
  } finally {
    await pool.end().catch(() => {});
  }
}

/** The whole of stdin; a terminal there means the message was forgotten. */
export async function readStdin(): Promise<Buffer> {
  if (process.stdin.isTTY) throw usage('expected the message on stdin (e.g. `ceerion learn spam < message.eml`)');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A file argument (`-` = stdin); a missing file is a usage error, found before any other work. */
export async function readInput(file: string, what: string): Promise<Buffer> {
  const data = file === '-' ? await readStdin() : await readFile(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw usage(`${what} ${file}: no such file`);
    throw failure(`${what} ${file}: ${err.message}`);
  });
  if (data.length === 0) throw usage(`${what} ${file === '-' ? '(stdin)' : file} is empty`);
  return data;
}

/** A model VERSION argument: a positive integer. */
export function versionArg(text: string): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) === 0) throw usage(`${JSON.stringify(text)} is not a model version (a number from \`ceerion model list\`)`);
  return Number(text);
}

export function humanBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${n} B`;
}
