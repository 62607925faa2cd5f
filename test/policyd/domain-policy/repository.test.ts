/**
 * The repository against the real PostgreSQL (one schema per test): writes are validated before
 * anything is stored, merge into the row atomically, and never make a row policyd would ignore.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { createPool } from '../../../core/db/pool.ts';
import {
  deleteDomainPolicy,
  getDomainPolicy,
  listDomainPolicies,
  migratePolicyDomains,
  normalizeDomain,
  PolicyInputError,
  setDomainPolicy,
} from '../../../policyd/domain-policy/repository.ts';
import { testSchema } from '../../harness/postgres.ts';

async function setup(t: TestContext) {
  const pool = createPool(testSchema(t));
  t.after(() => pool.end());
  await migratePolicyDomains(pool);
  return pool;
}

test('the migration creates an empty _default row; get and list return validated rows', async (t) => {
  const pool = await setup(t);
  const base = await getDomainPolicy(pool, '_default');
  assert.deepEqual({ ...base, updatedAt: undefined }, {
    domain: '_default',
    limits: {},
    greylist: {},
    note: 'applies to every domain without a row of its own; cannot be deleted',
    updatedAt: undefined,
  });
  assert.equal(await getDomainPolicy(pool, 'example.com'), undefined);
  await setDomainPolicy(pool, 'Example.com.', { limits: { sender: { count: 4, periodSeconds: 60 } } });
  const list = await listDomainPolicies(pool);
  assert.deepEqual(list.map((r) => [r.domain, r.limits]), [
    ['_default', {}],
    ['example.com', { sender: { count: 4, periodSeconds: 60 } }],
  ]);
});

test('invalid input is refused with the key named, and nothing is written', async (t) => {
  const pool = await setup(t);
  const bad: Array<[Parameters<typeof setDomainPolicy>[2], RegExp]> = [
    [{ limits: { clientIp: { count: -1, periodSeconds: 60 } } }, /^limits\.clientIp\.count: Number must be greater than or equal to 0$/],
    [{ limits: { clientIp: { count: 1, periodSeconds: 0 } } }, /^limits\.clientIp\.periodSeconds: /],
    [{ greylist: { delaySeconds: 1.5 } }, /^greylist\.delaySeconds: Expected integer/],
    [{ greylist: { bogus: true } as never }, /^greylist\.bogus: unknown key$/],
    [{ limits: { bogus: null } as never }, /^limits\.bogus: unknown key$/],
  ];
  for (const [patch, message] of bad) {
    await assert.rejects(setDomainPolicy(pool, 'example.com', patch), (err: Error) => err instanceof PolicyInputError && message.test(err.message));
  }
  await assert.rejects(setDomainPolicy(pool, 'exa mple.com', { note: 'x' }), /"exa mple\.com" is not a domain name/);
  assert.deepEqual((await listDomainPolicies(pool)).map((r) => r.domain), ['_default']);
});

test('concurrent writers to different keys of a new row both win', async (t) => {
  const pool = await setup(t);
  await Promise.all([
    setDomainPolicy(pool, 'example.com', { limits: { sender: { count: 1, periodSeconds: 60 } } }),
    setDomainPolicy(pool, 'example.com', { limits: { recipient: { count: 2, periodSeconds: 60 } } }),
    setDomainPolicy(pool, 'example.com', { greylist: { enabled: true } }),
  ]);
  const row = await getDomainPolicy(pool, 'example.com');
  assert.deepEqual(row?.limits, { sender: { count: 1, periodSeconds: 60 }, recipient: { count: 2, periodSeconds: 60 } });
  assert.deepEqual(row?.greylist, { enabled: true });
});

test('null removes a key; the note is kept unless given; updated_at moves on every change', async (t) => {
  const pool = await setup(t);
  await setDomainPolicy(pool, 'example.com', { limits: { sender: { count: 1, periodSeconds: 60 } }, greylist: { enabled: true }, note: 'n' });
  const second = await setDomainPolicy(pool, 'example.com', { limits: { sender: null }, greylist: { delaySeconds: 30 } });
  assert.deepEqual([second.limits, second.greylist, second.note], [{}, { enabled: true, delaySeconds: 30 }, 'n']);
  // Written by hand, with plain SQL: the trigger still stamps the change.
  await pool.query(`UPDATE policy_domains SET updated_at = '2000-01-01', note = 'old' WHERE domain = 'example.com'`);
  assert.ok((await getDomainPolicy(pool, 'example.com'))!.updatedAt.getFullYear() > 2000);
});

test('a hand-made invalid row is reported, and a write that would keep it invalid is refused', async (t) => {
  const pool = await setup(t);
  await pool.query(`INSERT INTO policy_domains (domain, greylist) VALUES ('bad.example', '{"enabled": "yes"}')`);
  const row = await getDomainPolicy(pool, 'bad.example');
  assert.match(row?.invalid ?? '', /invalid policy for bad\.example: greylist\.enabled = "yes": Expected boolean/);
  await assert.rejects(setDomainPolicy(pool, 'bad.example', { note: 'x' }), /greylist\.enabled = "yes".*ceerion policy delete bad\.example/);
  assert.equal((await getDomainPolicy(pool, 'bad.example'))?.note, null, 'the refused write was rolled back');
  // Setting the broken key itself repairs the row.
  const fixed = await setDomainPolicy(pool, 'bad.example', { greylist: { enabled: true } });
  assert.equal(fixed.invalid, undefined);
  assert.deepEqual(fixed.greylist, { enabled: true });
});

test('the database refuses upper-case domains and non-object JSON, whoever writes', async (t) => {
  const pool = await setup(t);
  await assert.rejects(pool.query(`INSERT INTO policy_domains (domain) VALUES ('Example.com')`), /policy_domains_domain_check/);
  await assert.rejects(pool.query(`INSERT INTO policy_domains (domain, limits) VALUES ('example.com', '[]')`), /policy_domains_limits_check/);
});

test('delete removes a domain row and reports whether there was one; _default is refused', async (t) => {
  const pool = await setup(t);
  await setDomainPolicy(pool, 'example.com', { note: 'x' });
  assert.equal(await deleteDomainPolicy(pool, 'EXAMPLE.com'), true);
  assert.equal(await deleteDomainPolicy(pool, 'example.com'), false);
  await assert.rejects(deleteDomainPolicy(pool, '_default'), PolicyInputError);
  assert.ok(await getDomainPolicy(pool, '_default'));
});

test('normalizeDomain lower-cases, drops the root dot, and keeps _default', () => {
  assert.equal(normalizeDomain('Mail.Example.COM.'), 'mail.example.com');
  assert.equal(normalizeDomain('_default'), '_default');
  assert.throws(() => normalizeDomain('_DEFAULT'), PolicyInputError);
  assert.throws(() => normalizeDomain('localhost'), PolicyInputError);
});
