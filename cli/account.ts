/**
 * `ceerion account`: mail accounts and aliases in the tables Dovecot (passdb/userdb) and Postfix
 * (the pgsql: maps of accounts/postfix/) read.
 *   ceerion account add ADDRESS [--quota 2G] [--scheme ARGON2ID|BLF-CRYPT] [--password-stdin | --generate]
 *   ceerion account passwd ADDRESS [--scheme …] [--password-stdin | --generate]
 *   ceerion account list [--json]
 *   ceerion account remove ADDRESS          also its aliases and what the LMTP indexer holds for it
 *   ceerion account enable|disable ADDRESS
 *   ceerion account quota set ADDRESS SIZE|none
 *   ceerion account alias add|remove SOURCE DESTINATION     SOURCE may be @domain (catch-all)
 *   ceerion account alias list [--domain D] [--json]
 *   ceerion account postfix-maps [--dir /etc/postfix/ceerion]
 * A password is never an argument (it would show in `ps`): it is typed at the terminal (echo off,
 * twice), or is the first line of standard input (--password-stdin), or is generated
 * (--generate: then standard output carries only the password, shown once).
 * After a change Dovecot may have cached (password, quota, enable/disable, remove), `doveadm auth
 * cache flush` is tried (--no-flush skips it; --dovecot-config names the instance's config).
 * Each command runs the accounts migrations first. Usage errors exit 2, failures 1.
 */
import type { Command } from 'commander';
import type pg from 'pg';
import { InvalidAddressError, accountAddress, aliasSource, destinationAddress, domainOf, existingAddress } from '../accounts/address.ts';
import { AliasExistsError, NoSuchAliasError, addAlias, listAliases, removeAlias } from '../accounts/aliases.ts';
import { FLUSH_SKIPPED, flushAuthCache } from '../accounts/auth-cache.ts';
import { PasswordInputError, promptNewPassword, readFirstLine, type Terminal } from '../accounts/password-input.ts';
import { DEFAULT_SCHEME, PasswordPolicyError, checkPassword, generatePassword, hashPassword, parseScheme, type PasswordScheme } from '../accounts/password.ts';
import { PostfixMapsError, mainCfLines, writePostfixMaps } from '../accounts/postfix-maps.ts';
import { InvalidQuotaError, describeQuotaRule, quotaRuleFor } from '../accounts/quota.ts';
import { removeAccount } from '../accounts/remove.ts';
import { AccountExistsError, NoSuchAccountError, createAccount, getAccount, listAccounts, migrateAccounts, setEnabled, setPassword, setQuotaRule } from '../accounts/repository.ts';
import type { Config } from '../core/config/schema.ts';
import { MigrationError } from '../core/db/migrate.ts';
import { createPool, redactUrl } from '../core/db/pool.ts';
import { table } from '../core/text-table.ts';
import { loadOrExit } from './runtime.ts';

/** Thrown inside a command; the wrapper prints it and sets the exit code. */
class CliFailure extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

const USAGE_ERRORS = [InvalidAddressError, InvalidQuotaError, PasswordPolicyError];
const KNOWN_FAILURES = [AccountExistsError, NoSuchAccountError, AliasExistsError, NoSuchAliasError, PostfixMapsError, PasswordInputError];

function describeError(err: unknown): string {
  // Node reports a refused connection to a name with several addresses as an AggregateError with no message.
  if (err instanceof AggregateError && !err.message) return err.errors.map((e: Error) => e.message).join('; ');
  return (err as Error).message || String((err as { code?: string }).code ?? err);
}

/** Runs one command: a failure is one line `ceerion account …: message`, exit 2 for usage, else 1. */
async function command(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const usage = USAGE_ERRORS.some((E) => err instanceof E) || (err instanceof CliFailure && err.code === 2);
    const known = usage || err instanceof CliFailure || KNOWN_FAILURES.some((E) => err instanceof E);
    process.stderr.write(`ceerion account ${name}: ${known ? (err as Error).message : describeError(err)}\n`);
    process.exitCode = usage ? 2 : err instanceof PasswordInputError && err.interrupted ? 130 : 1;
  }
}

interface ConfigOptions {
  config?: string;
}

/** Load the config, open a pool, run the accounts migrations, then `fn`; the pool is closed in every case. */
async function withDatabase<T>(opts: ConfigOptions, fn: (pool: pg.Pool, config: Config) => Promise<T>): Promise<T> {
  const config = loadOrExit({ ...(opts.config ? { config: opts.config } : {}) });
  const pool = createPool(config.database, { max: 2 });
  try {
    try {
      await migrateAccounts(pool);
    } catch (err) {
      if (err instanceof MigrationError) throw new CliFailure(err.message, 1);
      throw new CliFailure(`cannot use PostgreSQL at ${redactUrl(config.database.url)} (schema ${config.database.schema}): ${describeError(err)}`, 1);
    }
    return await fn(pool, config);
  } finally {
    await pool.end().catch(() => {});
  }
}

interface PasswordOptions {
  passwordStdin?: boolean;
  generate?: boolean;
  scheme?: string;
}

/** The new password from stdin, a generator or the terminal; checked against the scheme before any hashing. */
async function obtainPassword(opts: PasswordOptions, address: string, scheme: PasswordScheme): Promise<{ password: string; generated: boolean }> {
  if (opts.passwordStdin && opts.generate) throw new CliFailure('give --password-stdin or --generate, not both', 2);
  if (opts.generate) return { password: generatePassword(), generated: true };
  let password: string;
  if (opts.passwordStdin) {
    password = await readFirstLine(process.stdin);
    // Whatever follows the first line is not ours; a writer that keeps the pipe open must not keep us.
    process.stdin.destroy();
  } else if (process.stdin.isTTY) {
    password = await promptNewPassword(process.stdin as unknown as Terminal, process.stderr, address);
  } else {
    throw new CliFailure('no terminal to type the password at: use --password-stdin (first line of standard input) or --generate', 2);
  }
  checkPassword(password, scheme);
  return { password, generated: false };
}

interface FlushOptions {
  flush?: boolean;
  dovecotConfig?: string;
}

async function applyInDovecot(opts: FlushOptions): Promise<void> {
  const message = opts.flush === false ? FLUSH_SKIPPED : (await flushAuthCache({ dovecotConfig: opts.dovecotConfig })).message;
  process.stderr.write(`${message}\n`);
}

const say = (line: string): void => void process.stdout.write(`${line}\n`);

const configOption = (cmd: Command): Command => cmd.option('-c, --config <file>', 'YAML configuration file (CEERION_* environment variables override it)');
const passwordOptions = (cmd: Command): Command =>
  cmd
    .option('--scheme <scheme>', `password hash scheme: ARGON2ID (default) or BLF-CRYPT`)
    .option('--password-stdin', 'read the password from the first line of standard input')
    .option('--generate', 'generate a strong password and print it (standard output carries only the password)');
const flushOptions = (cmd: Command): Command =>
  cmd
    .option('--no-flush', "don't run `doveadm auth cache flush` afterwards")
    .option('--dovecot-config <file>', 'the Dovecot config doveadm should use (doveadm -c) when flushing');

function registerAccountChanges(account: Command): void {
  configOption(passwordOptions(account.command('add').argument('<address>', 'e.g. alice@example.com')))
    .description('add an account (a mailbox and a Dovecot login)')
    .option('--quota <size>', 'its storage quota, e.g. 500M, 2G, 1T (default: quota.conf\'s rule)')
    .action((input: string, opts: ConfigOptions & PasswordOptions & { quota?: string }) =>
      command('add', async () => {
        const address = accountAddress(input);
        const scheme = opts.scheme ? parseScheme(opts.scheme) : DEFAULT_SCHEME;
        const quotaRule = opts.quota === undefined ? null : quotaRuleFor(opts.quota);
        await withDatabase(opts, async (pool) => {
          // Before the prompt, so nobody types a password for an address that is taken.
          if (await getAccount(pool, address)) throw new AccountExistsError(address);
          const { password, generated } = await obtainPassword(opts, address, scheme);
          await createAccount(pool, { address, passwordHash: await hashPassword(password, scheme), quotaRule });
          const line = `added ${address} (${scheme}, quota ${describeQuotaRule(quotaRule)})`;
          if (generated) {
            process.stderr.write(`${line}; its password, shown once:\n`);
            say(password);
          } else say(line);
        });
      }),
    );

  flushOptions(configOption(passwordOptions(account.command('passwd').argument('<address>', 'the account'))))
    .description("set an account's password")
    .action((input: string, opts: ConfigOptions & PasswordOptions & FlushOptions) =>
      command('passwd', async () => {
        const address = existingAddress(input);
        const scheme = opts.scheme ? parseScheme(opts.scheme) : DEFAULT_SCHEME;
        await withDatabase(opts, async (pool) => {
          if (!(await getAccount(pool, address))) throw new NoSuchAccountError(address);
          const { password, generated } = await obtainPassword(opts, address, scheme);
          await setPassword(pool, address, await hashPassword(password, scheme));
          if (generated) {
            process.stderr.write(`new password of ${address}, shown once:\n`);
            say(password);
          } else say(`changed the password of ${address} (${scheme})`);
        });
        await applyInDovecot(opts);
      }),
    );

  flushOptions(configOption(account.command('remove').argument('<address>', 'the account')))
    .description('remove an account, the aliases to and from it, and its search index and API tokens (its mail files stay)')
    .action((input: string, opts: ConfigOptions & FlushOptions) =>
      command('remove', async () => {
        const address = existingAddress(input);
        const r = await withDatabase(opts, (pool) => removeAccount(pool, address));
        say(`removed ${r.address}`);
        for (const a of r.aliases) say(`removed alias ${a.source} → ${a.destination}`);
        if (r.indexedMessages || r.events || r.tokens) say(`removed ${r.indexedMessages} indexed messages, ${r.events} events and ${r.tokens} API tokens of ${r.address}`);
        process.stderr.write(`${r.address}'s mail stays under its Dovecot mail home until you delete it\n`);
        await applyInDovecot(opts);
      }),
    );

  for (const [name, enabled] of [
    ['enable', true],
    ['disable', false],
  ] as const) {
    flushOptions(configOption(account.command(name).argument('<address>', 'the account')))
      .description(enabled ? 'let a disabled account log in and receive mail again' : 'stop an account logging in and receiving mail, keeping its mail')
      .action((input: string, opts: ConfigOptions & FlushOptions) =>
        command(name, async () => {
          const address = existingAddress(input);
          const catchAll = await withDatabase(opts, async (pool) => {
            await setEnabled(pool, address, enabled);
            return (await listAliases(pool, { domain: domainOf(address) })).filter((a) => a.source.startsWith('@'));
          });
          say(`${name}d ${address}`);
          if (!enabled && catchAll.length) {
            process.stderr.write(`note: mail to ${address} now goes to the catch-all ${catchAll[0]!.source} → ${catchAll.map((a) => a.destination).join(', ')}, as for any unknown address of the domain\n`);
          }
          await applyInDovecot(opts);
        }),
      );
  }

  const quota = account.command('quota').description("an account's storage quota");
  flushOptions(configOption(quota.command('set').argument('<address>', 'the account').argument('<size>', 'e.g. 500M, 2G, 1T; none: quota.conf\'s default rule')))
    .description("set an account's storage quota")
    .action((input: string, size: string, opts: ConfigOptions & FlushOptions) =>
      command('quota set', async () => {
        const address = existingAddress(input);
        const rule = quotaRuleFor(size);
        await withDatabase(opts, (pool) => setQuotaRule(pool, address, rule));
        say(`quota of ${address}: ${rule === null ? "quota.conf's default rule" : rule}`);
        await applyInDovecot(opts);
      }),
    );
}

function registerAccountViews(account: Command): void {
  configOption(account.command('list'))
    .description('list accounts with their quota, state and number of aliases delivering to them')
    .option('--json', 'machine-readable output')
    .action((opts: ConfigOptions & { json?: boolean }) =>
      command('list', async () => {
        const accounts = await withDatabase(opts, (pool) => listAccounts(pool));
        if (opts.json) return say(JSON.stringify(accounts, null, 2));
        if (!accounts.length) return say('no accounts');
        const rows = accounts.map((a) => [a.address, a.enabled ? 'yes' : 'no', describeQuotaRule(a.quotaRule), a.aliases, a.scheme, a.createdAt.toISOString().slice(0, 10)]);
        say(table(['address', 'enabled', 'quota', 'aliases', 'scheme', 'created'], rows));
      }),
    );

  configOption(account.command('postfix-maps'))
    .description('write the Postfix pgsql: maps for accounts, aliases and domains, and print the main.cf lines')
    .option('--dir <dir>', 'where to write them', '/etc/postfix/ceerion')
    .action((opts: ConfigOptions & { dir: string }) =>
      command('postfix-maps', async () => {
        const written = await withDatabase(opts, (_pool, config) => writePostfixMaps(opts.dir, config.database));
        const owner = written.groupPostfix ? 'root:postfix, mode 0640' : 'mode 0640; as root, run chgrp postfix on them';
        process.stderr.write(`wrote ${written.files.join(', ')} (${owner}: they hold the database password)\nAdd to /etc/postfix/main.cf, then run \`postfix reload\`:\n\n`);
        process.stdout.write(mainCfLines(opts.dir));
      }),
    );
}

function registerAliasCommands(account: Command): void {
  const alias = account.command('alias').description('addresses that deliver to other addresses (Postfix virtual_alias_maps)');
  configOption(alias.command('add').argument('<source>', 'an address, or @domain for every other address of the domain').argument('<destination>', 'where its mail goes'))
    .description('add an alias; several with one source deliver a copy to each destination')
    .action((sourceInput: string, destinationInput: string, opts: ConfigOptions) =>
      command('alias add', async () => {
        const source = aliasSource(sourceInput);
        const destination = destinationAddress(destinationInput);
        const added = await withDatabase(opts, (pool) => addAlias(pool, source, destination));
        say(`added alias ${source} → ${destination}`);
        if (added.kind === 'unknown') process.stderr.write(`warning: ${destination} is in one of your domains but is neither an account nor an alias: its mail bounces until it is one\n`);
        if (added.kind === 'disabled') process.stderr.write(`warning: ${destination} is a disabled account: its mail is refused until it is enabled\n`);
        if (added.sourceIsAccount && source !== destination) {
          process.stderr.write(`note: ${source} is an account; its mail now goes only to its aliases (\`ceerion account alias add ${source} ${source}\` keeps a copy in its mailbox)\n`);
        }
      }),
    );
  configOption(alias.command('remove').argument('<source>', 'as it was added').argument('<destination>', 'as it was added'))
    .description('remove one alias')
    .action((source: string, destination: string, opts: ConfigOptions) =>
      command('alias remove', async () => {
        await withDatabase(opts, (pool) => removeAlias(pool, source, destination));
        say(`removed alias ${source.trim().toLowerCase()} → ${destination.trim().toLowerCase()}`);
      }),
    );
  configOption(alias.command('list'))
    .description('list aliases and where each delivers (account, alias, external, or unknown: bounces)')
    .option('--domain <domain>', 'only aliases whose source is in this domain')
    .option('--json', 'machine-readable output')
    .action((opts: ConfigOptions & { domain?: string; json?: boolean }) =>
      command('alias list', async () => {
        const aliases = await withDatabase(opts, (pool) => listAliases(pool, opts.domain === undefined ? {} : { domain: opts.domain }));
        if (opts.json) return say(JSON.stringify(aliases, null, 2));
        if (!aliases.length) return say('no aliases');
        say(table(['source', 'destination', 'delivers to'], aliases.map((a) => [a.source, a.destination, a.kind])));
      }),
    );
}

export function registerAccountCommands(program: Command): void {
  const account = program.command('account').description('mail accounts and aliases (the tables Dovecot and Postfix read)');
  registerAccountChanges(account);
  registerAliasCommands(account);
  registerAccountViews(account);
}
