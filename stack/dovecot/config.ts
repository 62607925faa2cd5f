// Dovecot configuration for private instances (the test harness's test/harness/dovecot.ts and `ceerion start`): dovecot.conf itself, and the
// shipped snippets it includes with their @PLACEHOLDERS@ filled (`ceerion setup`, stack/setup/,
// renders the same files with the same value builders for a system Dovecot):
//   policyd/dovecot/auth-policy.conf                       authPolicy
//   lmtp-indexer/dovecot/sql-accounts.conf + dovecot-sql.conf.ext   sqlAccounts
//   lmtp-indexer/dovecot/lmtp.conf                         lmtp
//   lmtp-indexer/dovecot/quota.conf                        quota
//   lmtp-indexer/dovecot/push-notification.conf + .lua     push
//   dovecot-plugins/conf/sieve-delivery.conf + sieve/junk-filing.sieve        sieveDelivery
//   dovecot-plugins/conf/imapsieve-learn.conf (+ imapsieve-flags.conf), sieve/learn-*.sieve,
//     bin/ceerion-learn                                    learn
// Rendering refuses to leave a placeholder behind, so a snippet that gains one fails here first.
import { copyFile, chmod, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');
export const AUTH_POLICY_SNIPPET = path.join(ROOT, 'policyd/dovecot/auth-policy.conf');
export const LMTP_INDEXER_DOVECOT_DIR = path.join(ROOT, 'lmtp-indexer/dovecot');
export const DOVECOT_PLUGINS_DIR = path.join(ROOT, 'dovecot-plugins');
const indexerFile = (name: string): string => path.join(LMTP_INDEXER_DOVECOT_DIR, name);
const pluginsFile = (...p: string[]): string => path.join(DOVECOT_PLUGINS_DIR, ...p);
/**
 * Every shipped file Dovecot is configured from. Private instances (writeSnippets) and `ceerion
 * setup` (stack/setup) render the same files with the same value builders below.
 */
export const SHIPPED = {
  authPolicy: AUTH_POLICY_SNIPPET,
  sqlAccounts: indexerFile('sql-accounts.conf'),
  sqlConnect: indexerFile('dovecot-sql.conf.ext'),
  lmtp: indexerFile('lmtp.conf'),
  quota: indexerFile('quota.conf'),
  push: indexerFile('push-notification.conf'),
  pushLua: indexerFile('push-notification.lua'),
  sieveDelivery: pluginsFile('conf', 'sieve-delivery.conf'),
  imapsieveLearn: pluginsFile('conf', 'imapsieve-learn.conf'),
  imapsieveFlags: pluginsFile('conf', 'imapsieve-flags.conf'),
  learnProgram: pluginsFile('bin', 'ceerion-learn'),
} as const;
export const SIEVE_SCRIPTS = ['junk-filing.sieve', 'learn-spam.sieve', 'learn-ham.sieve', 'learn-flags.sieve'] as const;
export const sieveScriptFile = (name: (typeof SIEVE_SCRIPTS)[number]): string => pluginsFile('sieve', name);
/** Where the learn gateway's socket goes: base_dir/ceerion-learn/ceerion-learn (sieve_pipe_socket_dir = ceerion-learn). */
export const LEARN_SOCKET_DIR = 'ceerion-learn';

export interface DovecotUser {
  name: string;
  password: string;
}

export interface DovecotOptions {
  /** passwd-file users; default alice/secret and bob/hunter2. Ignored with sqlAccounts. */
  users?: DovecotUser[];
  /** Include policyd/dovecot/auth-policy.conf, its placeholders filled with these values. */
  authPolicy?: { host?: string; port: number; apiHeader?: string; hashNonce?: string };
  /** Dovecot's built-in per-IP failure delay (anvil). Default off. */
  authPenalty?: boolean;
  /** auth_failure_delay in seconds. Default 0. */
  authFailureDelaySeconds?: number;
  /** auth_debug = yes (request JSON of every policy call in the log). */
  authDebug?: boolean;
  /** mail_debug = yes (plugin loading, Lua script calls, quota decisions in the log). */
  mailDebug?: boolean;
  /** Raw lines appended to dovecot.conf (more listeners, protocols, plugins). */
  extraConfig?: string;
  /** `protocols`; default imap. lmtp is added when `lmtp` is set. */
  protocols?: string[];
  /**
   * Users from the `accounts` table (accounts/migrations) in this PostgreSQL schema, through the
   * shipped sql-accounts.conf and dovecot-sql.conf.ext, instead of the passwd-file. The caller
   * creates the table (migrateAccounts / migrateIndex) and its rows.
   */
  sqlAccounts?: { url: string; schema: string };
  /** The shipped lmtp.conf: an inet listener on a free loopback port and a unix socket in the run dir. */
  lmtp?: boolean;
  /** The shipped quota.conf; defaultRule defaults to `*:storage=100M`. */
  quota?: { defaultRule?: string };
  /** The shipped push-notification.conf + push-notification.lua, posting to `url`. */
  push?: { url: string; token?: string; separator?: string; timeoutMsecs?: number; backoffSecs?: number };
  /** The shipped sieve-delivery.conf: Sieve for LMTP with junk-filing.sieve as sieve_before; users' scripts in ~/sieve. */
  sieveDelivery?: boolean;
  /**
   * The shipped imapsieve-learn.conf (and imapsieve-flags.conf with `flags`): moves into and out of
   * Junk pipe to ceerion-learn, i.e. the gateway socket under base_dir, or the fallback program
   * spooling into `spoolDir` (created by the caller, writable by the mail user).
   */
  learn?: { spoolDir: string; maxBytes?: number; flags?: boolean; timeout?: string };
}

/**
 * Fills @NAME@ placeholders outside comment lines; one without a value is an error naming the
 * file. Comments keep their @NAMES@, so an installed file still says what each value is. Checked
 * on the template, and values are inserted literally (a password with `$&` or `@X@` stays as is).
 */
export function fillPlaceholders(file: string, text: string, values: Record<string, string>): string {
  return text
    .split('\n')
    .map((line) =>
      /^\s*#/.test(line)
        ? line
        : line.replace(/@([A-Z_]+)@/g, (_, name: string) => {
            const value = values[name];
            if (value === undefined) throw new Error(`${path.basename(file)}: placeholder @${name}@ not substituted`);
            return value;
          }),
    )
    .join('\n');
}

/** A shipped file read and filled (fillPlaceholders on its text). */
export async function renderFile(file: string, values: Record<string, string>): Promise<string> {
  return fillPlaceholders(file, await readFile(file, 'utf8'), values);
}

// The placeholder values of each shipped file, from named settings: one place maps settings to
// @NAMES@, so private instances and `ceerion setup` cannot drift apart.

export function authPolicyValues(v: { host: string; port: number; apiHeader: string; hashNonce: string }): Record<string, string> {
  return { AUTH_POLICY_HOST: v.host, AUTH_POLICY_PORT: String(v.port), AUTH_POLICY_API_HEADER: v.apiHeader, AUTH_POLICY_HASH_NONCE: v.hashNonce };
}

/** sql-accounts.conf; uid/gid may be numbers or names (Dovecot resolves names itself). */
export function sqlAccountsValues(v: { sqlConfigFile: string; uid: number | string; gid: number | string; home: string }): Record<string, string> {
  return { SQL_CONFIG_FILE: v.sqlConfigFile, MAIL_UID: String(v.uid), MAIL_GID: String(v.gid), MAIL_HOME: v.home };
}

export function lmtpValues(v: { socket: string; mode: string; user: string; inetAddress: string; inetPort: number }): Record<string, string> {
  return { LMTP_SOCKET: v.socket, LMTP_SOCKET_MODE: v.mode, LMTP_SOCKET_USER: v.user, LMTP_INET_ADDRESS: v.inetAddress, LMTP_INET_PORT: String(v.inetPort) };
}

export function quotaValues(defaultRule: string): Record<string, string> {
  return { DEFAULT_QUOTA_RULE: defaultRule };
}

export interface PushSettings {
  luaFile: string;
  url: string;
  token?: string;
  separator?: string;
  timeoutMsecs?: number;
  backoffSecs?: number;
}

export function pushValues(v: PushSettings): Record<string, string> {
  const { token = '', separator = '.', timeoutMsecs = 2000, backoffSecs = 10 } = v;
  // The value goes into a plugin setting as is: no quoting exists that would carry these.
  if (!/^[\x21-\x7e]*$/.test(token) || /["#]/.test(token)) throw new Error('push.token must be printable ASCII without spaces, quotes or #');
  return {
    PUSH_LUA_FILE: v.luaFile,
    PUSH_URL: v.url,
    PUSH_TOKEN: token,
    HIERARCHY_SEPARATOR: separator,
    PUSH_TIMEOUT_MSECS: String(timeoutMsecs),
    PUSH_BACKOFF_SECS: String(backoffSecs),
  };
}

export function sieveDeliveryValues(v: { sieveBefore: string; userSieve?: string }): Record<string, string> {
  return { SIEVE_BEFORE: v.sieveBefore, USER_SIEVE: v.userSieve ?? 'file:~/sieve;active=~/.dovecot.sieve' };
}

export function learnProgramValues(v: { spoolDir: string; maxBytes?: number }): Record<string, string> {
  return { SPOOL_DIR: v.spoolDir, MAX_BYTES: String(v.maxBytes ?? 10 * 1024 * 1024) };
}

export function imapsieveLearnValues(v: { sieveDir: string; binDir: string; socketDir?: string; timeout?: string }): Record<string, string> {
  return { SIEVE_DIR: v.sieveDir, PIPE_BIN_DIR: v.binDir, PIPE_SOCKET_DIR: v.socketDir ?? LEARN_SOCKET_DIR, PIPE_TIMEOUT: v.timeout ?? '10s' };
}

export function imapsieveFlagsValues(sieveDir: string): Record<string, string> {
  return { SIEVE_DIR: sieveDir };
}

/** The shipped snippet with its @PLACEHOLDERS@ filled; refuses to leave one behind. */
export function renderAuthPolicySnippet(values: { host: string; port: number; apiHeader: string; hashNonce: string }): Promise<string> {
  return renderFile(SHIPPED.authPolicy, authPolicyValues(values));
}

/** A libpq connection-string value: always quoted, so empty values and spaces survive. */
export function libpqValue(value: string): string {
  return `'${value.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/** The placeholders of dovecot-sql.conf.ext for a postgres:// URL and schema. */
export function sqlValues(url: string, schema: string): Record<string, string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`schema ${JSON.stringify(schema)} is not a lower-case SQL identifier`);
  const u = new URL(url);
  if (!/^postgres(ql)?:$/.test(u.protocol)) throw new Error(`not a postgres:// URL: ${u.protocol}`);
  return {
    PG_HOST: libpqValue(decodeURIComponent(u.hostname.replace(/^\[|\]$/g, '')) || '127.0.0.1'),
    PG_PORT: libpqValue(u.port || '5432'),
    PG_DBNAME: libpqValue(decodeURIComponent(u.pathname.slice(1)) || 'postgres'),
    PG_USER: libpqValue(decodeURIComponent(u.username) || 'postgres'),
    PG_PASSWORD: libpqValue(decodeURIComponent(u.password)),
    PG_SCHEMA: schema,
  };
}

export function uidOf(user: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  const f = line?.split(':');
  if (!f) throw new Error(`no user ${user} in /etc/passwd`);
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

function checkUser(u: DovecotUser): string {
  if (!/^[^:\s]+$/.test(u.name) || /[:\r\n]/.test(u.password)) throw new Error(`user ${JSON.stringify(u.name)} can't go in a passwd-file`);
  return `${u.name}:{PLAIN}${u.password}::::::`;
}

/** A file the auth processes (user dovecot) read and nobody else may: it may hold passwords. */
async function writeSecret(file: string, text: string): Promise<void> {
  await writeFile(file, text, { mode: 0o640 });
  await chown(file, 0, uidOf('dovecot').gid);
}

export const DEFAULT_USERS: DovecotUser[] = [
  { name: 'alice', password: 'secret' },
  { name: 'bob', password: 'hunter2' },
];

/** Writes passwd-file or SQL config and the snippets into `dir`; returns the files to !include. */
export async function writeSnippets(dir: string, opts: DovecotOptions, hashNonce: string, mailUser: { uid: number; gid: number }): Promise<string[]> {
  const includes: string[] = [];
  if (opts.sqlAccounts) {
    const sqlConf = path.join(dir, 'dovecot-sql.conf.ext');
    await writeSecret(sqlConf, await renderFile(SHIPPED.sqlConnect, sqlValues(opts.sqlAccounts.url, opts.sqlAccounts.schema)));
    const accounts = path.join(dir, 'sql-accounts.conf');
    const values = sqlAccountsValues({ sqlConfigFile: sqlConf, uid: mailUser.uid, gid: mailUser.gid, home: `${dir}/mail/%Lu` });
    await writeFile(accounts, await renderFile(SHIPPED.sqlAccounts, values), { mode: 0o600 });
    includes.push(accounts);
  } else {
    await writeSecret(path.join(dir, 'passwd'), `${(opts.users ?? DEFAULT_USERS).map(checkUser).join('\n')}\n`);
  }
  if (opts.authPolicy) {
    const file = path.join(dir, 'auth-policy.conf');
    const { host = '127.0.0.1', port, apiHeader = '' } = opts.authPolicy;
    await writeFile(file, await renderAuthPolicySnippet({ host, port, apiHeader, hashNonce }), { mode: 0o600 });
    includes.push(file);
  }
  if (opts.push) {
    // A copy the mail processes (user nobody) can read wherever the checkout lives; same bytes.
    const lua = path.join(dir, 'push-notification.lua');
    const values = pushValues({ ...opts.push, luaFile: lua });
    await copyFile(SHIPPED.pushLua, lua);
    await chmod(lua, 0o644);
    const file = path.join(dir, 'push-notification.conf');
    await writeFile(file, await renderFile(SHIPPED.push, values), { mode: 0o600 });
    includes.push(file);
  }
  // Written by writeLmtpSnippet once the port is chosen (it changes when a start is retried).
  if (opts.lmtp) includes.push(path.join(dir, 'lmtp.conf'));
  // Last of ours: its `protocol imap` block must come after every global mail_plugins append.
  if (opts.quota) {
    const file = path.join(dir, 'quota.conf');
    await writeFile(file, await renderFile(SHIPPED.quota, quotaValues(opts.quota.defaultRule ?? '*:storage=100M')), { mode: 0o600 });
    includes.push(file);
  }
  // After quota.conf: their protocol blocks must follow every global mail_plugins append.
  if (opts.sieveDelivery || opts.learn) await writeSieveSnippets(dir, opts, mailUser, includes);
  return includes;
}

/**
 * The Sieve scripts in a directory the mail user owns (Dovecot saves the compiled .svbin next to
 * them), the program rendered into a bin dir only root may write, and the snippets that use them.
 */
async function writeSieveSnippets(dir: string, opts: DovecotOptions, mailUser: { uid: number; gid: number }, includes: string[]): Promise<void> {
  const sieveDir = path.join(dir, 'sieve');
  await mkdir(sieveDir, { recursive: true });
  for (const name of SIEVE_SCRIPTS) {
    await copyFile(sieveScriptFile(name), path.join(sieveDir, name));
    await chown(path.join(sieveDir, name), mailUser.uid, mailUser.gid);
  }
  await chown(sieveDir, mailUser.uid, mailUser.gid);
  if (opts.sieveDelivery) {
    const file = path.join(dir, 'sieve-delivery.conf');
    const values = sieveDeliveryValues({ sieveBefore: path.join(sieveDir, 'junk-filing.sieve') });
    await writeFile(file, await renderFile(SHIPPED.sieveDelivery, values), { mode: 0o600 });
    includes.push(file);
  }
  if (opts.learn) {
    const binDir = path.join(dir, 'sieve-bin');
    await mkdir(binDir, { recursive: true, mode: 0o755 });
    const program = path.join(binDir, 'ceerion-learn');
    const values = learnProgramValues({ spoolDir: opts.learn.spoolDir, ...(opts.learn.maxBytes !== undefined ? { maxBytes: opts.learn.maxBytes } : {}) });
    await writeFile(program, await renderFile(SHIPPED.learnProgram, values), { mode: 0o755 });
    const file = path.join(dir, 'imapsieve-learn.conf');
    const confValues = imapsieveLearnValues({ sieveDir, binDir, ...(opts.learn.timeout !== undefined ? { timeout: opts.learn.timeout } : {}) });
    await writeFile(file, await renderFile(SHIPPED.imapsieveLearn, confValues), { mode: 0o600 });
    includes.push(file);
    if (opts.learn.flags) {
      const flags = path.join(dir, 'imapsieve-flags.conf');
      await writeFile(flags, await renderFile(SHIPPED.imapsieveFlags, imapsieveFlagsValues(sieveDir)), { mode: 0o600 });
      includes.push(flags);
    }
  }
}

export function buildConfig(dir: string, imapPort: number, opts: DovecotOptions, mailUser: { uid: number; gid: number }, includes: string[]): string {
  const protocols = [...new Set([...(opts.protocols ?? ['imap']), ...(opts.lmtp ? ['lmtp'] : [])])];
  const auth = opts.sqlAccounts
    ? []
    : [
        'passdb {',
        '  driver = passwd-file',
        `  args = scheme=PLAIN username_format=%u ${dir}/passwd`,
        '}',
        'userdb {',
        '  driver = static',
        `  args = uid=${mailUser.uid} gid=${mailUser.gid} home=${dir}/mail/%u`,
        '}',
      ];
  return [
    '# Generated by CEERION (stack/dovecot/config.ts) for a private Dovecot instance.',
    `base_dir = ${dir}/run`,
    `state_dir = ${dir}/state`,
    `instance_name = ${path.basename(dir)}`,
    `log_path = ${dir}/dovecot.log`,
    `protocols = ${protocols.join(' ')}`,
    'listen = 127.0.0.1',
    'ssl = no',
    'disable_plaintext_auth = no',
    'auth_mechanisms = plain login',
    `auth_failure_delay = ${opts.authFailureDelaySeconds ?? 0}`,
    'auth_verbose = yes',
    `auth_debug = ${opts.authDebug ? 'yes' : 'no'}`,
    `mail_debug = ${opts.mailDebug ? 'yes' : 'no'}`,
    'default_internal_user = dovecot',
    'default_login_user = dovenull',
    `mail_location = maildir:~/Maildir`,
    ...auth,
    'service imap-login {',
    '  inet_listener imap {',
    '    address = 127.0.0.1',
    `    port = ${imapPort}`,
    '  }',
    '  inet_listener imaps {',
    '    port = 0',
    '  }',
    '}',
    ...(opts.authPenalty ? [] : ['service anvil {', '  unix_listener anvil-auth-penalty {', '    mode = 0', '  }', '}']),
    ...includes.map((f) => `!include ${f}`),
    opts.extraConfig ?? '',
    '',
  ].join('\n');
}

/** lmtp.conf with a unix socket `lmtp` in base_dir and an inet listener on 127.0.0.1:port. */
export async function writeLmtpSnippet(dir: string, port: number): Promise<void> {
  const values = lmtpValues({ socket: 'lmtp', mode: '0600', user: 'root', inetAddress: '127.0.0.1', inetPort: port });
  await writeFile(path.join(dir, 'lmtp.conf'), await renderFile(SHIPPED.lmtp, values), { mode: 0o600 });
}
