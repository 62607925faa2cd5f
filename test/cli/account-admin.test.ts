/**
 * `ceerion account quota|disable|enable|remove`, the password prompt, usage errors and
 * postfix-maps, against a private Dovecot reading the CLI's schema.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { mainCfLines, POSTFIX_MAPS } from '../../accounts/postfix-maps.ts';
import { imapLogin, startDovecot } from '../harness/dovecot.ts';
import { freePort } from '../harness/postfix.ts';
import { testSchema } from '../harness/postgres.ts';
import { BIN, ROOT, ceerion, childEnv, exec, setup } from './account-helpers.ts';

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
