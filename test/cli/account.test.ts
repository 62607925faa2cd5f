/**
 * `ceerion account …` as an operator runs it: the real CLI in a child process against a schema of
 * its own, and a private Dovecot 2.3 reading that schema through the shipped sql-accounts.conf, so
 * every change is checked by what Dovecot does with it (IMAP LOGIN, doveadm user).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { mainCfLines, POSTFIX_MAPS } from '../../accounts/postfix-maps.ts';
import { imapLogin, startDovecot, type DovecotInstance } from '../harness/dovecot.ts';
import { freePort } from '../harness/postfix.ts';
import { testSchema } from '../harness/postgres.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/ceerion.mjs');
const exec = promisify(execFile);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The parent's environment without CEERION_* settings or the test runner's own variables. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST')));
  return { ...env, ...extra };
}

/**
 * Runs `ceerion account ARGS`; `input` is written to its stdin (a pipe, never a terminal), which
 * is then closed, or with `keepStdinOpen` left open until the command exits.
 */
async function ceerion(env: Record<string, string>, args: string[], input = '', opts: { keepStdinOpen?: boolean } = {}): Promise<Run> {
  const child = spawn(process.execPath, [BIN, 'account', ...args], { cwd: ROOT, env: childEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdin.on('error', () => {});
  if (opts.keepStdinOpen) child.stdin.write(input);
  else child.stdin.end(input);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  child.stdin.destroy();
  return { code, stdout, stderr };
}

interface Setup {
  env: Record<string, string>;
  dovecot: DovecotInstance;
  /** `ceerion account ARGS`, which must exit 0; returns the run. */
  ok(args: string[], input?: string): Promise<Run>;
  run(args: string[], input?: string): Promise<Run>;
  login(user: string, password: string): Promise<boolean>;
  query<T extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<T[]>;
  /** The options that make the CLI flush this Dovecot's auth cache. */
  flush: string[];
}

async function setup(t: TestContext): Promise<Setup> {
  const db = testSchema(t);
  const env = { CEERION_DATABASE_URL: db.url, CEERION_DATABASE_SCHEMA: db.schema };
  // Dovecot reads the accounts table the CLI creates on its first run; it connects on first use.
  const dovecot = await startDovecot({ sqlAccounts: db });
  t.after(() => dovecot.stop());
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  t.after(() => client.end());
  const run = (args: string[], input?: string) => ceerion(env, args, input);
  return {
    env,
    dovecot,
    run,
    async ok(args, input) {
      const r = await run(args, input);
      assert.equal(r.code, 0, `account ${args.join(' ')}: ${r.stderr}`);
      return r;
    },
    login: async (user, password) => (await imapLogin({ port: dovecot.imapPort, user, password })).ok,
    query: async (sql, params) => (await client.query(sql.replaceAll('$schema', db.schema), params)).rows,
    flush: ['--dovecot-config', dovecot.configFile],
  };
}

test('add: Dovecot logs in with the password from stdin, not with a wrong one; only an ARGON2ID hash is stored', async (t) => {
  const s = await setup(t);
  const password = 'Tr0ub4dor & 3 "quoted"';
  const added = await s.ok(['add', 'Alice@Example.com', '--password-stdin'], `${password}\n`);
  assert.equal(added.stdout, 'added alice@example.com (ARGON2ID, quota default)\n');
  assert.equal(await s.login('alice@example.com', password), true);
  assert.equal(await s.login('Alice@example.com', password), true);
  assert.equal(await s.login('alice@example.com', 'Tr0ub4dor & 3'), false);
  const [row] = await s.query<{ password: string; quota_rule: string | null }>('SELECT password, quota_rule FROM $schema.accounts WHERE address = $1', ['alice@example.com']);
  assert.match(row!.password, /^\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=2,p=1\$/);
  assert.ok(!row!.password.includes('Tr0ub4dor'));
  assert.equal(row!.quota_rule, null);

  // BLF-CRYPT with a quota; only the first line of stdin counts, a CR before the LF is dropped.
  await s.ok(['add', 'bob@example.com', '--scheme', 'blf-crypt', '--quota', '2g', '--password-stdin'], 'hunter2\r\nsecond line\n');
  assert.equal(await s.login('bob@example.com', 'hunter2'), true);
  assert.equal(await s.login('bob@example.com', 'hunter2\r'), false);
  const [bob] = await s.query<{ password: string; quota_rule: string }>('SELECT password, quota_rule FROM $schema.accounts WHERE address = $1', ['bob@example.com']);
  assert.match(bob!.password, /^\{BLF-CRYPT\}\$2y\$12\$/);
  assert.equal(bob!.quota_rule, '*:storage=2G');

  // A writer that keeps the pipe open after the first line does not keep the command waiting.
  const started = Date.now();
  const open = await ceerion(s.env, ['add', 'frank@example.com', '--password-stdin'], 'frank-pass\nmore to come', { keepStdinOpen: true });
  assert.equal(open.code, 0, open.stderr);
  assert.ok(Date.now() - started < 30_000);
  assert.equal(await s.login('frank@example.com', 'frank-pass'), true);

  // --generate: standard output is the password alone, once.
  const generated = await s.ok(['add', 'carol@example.com', '--generate']);
  assert.match(generated.stdout, /^[a-km-zA-HJ-NP-Z2-9]{20}\n$/);
  assert.match(generated.stderr, /added carol@example\.com .*shown once/);
  assert.equal(await s.login('carol@example.com', generated.stdout.trim()), true);

  // The longest password accepted still logs in.
  const long = 'Long passphrase! '.repeat(64).slice(0, 1024);
  await s.ok(['add', 'dave@example.com', '--password-stdin'], long);
  assert.equal(await s.login('dave@example.com', long), true);

  for (const [args, input, code, message] of [
    [['add', 'alice@example.com', '--password-stdin'], 'x\n', 1, 'ceerion account add: alice@example.com already exists\n'],
    [['add', 'erin@example.com', '--password-stdin'], '\n', 2, 'ceerion account add: the password is empty\n'],
    [['add', 'erin@example.com', '--password-stdin'], 'tab\there\n', 2, 'ceerion account add: the password contains a control character (a newline, tab or similar)\n'],
    [['add', 'erin@example.com'], '', 2, 'ceerion account add: no terminal to type the password at: use --password-stdin (first line of standard input) or --generate\n'],
    [['add', 'erin@example.com', '--password-stdin', '--generate'], 'x\n', 2, 'ceerion account add: give --password-stdin or --generate, not both\n'],
    [['add', 'erin@example.com', '--scheme', 'BLF-CRYPT', '--password-stdin'], `${'x'.repeat(73)}\n`, 2, /only the first 72 bytes/],
  ] as const) {
    const r = await s.run([...args], input);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    if (typeof message === 'string') assert.equal(r.stderr, message);
    else assert.match(r.stderr, message);
  }
  const [{ n }] = (await s.query<{ n: string }>("SELECT count(*) AS n FROM $schema.accounts WHERE address = 'erin@example.com'")) as [{ n: string }];
  assert.equal(n, '0');
});

test("passwd: the new password works at once, the old one until Dovecot's auth cache is flushed", async (t) => {
  const s = await setup(t);
  await s.ok(['add', 'alice@example.com', '--password-stdin'], 'first-pass\n');
  assert.equal(await s.login('alice@example.com', 'first-pass'), true, 'now in the auth cache');

  const unflushed = await s.ok(['passwd', 'alice@example.com', '--password-stdin', '--no-flush'], 'second-pass\n');
  assert.equal(unflushed.stdout, 'changed the password of alice@example.com (ARGON2ID)\n');
  assert.match(unflushed.stderr, /not flushing Dovecot's auth cache: .*auth_cache_ttl/);
  assert.equal(await s.login('alice@example.com', 'first-pass'), true, 'the cache still holds the old hash');
  // A failed check against the cached hash is looked up again, and the new answer cached.
  assert.equal(await s.login('alice@example.com', 'second-pass'), true);
  assert.equal(await s.login('alice@example.com', 'first-pass'), false);

  const flushed = await s.ok(['passwd', 'alice@example.com', '--password-stdin', '--scheme', 'BLF-CRYPT', ...s.flush], 'third-pass\n');
  assert.match(flushed.stderr, /^flushed Dovecot's auth cache/m);
  assert.equal(await s.login('alice@example.com', 'third-pass'), true);
  assert.equal(await s.login('alice@example.com', 'first-pass'), false);
  assert.equal(await s.login('alice@example.com', 'second-pass'), false);

  // A flush that cannot reach Dovecot is reported, and the change stands.
  const unreachable = await s.ok(['passwd', 'alice@example.com', '--password-stdin', '--dovecot-config', '/nonexistent/dovecot.conf'], 'fourth-pass\n');
  assert.match(unreachable.stderr, /could not flush Dovecot's auth cache \(.*nonexistent.*\): Dovecot applies the change within its auth_cache_ttl/);

  const missing = await s.run(['passwd', 'nobody@example.com', '--password-stdin'], 'x\n');
  assert.deepEqual([missing.code, missing.stderr], [1, 'ceerion account passwd: there is no account nobody@example.com\n']);
});

test('alias add, list and remove; list shows the aliases delivering to each account', async (t) => {
  const s = await setup(t);
  await s.ok(['add', 'alice@example.com', '--password-stdin'], 'alice-pass\n');

  assert.equal((await s.ok(['alias', 'add', 'Sales@Example.com', 'alice@example.com'])).stdout, 'added alias sales@example.com → alice@example.com\n');
  await s.ok(['alias', 'add', '@example.com', 'alice@example.com']);
  const typo = await s.ok(['alias', 'add', 'info@example.com', 'alcie@example.com']);
  assert.match(typo.stderr, /warning: alcie@example\.com is in one of your domains but is neither an account nor an alias/);
  const dup = await s.run(['alias', 'add', 'sales@example.com', 'alice@example.com']);
  assert.deepEqual([dup.code, dup.stderr], [1, 'ceerion account alias add: the alias sales@example.com → alice@example.com already exists\n']);
  const listed = await s.ok(['alias', 'list']);
  assert.match(listed.stdout, /\| @example\.com +\| alice@example\.com +\| account +\|/);
  assert.match(listed.stdout, /\| sales@example\.com +\| alice@example\.com +\| account +\|/);
  assert.match(listed.stdout, /\| info@example\.com +\| alcie@example\.com +\| unknown +\|/);
  assert.deepEqual(JSON.parse((await s.ok(['alias', 'list', '--json', '--domain', 'example.com'])).stdout).map((a: { source: string }) => a.source), [
    '@example.com',
    'info@example.com',
    'sales@example.com',
  ]);
  assert.equal((await s.ok(['alias', 'remove', 'info@example.com', 'alcie@example.com'])).stdout, 'removed alias info@example.com → alcie@example.com\n');
  const gone = await s.run(['alias', 'remove', 'info@example.com', 'alcie@example.com']);
  assert.deepEqual([gone.code, gone.stderr], [1, 'ceerion account alias remove: there is no alias info@example.com → alcie@example.com\n']);
  assert.match((await s.ok(['list'])).stdout, /\| alice@example\.com \| yes +\| default \| 2 +\| ARGON2ID \|/);
});

test('quota set, disable/enable and remove, as the tables and Dovecot see them', async (t) => {
  const s = await setup(t);
  await s.ok(['add', 'alice@example.com', '--password-stdin'], 'alice-pass\n');
  await s.ok(['alias', 'add', 'sales@example.com', 'alice@example.com']);
  await s.ok(['alias', 'add', '@example.com', 'alice@example.com']);

  // Quota: the rule is in the table and in Dovecot's userdb answer (after the CLI's flush).
  assert.equal((await s.ok(['quota', 'set', 'alice@example.com', '1G', ...s.flush])).stdout, 'quota of alice@example.com: *:storage=1G\n');
  const user = async () => (await exec('doveadm', ['-c', s.dovecot.configFile, 'user', 'alice@example.com'])).stdout;
  assert.match(await user(), /^quota_rule\t\*:storage=1G$/m);
  await s.ok(['quota', 'set', 'alice@example.com', 'none', ...s.flush]);
  assert.doesNotMatch(await user(), /quota_rule/);

  const listJson = JSON.parse((await s.ok(['list', '--json'])).stdout) as Array<Record<string, unknown>>;
  assert.deepEqual(
    listJson.map(({ createdAt, ...rest }) => (assert.match(String(createdAt), /^\d{4}-/), rest)),
    [{ address: 'alice@example.com', enabled: true, quotaRule: null, scheme: 'ARGON2ID', aliases: 2 }],
  );

  // Disabled: no login (Dovecot's cached answer flushed), and the domain's catch-all gets its mail.
  assert.equal(await s.login('alice@example.com', 'alice-pass'), true);
  const disabled = await s.ok(['disable', 'alice@example.com', ...s.flush]);
  assert.match(disabled.stderr, /note: mail to alice@example\.com now goes to the catch-all @example\.com → alice@example\.com/);
  assert.equal(await s.login('alice@example.com', 'alice-pass'), false);
  await s.ok(['enable', 'alice@example.com', ...s.flush]);
  assert.equal(await s.login('alice@example.com', 'alice-pass'), true);

  const removed = await s.ok(['remove', 'alice@example.com', ...s.flush]);
  assert.equal(
    removed.stdout,
    'removed alice@example.com\nremoved alias @example.com → alice@example.com\nremoved alias sales@example.com → alice@example.com\n',
  );
  assert.match(removed.stderr, /mail stays under its Dovecot mail home/);
  assert.equal(await s.login('alice@example.com', 'alice-pass'), false);
  assert.equal((await s.ok(['list'])).stdout, 'no accounts\n');
  assert.equal((await s.ok(['alias', 'list'])).stdout, 'no aliases\n');
  const again = await s.run(['remove', 'alice@example.com']);
  assert.deepEqual([again.code, again.stderr], [1, 'ceerion account remove: there is no account alice@example.com\n']);
});

/** Runs `ceerion account ARGS` on a pseudo-terminal (util-linux script), answering each prompt. */
async function onTerminal(env: Record<string, string>, args: string[], answers: Array<[RegExp, string]>): Promise<{ code: number | null; screen: string }> {
  const command = [process.execPath, BIN, 'account', ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { cwd: ROOT, env: childEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  const pending = [...answers];
  const onOutput = (s: string) => {
    screen += s;
    // Answer only once the prompt is on screen: the terminal is in raw mode (echo off) by then.
    const next = pending[0];
    if (next && next[0].test(screen)) {
      pending.shift();
      screen += '<answered>';
      child.stdin.write(next[1]);
    }
  };
  child.stdout.setEncoding('utf8').on('data', onOutput);
  child.stderr.setEncoding('utf8').on('data', onOutput);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, screen };
}

test('the password prompt: typed twice at a terminal with echo off; a mismatch changes nothing', async (t) => {
  const s = await setup(t);
  const typed = await onTerminal(s.env, ['add', 'carol@example.com'], [
    [/New password for carol@example\.com: $/, 'typed secret\r'],
    [/Repeat it: $/, 'typed secret\r'],
  ]);
  assert.equal(typed.code, 0, typed.screen);
  assert.match(typed.screen, /added carol@example\.com \(ARGON2ID, quota default\)/);
  assert.doesNotMatch(typed.screen, /typed secret/, 'nothing typed is echoed');
  assert.equal(await s.login('carol@example.com', 'typed secret'), true);

  // Backspace edits what was typed.
  const edited = await onTerminal(s.env, ['passwd', 'carol@example.com', '--no-flush'], [
    [/New password for carol@example\.com: $/, 'new secreX\u007ft\r'],
    [/Repeat it: $/, 'new secret\r'],
  ]);
  assert.equal(edited.code, 0, edited.screen);
  assert.equal(await s.login('carol@example.com', 'new secret'), true);

  const mismatch = await onTerminal(s.env, ['passwd', 'carol@example.com', '--no-flush'], [
    [/New password for carol@example\.com: $/, 'one\r'],
    [/Repeat it: $/, 'two\r'],
  ]);
  assert.equal(mismatch.code, 1, mismatch.screen);
  assert.match(mismatch.screen, /ceerion account passwd: the two passwords differ/);
  const interrupted = await onTerminal(s.env, ['add', 'dave@example.com'], [[/New password for dave@example\.com: $/, 'abc\u0003']]);
  assert.equal(interrupted.code, 130, interrupted.screen);
  assert.match(interrupted.screen, /ceerion account add: interrupted/);
  assert.equal(await s.login('carol@example.com', 'new secret'), true);
  assert.deepEqual(await s.query("SELECT address FROM $schema.accounts WHERE address = 'dave@example.com'"), []);
});

test('usage errors exit 2 before the database is touched; an unreachable database exits 1', async (t) => {
  const dead = { CEERION_DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/postgres`, CEERION_DATABASE_SCHEMA: 'unused' };
  for (const [args, message] of [
    [['add', 'bad+tag@example.com', '--generate'], /not an account address/],
    [['add', 'alice@example.com', '--scheme', 'PLAIN', '--generate'], /unknown password scheme "PLAIN"/],
    [['add', 'alice@example.com', '--quota', '2GB', '--generate'], /not a quota such as/],
    [['quota', 'set', 'alice@example.com', '0'], /^ceerion account quota set: "0" is not a quota such as 500M, 2G or 1T \(or none for the default\)\n$/],
    [['alias', 'add', 'x@example.com', '@example.com'], /not an address/],
    [['passwd', 'alice', '--generate'], /"alice" is not an address such as user@example\.com/],
    [['alias', 'add', 'sales@example.com', 'not-an-address'], /not an address/],
  ] as const) {
    const r = await ceerion(dead, [...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  const down = await ceerion(dead, ['list']);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^ceerion account list: cannot use PostgreSQL at postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres \(schema unused\): .*ECONNREFUSED/);
  const help = await ceerion(dead, ['--help']);
  for (const sub of ['add', 'passwd', 'list', 'remove', 'enable', 'disable', 'quota', 'alias', 'postfix-maps']) assert.match(help.stdout, new RegExp(`^\\s+${sub} `, 'm'), sub);
});

test('postfix-maps --dir: writes the three map files (0640) and prints the main.cf lines', async (t) => {
  const db = testSchema(t);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-cli-maps-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const target = path.join(dir, 'postfix', 'ceerion');
  const r = await ceerion({ CEERION_DATABASE_URL: db.url, CEERION_DATABASE_SCHEMA: db.schema }, ['postfix-maps', '--dir', target]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, mainCfLines(target));
  assert.match(r.stderr, /they hold the database password/);
  for (const { file } of POSTFIX_MAPS) assert.equal((await stat(path.join(target, file))).mode & 0o777, 0o640, file);
});
