/**
 * PgModelStore against the shared PostgreSQL, one schema per test: model versions and the
 * one-active rule (also against hand-written SQL), export/import with verification, idempotent
 * learning under concurrency, event ordering by commit, pruning, and the NOTIFY payloads.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { encodeModel, ModelFormatError } from '../../../classifier/model/container.ts';
import {
  CLASSIFIER_CHANNEL,
  contentHash,
  LearnInputError,
  migrateClassifier,
  ModelNotFoundError,
  PgModelStore,
} from '../../../classifier/model/store.ts';
import { connectDedicated, createPool } from '../../../core/db/pool.ts';
import { testSchema } from '../../harness/postgres.ts';

async function setup(t: TestContext) {
  const database = testSchema(t);
  const pool = createPool(database, { max: 20 });
  t.after(() => pool.end());
  assert.equal((await migrateClassifier(pool)).length, 1);
  assert.equal((await migrateClassifier(pool)).length, 0, 'a second run applies nothing');
  return { database, pool, store: new PgModelStore(pool) };
}

const model = (tag: string) => encodeModel(new Map([['bayes', Buffer.from(`bayes ${tag}`)], ['meta', Buffer.from(`{"tag":"${tag}"}`)]]));
const hash = (s: string) => contentHash(Buffer.from(s));
const payload = (s: string) => Buffer.from(`features of ${s}`);

test('versions: the first is active at once, later ones on request; exactly one is active', async (t) => {
  const { store } = await setup(t);
  assert.equal(await store.loadActive(), null);
  const v1 = await store.saveModel(model('one'), { lastEventId: 0n, note: 'first' });
  const v2 = await store.saveModel(model('two'), { lastEventId: 5n });
  assert.equal((await store.loadActive())!.version, v1, 'the first version is activated even without activate');

  const v3 = await store.saveModel(model('three'), { lastEventId: 7n, activate: true });
  const active = (await store.loadActive())!;
  assert.deepEqual({ ...active, blob: undefined }, { version: v3, lastEventId: 7n, blob: undefined });
  assert.ok(active.blob.equals(model('three')));

  await store.activate(v2);
  const list = await store.listVersions();
  assert.deepEqual(
    list.map((v) => [v.version, v.active, v.lastEventId, v.note]),
    [
      [v3, false, 7n, null],
      [v2, true, 5n, null],
      [v1, false, 0n, 'first'],
    ],
  );
  assert.equal(list[0]!.bytes, model('three').length);
  assert.match(list[0]!.sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(list[0]!.sections.map((s) => [s.name, s.bytes]), [['bayes', 11], ['meta', 15]]);
  await assert.rejects(store.activate(999), ModelNotFoundError);
  assert.equal((await store.loadActive())!.version, v2, 'a failed activation changes nothing');
});

test('the one-active rule holds against hand-written SQL and concurrent activations', async (t) => {
  const { pool, store } = await setup(t);
  const versions: number[] = [];
  for (const tag of ['a', 'b', 'c', 'd']) versions.push(await store.saveModel(model(tag), { lastEventId: 0n }));
  await assert.rejects(pool.query('UPDATE classifier_models SET active = true'), /classifier_models_one_active/);
  await assert.rejects(pool.query('UPDATE classifier_models SET active = false'), /no active version/);
  await assert.rejects(pool.query('DELETE FROM classifier_models WHERE active'), /no active version/);

  await Promise.all(Array.from({ length: 20 }, (_, i) => store.activate(versions[i % versions.length]!)));
  const { rows } = await pool.query('SELECT version FROM classifier_models WHERE active');
  assert.equal(rows.length, 1);
  // Concurrent saves with activate: still exactly one, and it is one of them.
  const saved = await Promise.all(['e', 'f', 'g'].map((tag) => store.saveModel(model(tag), { lastEventId: 0n, activate: true })));
  assert.ok(saved.includes((await store.loadActive())!.version));
  assert.equal((await pool.query('SELECT 1 FROM classifier_models WHERE active')).rowCount, 1);

  await store.activate(versions[0]!);
  assert.equal(await store.pruneModels(2), 4, 'keeps the newest two and the active one');
  assert.equal((await store.listVersions()).length, 3);
});

test('export and import: byte-exact copies, damaged input refused before anything is stored', async (t) => {
  const { store } = await setup(t);
  await assert.rejects(store.exportModel(), /no model is active/);
  const v1 = await store.saveModel(model('one'), { lastEventId: 0n });
  const v2 = await store.saveModel(model('two'), { lastEventId: 0n });
  assert.ok((await store.exportModel()).equals(model('one')));
  assert.ok((await store.exportModel(v2)).equals(model('two')));
  await assert.rejects(store.exportModel(77), ModelNotFoundError);

  const damaged = Buffer.from(model('x'));
  damaged[30]! ^= 1;
  await assert.rejects(store.importModel(damaged), (err: unknown) => err instanceof ModelFormatError && /SHA-256 mismatch/.test(err.message));
  await assert.rejects(store.saveModel(Buffer.from('garbage'), { lastEventId: 0n }), ModelFormatError);
  assert.equal((await store.listVersions()).length, 2);

  await store.recordLearn({ contentHash: hash('m1'), cls: 'spam', payload: payload('m1') });
  const { eventId } = (await store.recordLearn({ contentHash: hash('m2'), cls: 'ham', payload: payload('m2') })) as { eventId: bigint };
  const v3 = await store.importModel(await store.exportModel(v1), { activate: true, note: 'restored' });
  const active = (await store.loadActive())!;
  assert.equal(active.version, v3);
  // By default an imported model is taken as complete: only later learns are replayed onto it.
  assert.equal(active.lastEventId, eventId);
  const v4 = await store.importModel(model('y'), { lastEventId: 0n });
  assert.equal((await store.listVersions()).find((v) => v.version === v4)!.lastEventId, 0n);
});

test('recordLearn: learned, duplicate, relearned; scopes are independent', async (t) => {
  const { store } = await setup(t);
  const h = hash('message');
  const first = await store.recordLearn({ contentHash: h, cls: 'spam', payload: payload('a') });
  assert.equal(first.status, 'learned');
  assert.deepEqual(await store.recordLearn({ contentHash: h, cls: 'spam', payload: payload('a') }), { status: 'duplicate' });
  const re = await store.recordLearn({ contentHash: h, cls: 'ham', payload: payload('a') });
  assert.equal(re.status, 'relearned');
  assert.deepEqual(await store.recordLearn({ contentHash: h, cls: 'ham', payload: payload('a') }), { status: 'duplicate' });
  const alice = await store.recordLearn({ contentHash: h, scope: 'user:alice', cls: 'spam', payload: payload('b') });
  assert.equal(alice.status, 'learned');
  const dom = await store.recordLearn({ contentHash: h, scope: 'domain:example.com', cls: 'spam', payload: payload('c') });
  assert.equal(dom.status, 'learned');

  const events = await store.eventsSince(0n);
  assert.deepEqual(
    events.map((e) => [e.cls, e.previous, e.scope, e.user, e.payload.toString()]),
    [
      ['spam', null, '', null, 'features of a'],
      ['ham', 'spam', '', null, 'features of a'],
      ['spam', null, 'user:alice', 'alice', 'features of b'],
      ['spam', null, 'domain:example.com', null, 'features of c'],
    ],
  );
  assert.ok(events.every((e) => e.contentHash === h && e.createdAt instanceof Date));
  assert.deepEqual(events.map((e) => e.id), [first, re, alice, dom].map((r) => (r as { eventId: bigint }).eventId));
  assert.deepEqual((await store.eventsSince(events[1]!.id, 1)).map((e) => e.id), [events[2]!.id]);
  assert.equal(await store.lastEventId(), events[3]!.id);

  const bad = { contentHash: h, cls: 'spam' as const, payload: Buffer.alloc(0) };
  await assert.rejects(store.recordLearn({ ...bad, contentHash: 'ABC' }), LearnInputError);
  await assert.rejects(store.recordLearn({ ...bad, cls: 'eggs' as 'spam' }), LearnInputError);
  for (const scope of ['alice', 'user:', 'user:a b', 'team:x']) await assert.rejects(store.recordLearn({ ...bad, scope }), LearnInputError, scope);
});

test('concurrent recordLearn of one message writes exactly one event', async (t) => {
  const { pool, store } = await setup(t);
  const h = hash('racy');
  const results = await Promise.all(Array.from({ length: 12 }, () => store.recordLearn({ contentHash: h, cls: 'spam', payload: payload('r') })));
  assert.equal(results.filter((r) => r.status === 'learned').length, 1);
  assert.equal(results.filter((r) => r.status === 'duplicate').length, 11);
  assert.equal((await store.eventsSince(0n)).length, 1);

  // Opposite classes racing: every status and event agrees with the final row.
  const h2 = hash('flip-flop');
  const mixed = await Promise.all(
    Array.from({ length: 12 }, (_, i) => store.recordLearn({ contentHash: h2, cls: i % 2 ? 'spam' : 'ham', payload: payload('f') })),
  );
  const events = (await store.eventsSince(0n)).filter((e) => e.contentHash === h2);
  assert.equal(events.length, mixed.filter((r) => r.status !== 'duplicate').length);
  assert.equal(events[0]!.previous, null);
  for (let i = 1; i < events.length; i++) assert.equal(events[i]!.previous, events[i - 1]!.cls, 'each relearn undoes the one before');
  const { rows } = await pool.query('SELECT cls FROM classifier_learned WHERE content_hash = $1', [h2]);
  assert.equal(rows[0].cls, events.at(-1)!.cls);
});

test('event ids follow commit order: a later id is never visible before an earlier one', async (t) => {
  const { database, store } = await setup(t);
  const a = await connectDedicated(database);
  const b = await connectDedicated(database);
  t.after(() => Promise.all([a.end(), b.end()]));
  const insert = `INSERT INTO classifier_events (content_hash, cls, payload) VALUES ($1, 'spam', '\\x00') RETURNING id`;
  await a.query('BEGIN');
  const idA = BigInt((await a.query(insert, [hash('a')])).rows[0].id);
  // b's insert has to wait for a's commit before it may draw an id.
  const pendingB = b.query(insert, [hash('b')]);
  await sleep(200);
  assert.deepEqual(await store.eventsSince(0n), [], 'nothing visible while a is open');
  await a.query('COMMIT');
  const idB = BigInt((await pendingB).rows[0].id);
  assert.ok(idB > idA, `${idB} > ${idA}`);
  assert.deepEqual((await store.eventsSince(0n)).map((e) => e.id), [idA, idB]);
  // An id supplied by hand is replaced by one drawn under the lock.
  const { rows } = await a.query(`INSERT INTO classifier_events (id, content_hash, cls, payload) VALUES (1, $1, 'ham', '\\x00') RETURNING id`, [hash('c')]);
  assert.equal(BigInt(rows[0].id), idB + 1n);
});

test('pruneEvents never removes an event the active model does not include', async (t) => {
  const { store } = await setup(t);
  for (let i = 0; i < 6; i++) await store.recordLearn({ contentHash: hash(`m${i}`), cls: 'spam', payload: payload(`m${i}`) });
  const ids = (await store.eventsSince(0n)).map((e) => e.id);
  assert.equal(await store.pruneEvents(ids[5]! + 1n), 0, 'no active model: nothing is safe to drop');
  await store.saveModel(model('snap'), { lastEventId: ids[3]!, activate: true });
  assert.equal(await store.pruneEvents(ids[5]! + 1n), 4, 'clamped to the snapshot');
  assert.deepEqual((await store.eventsSince(0n)).map((e) => e.id), ids.slice(4));
  assert.equal(await store.pruneEvents(ids[5]! + 1n), 0);
  assert.equal(await store.lastEventId(), ids[5], 'pruning does not move the newest id');
});

test('readUpdates: a new model with the events after it; the caller model with the events after the cursor', async (t) => {
  const { store } = await setup(t);
  for (let i = 0; i < 4; i++) await store.recordLearn({ contentHash: hash(`u${i}`), cls: 'ham', payload: payload(`u${i}`) });
  const ids = (await store.eventsSince(0n)).map((e) => e.id);
  const none = await store.readUpdates({ version: null, afterId: 0n });
  assert.deepEqual([none.activeVersion, none.model, none.events.length], [null, null, 4]);

  const v = await store.saveModel(model('m'), { lastEventId: ids[1]! });
  const fresh = await store.readUpdates({ version: null, afterId: ids[3]! });
  assert.equal(fresh.model!.version, v);
  assert.deepEqual(fresh.events.map((e) => e.id), ids.slice(2), 'replayed from the model, not the caller cursor');
  const same = await store.readUpdates({ version: v, afterId: ids[2]! }, 10);
  assert.deepEqual([same.model, same.events.map((e) => e.id)], [null, [ids[3]]]);
  const skipped = await store.readUpdates({ version: null, afterId: ids[2]!, skipVersion: v });
  assert.deepEqual([skipped.activeVersion, skipped.model, skipped.events.length], [v, null, 1]);
});

test('NOTIFY: each event announces its id, each activation "model:VERSION"', async (t) => {
  const database = testSchema(t);
  // One connection, so its backend pid tells our notifications from other tests' on the channel.
  const pool = createPool(database, { max: 1 });
  t.after(() => pool.end());
  await migrateClassifier(pool);
  const store = new PgModelStore(pool);
  const pid = (await pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  const listener = await connectDedicated(database);
  t.after(() => listener.end());
  const got: string[] = [];
  listener.on('notification', (m: pg.Notification) => {
    if (m.channel === CLASSIFIER_CHANNEL && m.processId === pid) got.push(m.payload ?? '');
  });
  await listener.query(`LISTEN ${CLASSIFIER_CHANNEL}`);
  const r = (await store.recordLearn({ contentHash: hash('n'), cls: 'spam', payload: payload('n') })) as { eventId: bigint };
  await store.recordLearn({ contentHash: hash('n'), cls: 'spam', payload: payload('n') }); // duplicate: silent
  const v1 = await store.saveModel(model('1'), { lastEventId: 0n });
  const v2 = await store.saveModel(model('2'), { lastEventId: 0n }); // not activated: silent
  await store.activate(v2);
  const deadline = Date.now() + 5000;
  while (got.length < 3 && Date.now() < deadline) await sleep(20);
  await sleep(100);
  assert.equal((await pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, pid, 'still the same connection');
  assert.deepEqual(got, [String(r.eventId), `model:${v1}`, `model:${v2}`]);
});
