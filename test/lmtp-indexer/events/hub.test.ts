/**
 * EventHub against real PostgreSQL (one fresh schema per test): a subscription starts at the
 * account's current seq and then receives every later event once, in order; other accounts' events
 * never reach it; a 100-event transaction costs one read; two hubs on two pools both deliver; after
 * its LISTEN backend is terminated, the hub catches up on what was committed while it was deaf; a
 * failed read is retried; a throwing subscriber does not starve the others.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import type pg from 'pg';
import type { Timers } from '../../../core/db/listener.ts';
import { createPool } from '../../../core/db/pool.ts';
import { silentLogger } from '../../../core/log.ts';
import { EventHub, type EventHubOptions } from '../../../lmtp-indexer/events/hub.ts';
import { insertEvent } from '../../../lmtp-indexer/events/store.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import type { MailEvent } from '../../../lmtp-indexer/types.ts';
import { testSchema } from '../../harness/postgres.ts';

/** Random, so another test process's notifications (the channel is database-wide) never match. */
const account = (): string => `u${randomBytes(4).toString('hex')}@example.org`;

async function waitFor(what: string, done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function setup(t: TestContext, opts: Partial<EventHubOptions> = {}) {
  const db = testSchema(t);
  const pool = createPool(db);
  await migrateIndex(pool);
  const hub = await EventHub.start({ pool, database: db, log: silentLogger, ...opts });
  t.after(async () => {
    await hub.stop();
    await pool.end();
  });
  return { db, pool, hub };
}

/** `n` events for `who` in one transaction; returns their seqs. */
async function insert(pool: pg.Pool, who: string, n = 1, between?: (client: pg.PoolClient) => Promise<unknown>): Promise<number[]> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const seqs: number[] = [];
    for (let i = 0; i < n; i++) seqs.push(await insertEvent(client, { account: who, kind: 'new', payload: { i } }));
    await between?.(client);
    await client.query('COMMIT');
    return seqs;
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  } finally {
    client.release();
  }
}

const seqs = (events: MailEvent[]) => events.map((e) => e.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function manualTimers() {
  const pending = new Map<number, () => void>();
  let id = 0;
  const timers: Timers = {
    setTimeout: (fn) => (pending.set(++id, fn), id),
    clearTimeout: (h) => void pending.delete(h as number),
  };
  return {
    timers,
    get count() {
      return pending.size;
    },
    fireAll() {
      const due = [...pending.values()];
      pending.clear();
      for (const fn of due) fn();
    },
  };
}

test('a subscription starts at the current seq and then gets every later event once, in order', async (t) => {
  const { pool, hub } = await setup(t);
  const me = account();
  await insert(pool, me, 3);
  const got: MailEvent[] = [];
  const sub = await hub.subscribe(me, (e) => got.push(e));
  assert.equal(sub.seq, 3);
  await insert(pool, me, 2);
  await insert(pool, me, 1);
  await waitFor('seq 6', () => got.at(-1)?.seq === 6);
  assert.deepEqual(seqs(got), [4, 5, 6]);
  assert.equal(got[0]!.account, me);
  assert.deepEqual(got[0]!.payload, { i: 0 });
  sub.unsubscribe();
  assert.equal(hub.accountCount, 0, 'the last subscriber leaving drops the account');
  await insert(pool, me, 1);
  const again = await hub.subscribe(me, () => {});
  assert.equal(again.seq, 7);
  assert.equal(got.length, 3, 'nothing after unsubscribe');
});

test("another account's events never reach a subscriber", async (t) => {
  const { pool, hub } = await setup(t);
  const [me, other] = [account(), account()];
  const mine: MailEvent[] = [];
  const theirs: MailEvent[] = [];
  await hub.subscribe(me, (e) => mine.push(e));
  await hub.subscribe(other, (e) => theirs.push(e));
  await insert(pool, other, 5);
  await insert(pool, me, 1);
  await insert(pool, other, 1);
  await waitFor('all events', () => mine.length === 1 && theirs.length === 6);
  assert.deepEqual(
    mine.map((e) => [e.account, e.seq]),
    [[me, 1]],
  );
  assert.ok(theirs.every((e) => e.account === other));
});

test('a transaction of 100 events costs one read, and concurrent commits arrive in order, once each', async (t) => {
  const { pool, hub } = await setup(t);
  const me = account();
  const got: MailEvent[] = [];
  await hub.subscribe(me, (e) => got.push(e));
  const before = hub.stats.reads;
  await insert(pool, me, 100);
  await waitFor('100 events', () => got.length >= 100);
  assert.deepEqual(seqs(got), range(1, 100));
  // All 100 NOTIFYs arrive after the commit; the first read sees every row, the rest are ≤ the cursor.
  assert.equal(hub.stats.reads - before, 1);

  await Promise.all(Array.from({ length: 50 }, () => insert(pool, me, 2)));
  await waitFor('200 events', () => got.length >= 200);
  assert.deepEqual(seqs(got), range(1, 200));
});

test('two hubs on two pools (two processes): an event committed through one reaches the other', async (t) => {
  const { db, pool, hub } = await setup(t);
  const pool2 = createPool(db);
  const hub2 = await EventHub.start({ pool: pool2, database: db, log: silentLogger });
  t.after(async () => {
    await hub2.stop();
    await pool2.end();
  });
  const me = account();
  const one: MailEvent[] = [];
  const two: MailEvent[] = [];
  await hub.subscribe(me, (e) => one.push(e));
  await hub2.subscribe(me, (e) => two.push(e));
  await insert(pool, me, 1);
  await insert(pool2, me, 1);
  await waitFor('both hubs', () => one.length === 2 && two.length === 2);
  assert.deepEqual(seqs(one), [1, 2]);
  assert.deepEqual(seqs(two), [1, 2]);
});

test('after its LISTEN backend is terminated, the hub catches up on events committed meanwhile', async (t) => {
  const clock = manualTimers();
  const { pool, hub } = await setup(t, { timers: clock.timers, listener: { pingIntervalMs: 0 } });
  const [me, quiet] = [account(), account()];
  const got: MailEvent[] = [];
  await hub.subscribe(me, (e) => got.push(e));
  await hub.subscribe(quiet, () => {});
  await insert(pool, me, 1);
  await waitFor('seq 1', () => got.length === 1);

  await pool.query('SELECT pg_terminate_backend($1)', [hub.listenerPid!]);
  await waitFor('the drop to be noticed', () => !hub.listening && clock.count === 1);
  await insert(pool, me, 3);
  // No notification reached us and nothing polls: the events wait for the reconnect.
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(got.length, 1);

  const reads = hub.stats.reads;
  clock.fireAll(); // the reconnect
  await waitFor('the catch-up', () => got.length === 4);
  assert.deepEqual(seqs(got), [1, 2, 3, 4]);
  assert.equal(hub.stats.catchUps, 1);
  assert.equal(hub.stats.reads - reads, 1, 'only the account that moved is read');
  await insert(pool, me, 1);
  await waitFor('seq 5 live again', () => got.length === 5);
  assert.equal(got[4]!.seq, 5);
});

test('a failed read is retried, and the event is delivered once', async (t) => {
  const clock = manualTimers();
  const { pool, hub } = await setup(t, { timers: clock.timers, listener: { pingIntervalMs: 0 } });
  const me = account();
  const got: MailEvent[] = [];
  await hub.subscribe(me, (e) => got.push(e));
  // The table is gone when the notification arrives (it is sent at commit), so the read fails.
  await insert(pool, me, 2, (c) => c.query('ALTER TABLE mail_events RENAME TO mail_events_away'));
  await waitFor('the failed read', () => hub.stats.readErrors === 1 && clock.count === 1);
  assert.equal(got.length, 0);
  await pool.query('ALTER TABLE mail_events_away RENAME TO mail_events');
  clock.fireAll();
  await waitFor('the retry', () => got.length === 2);
  assert.deepEqual(seqs(got), [1, 2]);
});

test('a subscriber that throws does not keep events from the others', async (t) => {
  const { pool, hub } = await setup(t);
  const me = account();
  const got: MailEvent[] = [];
  await hub.subscribe(me, () => {
    throw new Error('broken subscriber');
  });
  await hub.subscribe(me, (e) => got.push(e));
  await insert(pool, me, 2);
  await waitFor('both events', () => got.length === 2);
  assert.deepEqual(seqs(got), [1, 2]);
});

test('subscribe after stop() is refused', async (t) => {
  const { hub } = await setup(t);
  await hub.stop();
  await assert.rejects(hub.subscribe(account(), () => {}), /stopped/);
});
