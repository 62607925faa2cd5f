// The private Dovecot's configuration (test/harness/dovecot.ts): dovecot.conf itself, and the
// shipped snippets it includes with their @PLACEHOLDERS@ filled:
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

/** Fills @NAME@ placeholders; a placeholder left outside a comment is an error naming the file. */
export function fillPlaceholders(file: string, text: string, values: Record<string, string>): string {
  let out = text;
  for (const [name, value] of Object.entries(values)) out = out.replaceAll(`@${name}@`, value);
  const left = /^[^#\n]*(@[A-Z_]+@)/m.exec(out);
  if (left) throw new Error(`${path.basename(file)}: placeholder ${left[1]} not substituted`);
  return out;
}

async function renderFile(file: string, values: Record<string, string>): Promise<string> {
  return fillPlaceholders(file, await readFile(file, 'utf8'), values);
}

/** The shipped snippet with its @PLACEHOLDERS@ filled; refuses to leave one behind. */
export function renderAuthPolicySnippet(values: { host: string; port: number; apiHeader: string; hashNonce: string }): Promise<string> {
  return renderFile(AUTH_POLICY_SNIPPET, {
    AUTH_POLICY_HOST: values.host,
    AUTH_POLICY_PORT: String(values.port),
    AUTH_POLICY_API_HEADER: values.apiHeader,
    AUTH_POLICY_HASH_NONCE: values.hashNonce,
  });
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
  const snippet = (name: string): string => path.join(LMTP_INDEXER_DOVECOT_DIR, name);
  if (opts.sqlAccounts) {
    const sqlConf = path.join(dir, 'dovecot-sql.conf.ext');
    await writeSecret(sqlConf, await renderFile(snippet('dovecot-sql.conf.ext'), sqlValues(opts.sqlAccounts.url, opts.sqlAccounts.schema)));
    const accounts = path.join(dir, 'sql-accounts.conf');
    const values = { SQL_CONFIG_FILE: sqlConf, MAIL_UID: String(mailUser.uid), MAIL_GID: String(mailUser.gid), MAIL_HOME: `${dir}/mail/%Lu` };
    await writeFile(accounts, await renderFile(snippet('sql-accounts.conf'), values), { mode: 0o600 });
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
    const { url, token = '', separator = '.', timeoutMsecs = 2000, backoffSecs = 10 } = opts.push;
    if (!/^[\x21-\x7e]*$/.test(token) || /["#]/.test(token)) throw new Error('push.token must be printable ASCII without spaces, quotes or #');
    // A copy the mail processes (user nobody) can read wherever the checkout lives; same bytes.
    const lua = path.join(dir, 'push-notification.lua');
    await copyFile(snippet('push-notification.lua'), lua);
    await chmod(lua, 0o644);
    const file = path.join(dir, 'push-notification.conf');
    const values = {
      PUSH_LUA_FILE: lua,
      PUSH_URL: url,
      PUSH_TOKEN: token,
      HIERARCHY_SEPARATOR: separator,
      PUSH_TIMEOUT_MSECS: String(timeoutMsecs),
      PUSH_BACKOFF_SECS: String(backoffSecs),
    };
    await writeFile(file, await renderFile(snippet('push-notification.conf'), values), { mode: 0o600 });
    includes.push(file);
  }
  // Written by writeLmtpSnippet once the port is chosen (it changes when a start is retried).
  if (opts.lmtp) includes.push(path.join(dir, 'lmtp.conf'));
  // Last of ours: its `protocol imap` block must come after every global mail_plugins append.
  if (opts.quota) {
    const file = path.join(dir, 'quota.conf');
    await writeFile(file, await renderFile(snippet('quota.conf'), { DEFAULT_QUOTA_RULE: opts.quota.defaultRule ?? '*:storage=100M' }), { mode: 0o600 });
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
  const plugins = (...p: string[]): string => path.join(DOVECOT_PLUGINS_DIR, ...p);
  const sieveDir = path.join(dir, 'sieve');
  await mkdir(sieveDir, { recursive: true });
  for (const name of ['junk-filing.sieve', 'learn-spam.sieve', 'learn-ham.sieve', 'learn-flags.sieve']) {
    await copyFile(plugins('sieve', name), path.join(sieveDir, name));
    await chown(path.join(sieveDir, name), mailUser.uid, mailUser.gid);
  }
  await chown(sieveDir, mailUser.uid, mailUser.gid);
  if (opts.sieveDelivery) {
    const file = path.join(dir, 'sieve-delivery.conf');
    const values = { SIEVE_BEFORE: path.join(sieveDir, 'junk-filing.sieve'), USER_SIEVE: 'file:~/sieve;active=~/.dovecot.sieve' };
    await writeFile(file, await renderFile(plugins('conf', 'sieve-delivery.conf'), values), { mode: 0o600 });
    includes.push(file);
  }
  if (opts.learn) {
    const binDir = path.join(dir, 'sieve-bin');
    await mkdir(binDir, { recursive: true, mode: 0o755 });
    const program = path.join(binDir, 'ceerion-learn');
    const values = { SPOOL_DIR: opts.learn.spoolDir, MAX_BYTES: String(opts.learn.maxBytes ?? 10 * 1024 * 1024) };
    await writeFile(program, await renderFile(plugins('bin', 'ceerion-learn'), values), { mode: 0o755 });
    const file = path.join(dir, 'imapsieve-learn.conf');
    const confValues = { SIEVE_DIR: sieveDir, PIPE_BIN_DIR: binDir, PIPE_SOCKET_DIR: LEARN_SOCKET_DIR, PIPE_TIMEOUT: opts.learn.timeout ?? '10s' };
    await writeFile(file, await renderFile(plugins('conf', 'imapsieve-learn.conf'), confValues), { mode: 0o600 });
    includes.push(file);
    if (opts.learn.flags) {
      const flags = path.join(dir, 'imapsieve-flags.conf');
      await writeFile(flags, await renderFile(plugins('conf', 'imapsieve-flags.conf'), { SIEVE_DIR: sieveDir }), { mode: 0o600 });
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
    '# Generated by test/harness/dovecot.ts for a private, throwaway Dovecot.',
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
  const values = { LMTP_SOCKET: 'lmtp', LMTP_SOCKET_MODE: '0600', LMTP_SOCKET_USER: 'root', LMTP_INET_ADDRESS: '127.0.0.1', LMTP_INET_PORT: String(port) };
  await writeFile(path.join(dir, 'lmtp.conf'), await renderFile(path.join(LMTP_INDEXER_DOVECOT_DIR, 'lmtp.conf'), values), { mode: 0o600 });
}
