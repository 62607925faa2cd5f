/**
 * `ceerion search` and `ceerion token`: the indexer's search from a shell, and the per-account API
 * tokens that GET /search and the events WebSocket take.
 *   ceerion search USER [QUERY...] [--limit N] [--cursor C] [--json]
 *       same language and results as GET /search (lmtp-indexer/search/query.ts); words are joined
 *       with spaces, so quoting the whole query is optional. Put `--` before a query whose first
 *       term is a negation (`ceerion search bob@x -- -newsletter`), or the shell word is an option.
 *   ceerion token create USER [--label TEXT]   prints a new token, once; only its hash is stored
 *   ceerion token revoke USER                  revokes every live token of USER
 * Each command runs the index migrations first. Usage errors exit 2, failures 1.
 */
import type { Command } from 'commander';
import type pg from 'pg';
import { accountExists, normaliseAddress } from '../accounts/repository.ts';
import type { Config } from '../core/config/schema.ts';
import { MigrationError } from '../core/db/migrate.ts';
import { createPool, redactUrl } from '../core/db/pool.ts';
import { table } from '../core/text-table.ts';
import { createToken, revokeTokens } from '../lmtp-indexer/auth/tokens.ts';
import { migrateIndex } from '../lmtp-indexer/index/schema.ts';
import { QueryError } from '../lmtp-indexer/search/query.ts';
import { SearchInputError, searchMessages, type SearchPage } from '../lmtp-indexer/search/service.ts';
import { loadOrExit } from './runtime.ts';

/** The CLI may page further than the HTTP API's maxPageSize: it is run by an admin, not a client. */
export const CLI_MAX_PAGE = 1_000;

/** Thrown inside a command; the wrapper prints it and sets the exit code. */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

export interface SearchCliOptions {
  limit?: string | undefined;
  cursor?: string | undefined;
  json?: boolean | undefined;
}

const ADDRESS = /^[^\s@]+@[^\s@]+$/;

/** USER must look like an address: a typo must not silently search an empty account. */
export function userArg(input: string): string {
  const user = normaliseAddress(input);
  if (!ADDRESS.test(user)) throw new CliFailure(`${JSON.stringify(input)} is not an address such as user@example.com`, 2);
  return user;
}

function limitOption(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new CliFailure(`--limit: expected a whole number from 1 to ${CLI_MAX_PAGE}, not ${JSON.stringify(text)}`, 2);
  return Number(text);
}

const shorten = (text: string, max: number): string => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** What `ceerion search` prints: a table (or JSON) and, when there is more, how to get it. */
export function formatPage(page: SearchPage, json: boolean): { stdout: string; stderr: string } {
  if (json) return { stdout: `${JSON.stringify(page, null, 2)}\n`, stderr: '' };
  const rows = page.hits.map((h) => [
    h.date.slice(0, 16).replace('T', ' '),
    shorten(h.from.name ? `${h.from.name} <${h.from.address ?? ''}>` : (h.from.address ?? ''), 40),
    shorten(h.subject ?? '(no subject)', 60),
    h.mailbox ?? '-',
    [h.flags.includes('\\Seen') ? '' : 'unread', h.flags.includes('\\Flagged') ? 'flagged' : '', h.hasAttachment ? 'attachment' : ''].filter(Boolean).join(' '),
    h.score === null ? '' : h.score.toFixed(4),
    h.id,
  ]);
  const stdout = page.hits.length ? `${table(['date (UTC)', 'from', 'subject', 'mailbox', 'marks', 'score', 'id'], rows)}\n` : 'no messages match\n';
  const stderr = page.nextCursor ? `more results: add --cursor ${page.nextCursor}\n` : '';
  return { stdout, stderr };
}

/** The search a command runs, against an open, migrated pool. */
export async function runSearch(pool: pg.Pool, config: Config, user: string, query: string, opts: SearchCliOptions): Promise<{ stdout: string; stderr: string }> {
  try {
    const page = await searchMessages(
      { pool, language: config.lmtp.index.language, maxPageSize: CLI_MAX_PAGE },
      { account: user, query, limit: limitOption(opts.limit), cursor: opts.cursor },
    );
    return formatPage(page, opts.json ?? false);
  } catch (err) {
    if (err instanceof QueryError || err instanceof SearchInputError) throw new CliFailure(err.message, 2);
    throw err;
  }
}

/** `token create`: the token on stdout (for scripts); a warning on stderr for an unknown account. */
export async function runTokenCreate(pool: pg.Pool, user: string, label: string | undefined): Promise<{ stdout: string; stderr: string }> {
  // Tokens may be made for mail that is indexed without a local account table; warn, don't refuse.
  const known = await accountExists(pool, user).catch(() => false);
  const token = await createToken(pool, user, label);
  const stderr = `${known ? '' : `warning: ${user} is not an enabled account in the accounts table\n`}token for ${user} (shown once; send it as Authorization: Bearer <token>):\n`;
  return { stdout: `${token}\n`, stderr };
}

export async function runTokenRevoke(pool: pg.Pool, user: string): Promise<{ stdout: string; stderr: string }> {
  const n = await revokeTokens(pool, user);
  return { stdout: `revoked ${n} token${n === 1 ? '' : 's'} of ${user}\n`, stderr: '' };
}

function describeError(err: unknown): string {
  // Node reports a refused connection to a name with several addresses as an AggregateError with no message.
  if (err instanceof AggregateError && !err.message) return err.errors.map((e: Error) => e.message).join('; ');
  return (err as Error).message || String((err as { code?: string }).code ?? err);
}

/** Load the config, open a pool, migrate, run `fn`, print its output; failures set the exit code. */
async function command(name: string, opts: { config?: string }, fn: (pool: pg.Pool, config: Config) => Promise<{ stdout: string; stderr: string }>): Promise<void> {
  try {
    const config = loadOrExit({ ...(opts.config ? { config: opts.config } : {}) });
    const pool = createPool(config.database, { max: 2 });
    try {
      try {
        await migrateIndex(pool);
      } catch (err) {
        if (err instanceof MigrationError) throw new CliFailure(err.message, 1);
        throw new CliFailure(`cannot use PostgreSQL at ${redactUrl(config.database.url)} (schema ${config.database.schema}): ${describeError(err)}`, 1);
      }
      const out = await fn(pool, config);
      process.stderr.write(out.stderr);
      process.stdout.write(out.stdout);
    } finally {
      await pool.end().catch(() => {});
    }
  } catch (err) {
    process.stderr.write(`ceerion ${name}: ${err instanceof CliFailure ? err.message : describeError(err)}\n`);
    process.exitCode = err instanceof CliFailure ? err.code : 1;
  }
}

export function registerSearchCommands(program: Command): void {
  const configOption = (cmd: Command) => cmd.option('-c, --config <file>', 'YAML configuration file (CEERION_* environment variables override it)');

  configOption(program.command('search').argument('<user>', 'the account, e.g. alice@example.com').argument('[query...]', 'the query, e.g. from:bob has:attachment invoice'))
    .description('search one account\'s indexed mail (the GET /search language: words, "phrases", from:, to:, subject:, has:attachment, in:, is:, before:, after:, -negation)')
    .option('--limit <n>', `results per page (default 20, at most ${CLI_MAX_PAGE})`)
    .option('--cursor <cursor>', 'the next page, as printed after a previous page')
    .option('--json', 'machine-readable output')
    .action((userInput: string, words: string[], opts: SearchCliOptions & { config?: string }) =>
      command('search', opts, async (pool, config) => {
        const user = userArg(userInput);
        return runSearch(pool, config, user, words.join(' '), opts);
      }),
    );

  const token = program.command('token').description('per-account API tokens for GET /search and the events WebSocket');
  configOption(token.command('create').argument('<user>', 'the account the token searches as'))
    .description('create a token and print it (only its SHA-256 is stored: it cannot be shown again)')
    .option('--label <text>', 'a note on what the token is for')
    .action((userInput: string, opts: { config?: string; label?: string }) =>
      command('token create', opts, async (pool) => runTokenCreate(pool, userArg(userInput), opts.label)),
    );
  configOption(token.command('revoke').argument('<user>', 'the account'))
    .description('revoke every live token of an account')
    .action((userInput: string, opts: { config?: string }) => command('token revoke', opts, async (pool) => runTokenRevoke(pool, userArg(userInput))));
}
