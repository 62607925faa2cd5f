/**
 * `ceerion policy set|show|list|delete` as an operator runs them: a real child process against
 * the real PostgreSQL, a schema of its own per test (CEERION_DATABASE_SCHEMA). What the commands
 * print is checked against what the database holds.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { freePort } from '../harness/postfix.ts';
import { testSchema } from '../harness/postgres.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ENTRY = [path.join(ROOT, 'bin/ceerion.mjs')];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function ceerion(args: string[], env: Record<string, string>): Promise<Run> {
  // The parent's CEERION_* settings and test-runner variables must not leak into the child.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST')));
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...ENTRY, ...args], { cwd: ROOT, env: { ...base, ...env }, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
  });
}

/** A CLI bound to a fresh schema, and a client to look into that schema. */
function setup(t: TestContext) {
  const db = testSchema(t);
  const env = { CEERION_DATABASE_URL: db.url, CEERION_DATABASE_SCHEMA: db.schema };
  const cli = async (...args: string[]): Promise<Run> => ceerion(['policy', ...args], env);
  const ok = async (...args: string[]): Promise<string> => {
    const r = await cli(...args);
    assert.equal(r.code, 0, `policy ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const rows = async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const r = await client.query(`SELECT domain, limits, greylist, note FROM ${db.schema}.policy_domains ORDER BY domain`);
      return r.rows as Array<{ domain: string; limits: unknown; greylist: unknown; note: string | null }>;
    } finally {
      await client.end();
    }
  };
  return { db, env, cli, ok, rows };
}

const showJson = async (ok: (...a: string[]) => Promise<string>, domain: string) => JSON.parse(await ok('show', domain, '--json'));

test('set stores exactly the overrides given; show reports each value and where it comes from', async (t) => {
  const { ok, rows } = setup(t);
  const out = await ok('set', 'Example.COM', '--client-ip', '100/1h', '--size-bytes', '50M/1d', '--greylist', 'on', '--greylist-delay', '60', '--note', 'VIP');
  assert.match(out, /^example\.com: row updated .*; note: VIP$/m);
  assert.match(out, /\| clientIp +\| 100\/1h +\| example\.com +\|/);
  assert.match(out, /\| saslUser +\| 1000\/1h +\| config +\|/);
  assert.match(out, /\| sizeBytes +\| 50M\/1d +\| example\.com +\|/);
  assert.deepEqual((await rows()).find((r) => r.domain === 'example.com'), {
    domain: 'example.com',
    limits: { clientIp: { count: 100, periodSeconds: 3600 }, sizeBytes: { count: 50 * 1024 * 1024, periodSeconds: 86400 } },
    greylist: { enabled: true, delaySeconds: 60 },
    note: 'VIP',
  });

  await ok('set', '_default', '--sasl-user', '10/15m', '--sender', '20/30s');
  const shown = await showJson(ok, 'example.com');
  assert.deepEqual(shown.policy.limits.saslUser, { count: 10, periodSeconds: 900 });
  assert.deepEqual(shown.policy.limits.sender, { count: 20, periodSeconds: 30 });
  assert.deepEqual(shown.policy.limits.clientIp, { count: 100, periodSeconds: 3600 });
  assert.deepEqual(shown.from.limits, { clientIp: 'domain', saslUser: '_default', sender: '_default', senderDomain: 'config', recipient: 'config', sizeBytes: 'domain' });
  assert.equal(shown.policy.greylist.delaySeconds, 60);
  assert.equal(shown.from.greylist.retentionDays, 'config');
  assert.equal(shown.row.note, 'VIP');

  // A domain without a row shows the _default policy.
  const other = await showJson(ok, 'other.example');
  assert.equal(other.row, null);
  assert.deepEqual(other.policy.limits.saslUser, { count: 10, periodSeconds: 900 });
  assert.equal(other.from.limits.clientIp, 'config');
});

test('set merges into the row: other keys stay; off means no limit; inherit drops the override', async (t) => {
  const { ok, rows } = setup(t);
  await ok('set', 'example.com', '--client-ip', '5/1m', '--recipient', '9/1d', '--greylist', 'off');
  await ok('set', 'example.com', '--client-ip', 'off', '--recipient', 'inherit', '--greylist', 'inherit', '--sender-domain', '0');
  const row = (await rows()).find((r) => r.domain === 'example.com');
  assert.deepEqual(row?.limits, { clientIp: { count: 0, periodSeconds: 3600 }, senderDomain: { count: 0, periodSeconds: 3600 } });
  assert.deepEqual(row?.greylist, {});
  const shown = await showJson(ok, 'example.com');
  assert.equal(shown.from.limits.recipient, 'config');
  assert.equal(shown.policy.limits.clientIp.count, 0);
  // --note '' clears the note.
  await ok('set', 'example.com', '--note', 'temporary');
  await ok('set', 'example.com', '--note', '');
  assert.equal((await rows()).find((r) => r.domain === 'example.com')?.note, null);
});

test('list shows _default first, then each domain; --json returns the rows', async (t) => {
  const { ok } = setup(t);
  await ok('set', 'zeta.example', '--sender', '3/1h');
  await ok('set', 'alpha.example', '--greylist', 'on', '--note', 'new customer');
  const text = await ok('list');
  const domains = text.split('\n').slice(2).filter(Boolean).map((l) => l.split('|')[1]!.trim());
  assert.deepEqual(domains, ['_default', 'alpha.example', 'zeta.example']);
  assert.match(text, /\| zeta\.example +\| sender=3\/1h +\| - +\|/);
  assert.match(text, /\| alpha\.example +\| - +\| enabled=on +\| new customer +\|/);
  const json = JSON.parse(await ok('list', '--json')) as Array<{ domain: string; limits: unknown }>;
  assert.deepEqual(json.map((r) => r.domain), ['_default', 'alpha.example', 'zeta.example']);
  assert.deepEqual(json[2]!.limits, { sender: { count: 3, periodSeconds: 3600 } });
});

test('delete removes a row once; _default can never be deleted', async (t) => {
  const { ok, cli, rows } = setup(t);
  await ok('set', 'example.com', '--sender', '3/1h');
  assert.match(await ok('delete', 'example.com'), /deleted the policy row of example\.com/);
  assert.deepEqual((await rows()).map((r) => r.domain), ['_default']);
  const again = await cli('delete', 'example.com');
  assert.equal(again.code, 1);
  assert.match(again.stderr, /no policy row for example\.com/);
  const base = await cli('delete', '_default');
  assert.equal(base.code, 2);
  assert.match(base.stderr, /_default cannot be deleted/);
  assert.deepEqual((await rows()).map((r) => r.domain), ['_default']);
});

test('the config file (-c) supplies the defaults show reports', async (t) => {
  const { ok, db } = setup(t);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-policy-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'ceerion.yaml');
  writeFileSync(file, `database:\n  schema: ${db.schema}\npolicyd:\n  limits:\n    clientIp: { count: 33, periodSeconds: 60 }\n  greylist:\n    delaySeconds: 120\n`);
  const shown = JSON.parse(await ok('show', 'example.com', '--json', '-c', file));
  assert.deepEqual(shown.policy.limits.clientIp, { count: 33, periodSeconds: 60 });
  assert.equal(shown.policy.greylist.delaySeconds, 120);
  assert.equal(shown.from.greylist.delaySeconds, 'config');
});

test('bad arguments are usage errors (exit 2) found before PostgreSQL is asked', async () => {
  // Nothing listens on this port: a command that reached the database would exit 1 instead.
  const env = { CEERION_DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/postgres` };
  const cases: Array<[string[], RegExp]> = [
    [['set', 'example.com', '--client-ip', '100'], /--client-ip: "100" is not a limit such as 100\/1h/],
    [['set', 'example.com', '--sender', '5K/1h'], /--sender: "5K\/1h" is not a limit/],
    [['set', 'example.com', '--recipient', '5/0s'], /--recipient: the period must be longer than 0/],
    [['set', 'example.com', '--sasl-user', '5/fortnight'], /--sasl-user: "fortnight" is not a duration/],
    [['set', 'example.com', '--greylist', 'maybe'], /--greylist: expected on, off or inherit/],
    [['set', 'example.com'], /nothing to set/],
    [['set', 'not a domain', '--sender', '1/1h'], /"not a domain" is not a domain name/],
    [['show', 'bad_domain'], /"bad_domain" is not a domain name/],
    [['delete', '_default'], /_default cannot be deleted/],
  ];
  const runs = await Promise.all(cases.map(([args]) => ceerion(['policy', ...args], env)));
  cases.forEach(([args, message], i) => {
    assert.equal(runs[i]!.code, 2, `${args.join(' ')}: ${runs[i]!.stderr}`);
    assert.match(runs[i]!.stderr, message);
  });
});

test('an unreachable database exits 1 with a clear message and no password', async () => {
  const port = await freePort();
  const env = { CEERION_DATABASE_URL: `postgres://postgres:hunter2@127.0.0.1:${port}/postgres`, CEERION_DATABASE_SCHEMA: 'ceerion_cli_test' };
  const commands = [['list'], ['show', 'example.com'], ['set', 'example.com', '--sender', '1/1h'], ['delete', 'example.com']];
  for (const [i, r] of (await Promise.all(commands.map((args) => ceerion(['policy', ...args], env)))).entries()) {
    assert.equal(r.code, 1, `${commands[i]!.join(' ')}: ${r.stderr}`);
    assert.equal(
      r.stderr.trim(),
      `ceerion policy: cannot use PostgreSQL at postgres://postgres:***@127.0.0.1:${port}/postgres (schema ceerion_cli_test): connect ECONNREFUSED 127.0.0.1:${port}`,
    );
    assert.equal(r.stdout, '');
  }
});
