/**
 * PgPolicySource against real PostgreSQL: changes written through the repository reach
 * forDomain by LISTEN/NOTIFY; invalid rows are logged and ignored; and, with a private server
 * that the test stops and starts, the last policy keeps answering during an outage and changes
 * flow again once the server is back. Waits poll with a deadline; nothing asserts on timing.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { policydSchema, type DatabaseConfig } from '../../../core/config/policyd.ts';
import { createPool } from '../../../core/db/pool.ts';
import { createLogger } from '../../../core/log.ts';
import { createPolicySource, PgPolicySource, StaticPolicySource } from '../../../policyd/domain-policy/source.ts';
import { deleteDomainPolicy, migratePolicyDomains, setDomainPolicy } from '../../../policyd/domain-policy/repository.ts';
import { startPostgres, testSchema } from '../../harness/postgres.ts';

const policyd = policydSchema.parse({ limits: { clientIp: { count: 77, periodSeconds: 3600 } } });

type LogLine = { level: number; msg: string; [k: string]: unknown };

function captureLog() {
  const lines: LogLine[] = [];
  const log = createLogger('debug', 'test', { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { log, lines };
}

async function waitFor(what: string, check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function startSource(t: TestContext, database: DatabaseConfig) {
  const pool = createPool(database);
  const { log, lines } = captureLog();
  const source = await PgPolicySource.start({ pool, config: { database, policyd }, log, retryMinMs: 50, retryMaxMs: 200 });
  t.after(async () => {
    await source.close();
    await pool.end();
  });
  return { pool, source, lines };
}

const clientIp = (count: number) => ({ limits: { clientIp: { count, periodSeconds: 60 } } });

test('a change written through the repository reaches forDomain via NOTIFY', async (t) => {
  const { pool, source } = await startSource(t, testSchema(t));
  assert.equal(source.connected, true);
  // The migration's empty _default row: config values everywhere.
  assert.deepEqual(source.forDomain('example.com').limits.clientIp, { count: 77, periodSeconds: 3600 });
  assert.equal(source.forDomain(undefined), source.forDomain('unknown.example'));

  await setDomainPolicy(pool, 'example.com', clientIp(5));
  await waitFor('example.com to get 5/60s', () => source.forDomain('example.com').limits.clientIp.count === 5);
  // Any spelling Postfix may send finds the row.
  assert.equal(source.forDomain('EXAMPLE.com.').limits.clientIp.count, 5);
  assert.equal(source.forDomain('other.example').limits.clientIp.count, 77);

  await setDomainPolicy(pool, '_default', { greylist: { enabled: true } });
  await waitFor('_default greylisting to apply', () => source.forDomain('other.example').greylist.enabled);
  assert.equal(source.forDomain('example.com').greylist.enabled, true, 'example.com inherits _default');

  await deleteDomainPolicy(pool, 'example.com');
  await waitFor('example.com to fall back to _default', () => source.forDomain('example.com').limits.clientIp.count === 77);
});

test('an invalid row is logged, naming domain and key, and ignored: the domain gets _default', async (t) => {
  const { pool, source, lines } = await startSource(t, testSchema(t));
  await setDomainPolicy(pool, '_default', clientIp(40));
  // Written around the repository (which would refuse it), as a hand-made SQL change would be.
  await pool.query(`INSERT INTO policy_domains (domain, limits) VALUES ('bad.example', '{"clientIp": {"count": -1}}')`);
  await setDomainPolicy(pool, 'marker.example', clientIp(3));
  await waitFor('the marker row, written after the invalid one', () => source.forDomain('marker.example').limits.clientIp.count === 3);

  assert.equal(source.forDomain('bad.example'), source.forDomain('unlisted.example'));
  assert.equal(source.forDomain('bad.example').limits.clientIp.count, 40);
  const logged = lines.filter((l) => l.msg === 'ignoring invalid per-domain policy row' && l.domain === 'bad.example');
  assert.ok(logged.length >= 1, JSON.stringify(lines));
  assert.equal(logged[0]!.level, 50);
  assert.deepEqual(logged[0]!.keys, ['limits.clientIp.count']);
  assert.match(String(logged[0]!.err), /limits\.clientIp\.count = -1/);
});

test('PostgreSQL stopped: the last policy keeps answering, logged once; restarted: changes arrive again', async (t) => {
  const pg = await startPostgres();
  t.after(() => pg.close());
  const { pool, source, lines } = await startSource(t, { url: pg.url, schema: 'ceerion' });
  await setDomainPolicy(pool, 'example.com', clientIp(5));
  await waitFor('the first change', () => source.forDomain('example.com').limits.clientIp.count === 5);

  await pg.stop();
  // Several reconnect attempts fail while the server is down.
  await waitFor('three failed reconnects', () => source.failures >= 3);
  assert.equal(source.connected, false);
  assert.equal(source.forDomain('example.com').limits.clientIp.count, 5);
  assert.equal(source.forDomain('other.example').limits.clientIp.count, 77);
  const outages = lines.filter((l) => /PostgreSQL unavailable/.test(l.msg));
  assert.equal(outages.length, 1, JSON.stringify(outages));
  assert.equal(outages[0]!.level, 40);
  assert.match(outages[0]!.msg, /keeping the last loaded policy/);

  await pg.start();
  await waitFor('the source to reconnect', () => source.connected);
  assert.ok(lines.some((l) => l.msg === 'PostgreSQL is back: per-domain policy reloaded'));
  // The pool's connections died with the server; pg replaces them on the next query.
  await setDomainPolicy(pool, 'example.com', clientIp(9));
  await waitFor('the change after the restart', () => source.forDomain('example.com').limits.clientIp.count === 9);
});

test('PostgreSQL down at start: config defaults apply until the first load succeeds', async (t) => {
  const pg = await startPostgres();
  t.after(() => pg.close());
  const database = { url: pg.url, schema: 'ceerion' };
  await pg.stop();
  const { pool, source, lines } = await startSource(t, database);
  assert.equal(source.loads, 0);
  assert.equal(source.connected, false);
  assert.deepEqual(source.forDomain('example.com'), { limits: policyd.limits, greylist: policyd.greylist });
  assert.ok(lines.some((l) => /PostgreSQL unavailable, using the config defaults/.test(l.msg)));

  await pg.start();
  // The source migrates the fresh database itself on reconnecting; this runs concurrently with it.
  await migratePolicyDomains(pool);
  await setDomainPolicy(pool, '_default', clientIp(12));
  await waitFor('the _default row from the database', () => source.forDomain('example.com').limits.clientIp.count === 12);
  assert.equal(source.connected, true);
});

test('domainPolicy: false serves the config for every domain and never touches PostgreSQL', async () => {
  const unreachable = { url: 'postgres://postgres@127.0.0.1:1/postgres', schema: 'ceerion' };
  const pool = createPool(unreachable);
  const { log, lines } = captureLog();
  const config = { database: unreachable, policyd: { ...policyd, domainPolicy: false } };
  const source = await createPolicySource({ pool, config, log });
  assert.ok(source instanceof StaticPolicySource);
  assert.equal(source.forDomain('example.com').limits.clientIp.count, 77);
  assert.equal(source.forDomain('example.com'), source.forDomain(undefined));
  assert.deepEqual(lines, []);
  await source.close();
  await pool.end();
});
