/**
 * StoreLearner against PostgreSQL, and the whole path end to end: an HTTP learn request becomes
 * one event that a ModelSubscriber (as in each milter process) receives with its payload.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LearnHttpServer } from '../../../classifier/learn/http-server.ts';
import { StoreLearner } from '../../../classifier/learn/learner.ts';
import { migrateClassifier, PgModelStore } from '../../../classifier/model/store.ts';
import { ModelSubscriber } from '../../../classifier/model/subscriber.ts';
import type { LearnEvent } from '../../../classifier/model/types.ts';
import type { MailClass } from '../../../classifier/types.ts';
import { createPool } from '../../../core/db/pool.ts';
import { silentLogger } from '../../../core/log.ts';
import { testSchema } from '../../harness/postgres.ts';

/** Stands in for the classifier's feature extraction: any deterministic bytes do. */
const payload = (raw: Buffer, cls: MailClass) => Buffer.concat([Buffer.from(`${cls}:`), raw.subarray(0, 16)]);

test('StoreLearner: learned, duplicate, relearned; the content hash is the raw message SHA-256; users are scopes', async (t) => {
  const database = testSchema(t);
  const pool = createPool(database);
  t.after(() => pool.end());
  await migrateClassifier(pool);
  const store = new PgModelStore(pool);
  const learner = new StoreLearner({ store, payload });
  const raw = Buffer.from('Subject: hello\r\n\r\nworld\r\n');
  const hash = createHash('sha256').update(raw).digest('hex');

  const first = await learner.learn(raw, 'spam', {});
  assert.equal(first.status, 'learned');
  assert.equal(first.contentHash, hash);
  assert.match(first.eventId!, /^\d+$/);
  assert.deepEqual(await learner.learn(raw, 'spam', {}), { status: 'duplicate', contentHash: hash });
  const re = await learner.learn(raw, 'ham', {});
  assert.equal(re.status, 'relearned');
  assert.equal((await learner.learn(raw, 'spam', { user: 'alice' })).status, 'learned', 'per-user scope is separate');

  const events = await store.eventsSince(0n);
  assert.deepEqual(
    events.map((e) => [String(e.id), e.cls, e.previous, e.user, e.payload.toString()]),
    [
      [first.eventId, 'spam', null, null, `spam:${raw.subarray(0, 16)}`],
      [re.eventId, 'ham', 'spam', null, `ham:${raw.subarray(0, 16)}`],
      [String(events[2]!.id), 'spam', null, 'alice', `spam:${raw.subarray(0, 16)}`],
    ],
  );
});

test('end to end: POST /learn/spam reaches a subscribed process as one event', async (t) => {
  // Registered before testSchema's DROP SCHEMA so it runs first: close the subscriber, then the pool.
  const cleanups: Array<() => unknown> = [];
  t.after(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });
  const database = testSchema(t);
  const pool = createPool(database);
  cleanups.push(() => pool.end());
  await migrateClassifier(pool);
  const store = new PgModelStore(pool);
  const received: LearnEvent[] = [];
  const sub = await ModelSubscriber.start({ store, database, log: silentLogger, onModel: () => {}, onEvents: (e) => void received.push(...e) });
  cleanups.push(() => sub.close());
  const token = 'a-token-of-enough-length';
  const server = new LearnHttpServer({ learner: new StoreLearner({ store, payload }), token, port: 0 });
  const { port } = await server.start();
  cleanups.push(() => server.close());

  const raw = Buffer.from('Subject: win money\r\n\r\nclick here\r\n');
  const post = (path: string) =>
    fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: raw }).then(
      async (r) => ({ status: r.status, body: (await r.json()) as { status: string; eventId?: string } }),
    );
  const first = await post('/learn/spam?user=bob');
  assert.deepEqual([first.status, first.body.status], [200, 'learned']);
  assert.equal((await post('/learn/spam?user=bob')).body.status, 'duplicate');
  const deadline = Date.now() + 5_000;
  while (received.length === 0 && Date.now() < deadline) await sleep(10);
  await sleep(200);
  assert.equal(received.length, 1);
  assert.deepEqual([String(received[0]!.id), received[0]!.user, received[0]!.cls], [first.body.eventId, 'bob', 'spam']);
});
