/**
 * `ceerion account add|passwd|alias` against a private Dovecot reading the CLI's schema.
 */
import assert from 'node:assert/strict';
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
