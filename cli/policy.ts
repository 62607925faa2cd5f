/**
 * `ceerion policy`: per-domain rate limits and greylisting, stored in PostgreSQL and picked up by
 * running policy services within a second (LISTEN/NOTIFY), no reload needed.
 *   ceerion policy set DOMAIN [--client-ip 100/1h] [--sasl-user 1000/1h] [--sender N/PERIOD]
 *       [--sender-domain N/PERIOD] [--recipient N/PERIOD] [--size-bytes 50M/1d]
 *       [--greylist on|off] [--greylist-delay SECONDS] [--note TEXT]
 *   ceerion policy show DOMAIN [--json]    the effective policy and where each value comes from
 *   ceerion policy list [--json]
 *   ceerion policy delete DOMAIN
 * DOMAIN `_default` is the row every domain without its own inherits. Every value accepts
 * `inherit` (drop the override). Each command runs the migrations first. Usage errors exit 2,
 * failures (database unreachable, no such row) 1.
 */
import type { Command } from 'commander';
import type pg from 'pg';
import type { Config } from '../core/config/schema.ts';
import type { Limits, Rate } from '../core/config/policyd.ts';
import { MigrationError } from '../core/db/migrate.ts';
import { createPool, redactUrl } from '../core/db/pool.ts';
import { table } from '../core/text-table.ts';
import { configPolicy, DEFAULT_DOMAIN, explainPolicy, type Origin } from '../policyd/domain-policy/merge.ts';
import {
  deleteDomainPolicy,
  getDomainPolicy,
  listDomainPolicies,
  migratePolicyDomains,
  normalizeDomain,
  PolicyInputError,
  setDomainPolicy,
  type DomainPolicy,
  type DomainPolicyPatch,
} from '../policyd/domain-policy/repository.ts';
import { loadOrExit } from './runtime.ts';

/** Thrown inside a command; the wrapper prints it, closes the pool and sets the exit code. */
class CliFailure extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

const UNITS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86400 };
const SIZES: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** `30s`, `15m`, `1h`, `1d` or plain seconds. */
export function parseDuration(text: string, what: string): number {
  const m = /^(\d+)([smhd]?)$/i.exec(text.trim());
  if (!m) throw new CliFailure(`${what}: ${JSON.stringify(text)} is not a duration such as 30s, 15m, 1h or 1d`, 2);
  return Number(m[1]) * UNITS[m[2]!.toLowerCase()]!;
}

/** `N/PERIOD` (`50M/1d` for sizes), `0` or `off` (no limit), `inherit` (null: drop the override). */
export function parseRate(text: string, what: string, sizes = false): Rate | null {
  const value = text.trim().toLowerCase();
  if (value === 'inherit') return null;
  if (value === '0' || value === 'off') return { count: 0, periodSeconds: 3600 };
  const m = /^(\d+)([kmg]?)\/(.+)$/.exec(value);
  if (!m || (m[2] && !sizes)) {
    const example = sizes ? '50M/1d' : '100/1h';
    throw new CliFailure(`${what}: ${JSON.stringify(text)} is not a limit such as ${example} (0 or off: no limit; inherit)`, 2);
  }
  const count = Number(m[1]) * SIZES[m[2]!]!;
  const periodSeconds = parseDuration(m[3]!, what);
  if (!Number.isSafeInteger(count)) throw new CliFailure(`${what}: ${JSON.stringify(text)} is too large`, 2);
  if (periodSeconds === 0) throw new CliFailure(`${what}: the period must be longer than 0`, 2);
  return { count, periodSeconds };
}

function formatDuration(seconds: number): string {
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60]] as const) if (seconds % size === 0) return `${seconds / size}${unit}`;
  return `${seconds}s`;
}

export function formatRate(rate: Rate, sizes = false): string {
  if (rate.count === 0) return 'off';
  let count = String(rate.count);
  if (sizes) for (const [unit, size] of [['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) {
    if (rate.count % size === 0) {
      count = `${rate.count / size}${unit}`;
      break;
    }
  }
  return `${count}/${formatDuration(rate.periodSeconds)}`;
}

const LIMIT_OPTIONS: Array<[keyof Limits, string, string]> = [
  ['clientIp', '--client-ip <rate>', 'messages per client address, e.g. 100/1h'],
  ['saslUser', '--sasl-user <rate>', 'messages per SASL login, e.g. 1000/1h'],
  ['sender', '--sender <rate>', 'messages per envelope sender address'],
  ['senderDomain', '--sender-domain <rate>', 'messages per envelope sender domain'],
  ['recipient', '--recipient <rate>', 'messages to one recipient address'],
  ['sizeBytes', '--size-bytes <rate>', 'message bytes per login or client, e.g. 50M/1d'],
];

type SetOptions = { config?: string; greylist?: string; greylistDelay?: string; note?: string } & { [K in keyof Limits]?: string };

/** The row change the options ask for; an empty patch is a usage error. */
export function patchFromOptions(opts: SetOptions): DomainPolicyPatch {
  const patch: Required<Pick<DomainPolicyPatch, 'limits' | 'greylist'>> & DomainPolicyPatch = { limits: {}, greylist: {} };
  for (const [key, flag] of LIMIT_OPTIONS) {
    const text = opts[key];
    if (text !== undefined) patch.limits[key] = parseRate(text, flag.split(' ')[0]!, key === 'sizeBytes');
  }
  if (opts.greylist !== undefined) {
    const v = opts.greylist.trim().toLowerCase();
    if (!['on', 'off', 'inherit'].includes(v)) throw new CliFailure(`--greylist: expected on, off or inherit, not ${JSON.stringify(opts.greylist)}`, 2);
    patch.greylist.enabled = v === 'inherit' ? null : v === 'on';
  }
  if (opts.greylistDelay !== undefined) {
    patch.greylist.delaySeconds = opts.greylistDelay.trim().toLowerCase() === 'inherit' ? null : parseDuration(opts.greylistDelay, '--greylist-delay');
  }
  // An empty note clears it.
  if (opts.note !== undefined) patch.note = opts.note === '' ? null : opts.note;
  if (!Object.keys(patch.limits).length && !Object.keys(patch.greylist).length && patch.note === undefined) {
    throw new CliFailure('nothing to set: give at least one of --client-ip, --sasl-user, --sender, --sender-domain, --recipient, --size-bytes, --greylist, --greylist-delay, --note', 2);
  }
  return patch;
}

function describeError(err: unknown): string {
  // Node reports a refused connection to a name with several addresses as an AggregateError with no message.
  if (err instanceof AggregateError && !err.message) return err.errors.map((e: Error) => e.message).join('; ');
  return (err as Error).message || String((err as { code?: string }).code ?? err);
}

/** Run one command: print a failure as `ceerion policy: …` and set the exit code (usage 2, else 1). */
async function command(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const usage = err instanceof PolicyInputError || (err instanceof CliFailure && err.code === 2);
    const known = err instanceof CliFailure || err instanceof PolicyInputError;
    process.stderr.write(`ceerion policy: ${known ? (err as Error).message : describeError(err)}\n`);
    process.exitCode = usage ? 2 : 1;
  }
}

/** Load the config, open a pool, run the migrations, then `fn`; the pool is closed in every case. */
async function withDatabase(opts: { config?: string }, fn: (pool: pg.Pool, config: Config) => Promise<void>): Promise<void> {
  const config = loadOrExit({ ...(opts.config ? { config: opts.config } : {}) });
  const pool = createPool(config.database, { max: 2 });
  try {
    try {
      await migratePolicyDomains(pool);
    } catch (err) {
      if (err instanceof MigrationError) throw new CliFailure(err.message, 1);
      const where = `${redactUrl(config.database.url)} (schema ${config.database.schema})`;
      throw new CliFailure(`cannot use PostgreSQL at ${where}: ${describeError(err)}`, 1);
    }
    await fn(pool, config);
  } finally {
    await pool.end().catch(() => {});
  }
}

/** Parse DOMAIN before touching the database, so a typo is a usage error even with PostgreSQL down. */
function domainArg(input: string): string {
  try {
    return normalizeDomain(input);
  } catch (err) {
    throw new CliFailure((err as Error).message, 2);
  }
}

const originLabel = (origin: Origin, domain: string): string => (origin === 'domain' ? domain : origin);

async function show(pool: pg.Pool, config: Config, domain: string, json: boolean): Promise<void> {
  const base = await getDomainPolicy(pool, DEFAULT_DOMAIN);
  const row = domain === DEFAULT_DOMAIN ? undefined : await getDomainPolicy(pool, domain);
  const invalid = [base, row].filter((r): r is DomainPolicy => r?.invalid !== undefined);
  const valid = (r: DomainPolicy | undefined) => (r && !r.invalid ? r : undefined);
  const { policy, origins } = explainPolicy(configPolicy(config.policyd), valid(base), valid(row));
  const own = domain === DEFAULT_DOMAIN ? base : row;
  if (json) {
    const stored = own ? { limits: own.limits, greylist: own.greylist, note: own.note, updatedAt: own.updatedAt } : null;
    const out = { domain, row: stored, invalid: invalid.map((r) => r.invalid), policy, from: origins };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  for (const r of invalid) process.stderr.write(`warning: ${r.invalid}; policyd ignores this row\n`);
  const head = own
    ? `${domain}: row updated ${own.updatedAt.toISOString()}${own.note ? `; note: ${own.note}` : ''}`
    : `${domain}: no row of its own, the ${DEFAULT_DOMAIN} policy applies`;
  const limitRows = (Object.keys(policy.limits) as Array<keyof Limits>).map((k) => [
    k,
    formatRate(policy.limits[k], k === 'sizeBytes'),
    originLabel(origins.limits[k], domain),
  ]);
  const greylistRows = Object.entries(policy.greylist).map(([k, v]) => [
    k,
    typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v),
    originLabel(origins.greylist[k as keyof typeof origins.greylist], domain),
  ]);
  process.stdout.write(`${head}\n\n${table(['limit', 'value', 'from'], limitRows)}\n\n${table(['greylist', 'value', 'from'], greylistRows)}\n`);
}

function summary(policy: DomainPolicy): [string, string] {
  if (policy.invalid) return [`INVALID (ignored): ${policy.invalid}`, ''];
  const limits = Object.entries(policy.limits).map(([k, r]) => `${k}=${formatRate(r, k === 'sizeBytes')}`);
  const greylist = Object.entries(policy.greylist).map(([k, v]) => `${k}=${typeof v === 'boolean' ? (v ? 'on' : 'off') : v}`);
  return [limits.join(' ') || '-', greylist.join(' ') || '-'];
}

export function registerPolicyCommands(program: Command): void {
  const policy = program.command('policy').description('per-domain rate limits and greylisting (PostgreSQL, applied live)');
  const configOption = (cmd: Command) => cmd.option('-c, --config <file>', 'YAML configuration file (CEERION_* environment variables override it)');

  const set = configOption(policy.command('set').argument('<domain>', `the domain, or ${DEFAULT_DOMAIN} for every domain without a row`))
    .description('create or change a domain\'s overrides (N/PERIOD, 0 or off: no limit, inherit: drop the override)');
  for (const [, flag, help] of LIMIT_OPTIONS) set.option(flag, help);
  set
    .option('--greylist <on|off>', 'greylisting for mail to this domain')
    .option('--greylist-delay <seconds>', 'seconds (or 5m) before a greylisted triplet may pass')
    .option('--note <text>', 'a note for admins (empty: clear it)')
    .action((domainInput: string, opts: SetOptions) =>
      command(async () => {
        const domain = domainArg(domainInput);
        const patch = patchFromOptions(opts);
        await withDatabase(opts, async (pool, config) => {
          await setDomainPolicy(pool, domain, patch);
          await show(pool, config, domain, false);
        });
      }),
    );

  configOption(policy.command('show').argument('<domain>', 'the domain (or _default)'))
    .description('the effective policy and where each value comes from: config, _default or the domain')
    .option('--json', 'machine-readable output')
    .action((domainInput: string, opts: { config?: string; json?: boolean }) =>
      command(async () => {
        const domain = domainArg(domainInput);
        await withDatabase(opts, (pool, config) => show(pool, config, domain, opts.json ?? false));
      }),
    );

  configOption(policy.command('list'))
    .description('every stored row, _default first')
    .option('--json', 'machine-readable output')
    .action((opts: { config?: string; json?: boolean }) =>
      command(() =>
        withDatabase(opts, async (pool) => {
          const rows = await listDomainPolicies(pool);
          if (opts.json) {
            process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
            return;
          }
          const lines = rows.map((r) => [r.domain, ...summary(r), r.note ?? '', r.updatedAt.toISOString()]);
          process.stdout.write(`${table(['domain', 'limits', 'greylist', 'note', 'updated'], lines)}\n`);
        }),
      ),
    );

  configOption(policy.command('delete').argument('<domain>', 'the domain whose row to delete (not _default)'))
    .description('delete a domain\'s row: it inherits the _default policy again')
    .action((domainInput: string, opts: { config?: string }) =>
      command(async () => {
        const domain = domainArg(domainInput);
        if (domain === DEFAULT_DOMAIN) throw new CliFailure(`${DEFAULT_DOMAIN} cannot be deleted; change it with \`ceerion policy set ${DEFAULT_DOMAIN} …\``, 2);
        await withDatabase(opts, async (pool) => {
          if (!(await deleteDomainPolicy(pool, domain))) throw new CliFailure(`no policy row for ${domain}`, 1);
          process.stdout.write(`deleted the policy row of ${domain}: it inherits ${DEFAULT_DOMAIN} now\n`);
        });
      }),
    );
}
