/**
 * ModelSubscriber against real PostgreSQL: start-up replay, delivery to two subscribers of one
 * schema (in id order, exactly once, within 5 s), model switches, the poll as a safety net for a
 * lost NOTIFY, failing callbacks, and a private server that is stopped and restarted. Waits poll
 * with a deadline; the only timing asserted is the 5 s delivery bound.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { encodeModel } from '../../../classifier/model/container.ts';
import { contentHash, migrateClassifier, PgModelStore } from '../../../classifier/model/store.ts';
import { ModelSubscriber, type ModelSubscriberOptions } from '../../../classifier/model/subscriber.ts';
import type { LearnEvent } from '../../../classifier/model/types.ts';
import type { DatabaseConfig } from '../../../core/config/policyd.ts';
import { createPool } from '../../../core/db/pool.ts';
import { createLogger } from '../../../core/log.ts';
import { startPostgres, testSchema } from '../../harness/postgres.ts';

type LogLine = { level: number; msg: string; [k: string]: unknown };

async function waitFor(what: string, check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

type Defer = (fn: () => unknown) => void;

/**
 * Cleanups that run before testSchema's DROP SCHEMA (after-hooks run in registration order, so
 * this one is registered first) and in reverse: subscribers close before their pool and server,
 * instead of polling a dropped schema or a stopped server.
 */
function teardown(t: TestContext): Defer {
  const stack: Array<() => unknown> = [];
  t.after(async () => {
    while (stack.length) await stack.pop()!();
  });
  return (fn) => void stack.push(fn);
}

async function setupStore(defer: Defer, database: DatabaseConfig) {
  const pool = createPool(database, { max: 20 });
  defer(() => pool.end());
  await migrateClassifier(pool);
  return { pool, store: new PgModelStore(pool) };
}

/** A subscriber that records what it was told: 'model:V@L' and 'event:ID' in arrival order. */
async function subscribe(defer: Defer, store: PgModelStore, database: DatabaseConfig, extra: Partial<ModelSubscriberOptions> = {}) {
  const seen: string[] = [];
  const events: LearnEvent[] = [];
  const lines: LogLine[] = [];
  const log = createLogger('debug', 'test', { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  const sub = await ModelSubscriber.start({
    store,
    database,
    log,
    retryMinMs: 50,
    retryMaxMs: 200,
    onModel: (version, _blob, lastEventId) => void seen.push(`model:${version}@${lastEventId}`),
    onEvents: (batch) => {
      for (const e of batch) seen.push(`event:${e.id}`);
      events.push(...batch);
    },
    ...extra,
  });
  defer(() => sub.close());
  const eventIds = () => events.map((e) => e.id);
  return { sub, seen, events, eventIds, lines };
}

const model = (tag: string) => encodeModel(new Map([['meta', Buffer.from(tag)]]));
let counter = 0;
async function learn(store: PgModelStore, cls: 'spam' | 'ham' = 'spam'): Promise<bigint> {
  const tag = `message ${counter++} ${Math.random()}`;
  const r = await store.recordLearn({ contentHash: contentHash(Buffer.from(tag)), cls, payload: Buffer.from(tag) });
  assert.notEqual(r.status, 'duplicate');
  return (r as { eventId: bigint }).eventId;
}

test('start: the active model first, then only the events it does not include', async (t) => {
  const defer = teardown(t);
  const database = testSchema(t);
  const { store } = await setupStore(defer, database);
  const ids = [await learn(store), await learn(store), await learn(store), await learn(store)];
  const v = await store.saveModel(model('snap'), { lastEventId: ids[1]! });
  const s = await subscribe(defer, store, database);
  assert.deepEqual(s.seen, [`model:${v}@${ids[1]}`, `event:${ids[2]}`, `event:${ids[3]}`]);
  assert.equal(s.sub.version, v);
  assert.equal(s.sub.lastEventId, ids[3]);
  assert.equal(s.sub.connected, true);
  assert.equal(s.events[0]!.payload.toString().startsWith('message'), true);
});

test('no model yet: every event is replayed from the start', async (t) => {
  const defer = teardown(t);
  const database = testSchema(t);
  const { store } = await setupStore(defer, database);
  const ids = [await learn(store), await learn(store, 'ham')];
  const s = await subscribe(defer, store, database, { batchSize: 1 });
  assert.deepEqual(s.eventIds(), ids);
  assert.equal(s.sub.version, null);
});

test('two subscribers: every event reaches both within 5 s, in id order, exactly once', async (t) => {
  const defer = teardown(t);
  const database = testSchema(t);
  const { store } = await setupStore(defer, database);
  const a = await subscribe(defer, store, database);
  const b = await subscribe(defer, store, database);
  const expected: bigint[] = [];
  for (let round = 0; round < 3; round++) {
    // A burst of concurrent learns, then one on its own, timing each until both have it.
    const burst = await Promise.all(Array.from({ length: 15 }, () => learn(store)));
    const single = await learn(store, 'ham');
    const recorded = Date.now();
    expected.push(...burst.sort((x, y) => (x < y ? -1 : 1)), single);
    await waitFor('both subscribers to have everything', () => a.events.length === expected.length && b.events.length === expected.length, 5_000);
    assert.ok(Date.now() - recorded < 5_000);
  }
  await sleep(300); // anything extra would arrive now
  assert.deepEqual(a.eventIds(), expected);
  assert.deepEqual(b.eventIds(), expected);
});

test('a newly activated model is loaded and the events it lacks are replayed onto it', async (t) => {
  const defer = teardown(t);
  const database = testSchema(t);
  const { store } = await setupStore(defer, database);
  const v1 = await store.saveModel(model('one'), { lastEventId: 0n });
  const s = await subscribe(defer, store, database);
  const ids = [await learn(store), await learn(store), await learn(store), await learn(store)];
  await waitFor('four events', () => s.events.length === 4);
  const v2 = await store.saveModel(model('two'), { lastEventId: ids[1]!, activate: true });
  await waitFor('the new model', () => s.sub.version === v2);
  const more = await learn(store);
  await waitFor('the event after the switch', () => s.sub.lastEventId === more);
  assert.deepEqual(s.seen, [
    `model:${v1}@0`,
    ...ids.map((id) => `event:${id}`),
    `model:${v2}@${ids[1]}`,
    `event:${ids[2]}`,
    `event:${ids[3]}`,
    `event:${more}`,
  ]);
});

test('a lost NOTIFY: the poll (default 2 s) still delivers within 5 s', async (t) => {
  const defer = teardown(t);
  const database = testSchema(t);
  const { pool, store } = await setupStore(defer, database);
  const s = await subscribe(defer, store, database);
  await pool.query('ALTER TABLE classifier_events DISABLE TRIGGER classifier_events_notify');
  const id = await learn(store);
  const recorded = Date.now();
  await waitFor('the polled event', () => s.sub.lastEventId === id, 5_000);
  assert.ok(Date.now() - recorded < 5_000);
  assert.deepEqual(s.eventIds(), [id]);
});

test('callbacks that throw: failed events are skipped once, a refused model is not retried', async (t) => {
  const defer = teardown(t);
  const database = testSchema(t);
  const { store } = await setupStore(defer, database);
  let failEvents = 1;
  let refuse: number | undefined;
  const loaded: number[] = [];
  const applied: bigint[] = [];
  const s = await subscribe(defer, store, database, {
    pollMs: 100,
    onModel: (version) => {
      if (version === refuse) throw new Error('incompatible model');
      loaded.push(version);
    },
    onEvents: (batch) => {
      if (failEvents-- > 0) throw new Error('boom');
      applied.push(...batch.map((e) => e.id));
    },
  });
  const first = await learn(store);
  await waitFor('the failing batch to be passed', () => s.sub.lastEventId === first);
  const second = await learn(store);
  await waitFor('the next event', () => applied.includes(second));
  assert.deepEqual(applied, [second], 'the failed batch is not applied twice');
  assert.ok(s.lines.some((l) => l.msg === 'applying learn events failed; skipping them' && l.level === 50));

  const v1 = await store.saveModel(model('ok'), { lastEventId: second });
  await waitFor('v1', () => s.sub.version === v1);
  refuse = await store.saveModel(model('bad'), { lastEventId: 0n, activate: true });
  const third = await learn(store);
  await waitFor('the event after the refused model', () => applied.includes(third));
  await sleep(400); // several polls
  assert.equal(s.sub.version, v1, 'the model in memory stays');
  assert.equal(s.lines.filter((l) => /refused by onModel/.test(l.msg)).length, 1, 'the refused version is not fetched again');
  const v3 = await store.saveModel(model('good'), { lastEventId: third, activate: true });
  await waitFor('v3', () => s.sub.version === v3);
  assert.deepEqual(loaded, [v1, v3]);
});

test('PostgreSQL stopped and restarted: models stay, events after the restart reach both, none twice', async (t) => {
  const defer = teardown(t);
  const server = await startPostgres();
  defer(() => server.close());
  const database = { url: server.url, schema: 'ceerion' };
  const { store } = await setupStore(defer, database);
  const v = await store.saveModel(model('base'), { lastEventId: 0n });
  // A long poll, so catching up after the restart is the reconnect's doing.
  const subs = [await subscribe(defer, store, database, { pollMs: 60_000 }), await subscribe(defer, store, database, { pollMs: 60_000 })];
  const before = [await learn(store), await learn(store)];
  await waitFor('the first events', () => subs.every((s) => s.events.length === 2));

  await server.stop();
  await waitFor('failed reconnects', () => subs.every((s) => s.sub.stats.failures >= 3));
  for (const s of subs) {
    assert.equal(s.sub.connected, false);
    assert.equal(s.sub.version, v, 'the model in memory stays');
    const outages = s.lines.filter((l) => /PostgreSQL unavailable/.test(l.msg));
    assert.equal(outages.length, 1, 'logged once per outage');
    assert.equal(outages[0]!.level, 40);
  }

  await server.start();
  // Recorded at once, most likely before the subscribers reconnect: their NOTIFYs go nowhere.
  const after = [await learn(store), await learn(store, 'ham')];
  await waitFor('both to reconnect', () => subs.every((s) => s.sub.connected));
  after.push(...(await Promise.all([learn(store), learn(store), learn(store)])).sort((x, y) => (x < y ? -1 : 1)));
  await waitFor('the events after the restart', () => subs.every((s) => s.events.length === before.length + after.length), 5_000);
  await sleep(300);
  for (const s of subs) {
    assert.deepEqual(s.eventIds(), [...before, ...after]);
    assert.equal(s.seen.filter((x) => x.startsWith('model:')).length, 1, 'the model is not reloaded');
    assert.ok(s.lines.some((l) => l.msg === 'PostgreSQL is back: classifier caught up'));
  }
});

test('PostgreSQL down at start: start resolves without a model, which arrives once the server does', async (t) => {
  const defer = teardown(t);
  const server = await startPostgres();
  defer(() => server.close());
  const database = { url: server.url, schema: 'ceerion' };
  await server.stop();
  const pool: pg.Pool = createPool(database);
  defer(() => pool.end());
  const store = new PgModelStore(pool);
  const s = await subscribe(defer, store, database, { migratePool: pool });
  assert.equal(s.sub.version, null);
  assert.equal(s.sub.connected, false);
  await server.start();
  await waitFor('the subscriber to connect (and migrate)', () => s.sub.connected);
  const v = await store.saveModel(model('late'), { lastEventId: 0n });
  const id = await learn(store);
  await waitFor('model and event', () => s.sub.version === v && s.sub.lastEventId === id, 5_000);
});
