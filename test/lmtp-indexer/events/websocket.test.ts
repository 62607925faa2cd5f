/**
 * `/events` end to end against real PostgreSQL: each "process" is its own pool, hub, endpoint and
 * HTTP server on port 0, all on one fresh schema. Live delivery, delivery across processes, resume
 * with ?since= while events are being committed (no gap, no duplicate at the switch-over), account
 * isolation, and the refusals before the upgrade (401, 400).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import type pg from 'pg';
import type { DatabaseConfig } from '../../../core/config/policyd.ts';
import { createPool } from '../../../core/db/pool.ts';
import { silentLogger } from '../../../core/log.ts';
import { createToken, revokeTokens } from '../../../lmtp-indexer/auth/tokens.ts';
import { EventsClient, EventsClientError, type EventFrame } from '../../../lmtp-indexer/events/client.ts';
import { EventHub } from '../../../lmtp-indexer/events/hub.ts';
import { insertEvent } from '../../../lmtp-indexer/events/store.ts';
import { eventsUpgrade, type EventsEndpointOptions } from '../../../lmtp-indexer/events/websocket.ts';
import { ApiServer } from '../../../lmtp-indexer/http/server.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import { testSchema } from '../../harness/postgres.ts';

const account = (): string => `u${randomBytes(4).toString('hex')}@example.org`;

/** One indexer process's event path: pool, hub, endpoint, HTTP server. */
async function startProcess(t: TestContext, db: DatabaseConfig, opts: Partial<EventsEndpointOptions> = {}) {
  const pool = createPool(db);
  await migrateIndex(pool);
  const hub = await EventHub.start({ pool, database: db, log: silentLogger });
  const events = eventsUpgrade({ pool, hub, ...opts });
  const api = new ApiServer({ host: '127.0.0.1', port: 0, routes: [], upgrades: [events], log: silentLogger });
  const port = await api.listen();
  t.after(async () => {
    // The order service.ts must follow: WebSockets first, or the HTTP server waits for them.
    await events.close();
    await api.stop();
    await hub.stop();
    await pool.end();
  });
  return { pool, hub, events, url: `http://127.0.0.1:${port}` };
}

async function insert(pool: pg.Pool, who: string, n = 1): Promise<number[]> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const seqs: number[] = [];
    for (let i = 0; i < n; i++) seqs.push(await insertEvent(client, { account: who, kind: 'new', payload: { owner: who } }));
    await client.query('COMMIT');
    return seqs;
  } finally {
    client.release();
  }
}

async function connect(t: TestContext, opts: Parameters<typeof EventsClient.connect>[0]): Promise<EventsClient> {
  const client = await EventsClient.connect(opts);
  t.after(() => client.close());
  return client;
}

const seqs = (events: EventFrame[]) => events.map((e) => e.seq);
const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

test('a live event reaches the client after a hello carrying the current seq', async (t) => {
  const db = testSchema(t);
  const p = await startProcess(t, db);
  const me = account();
  const token = await createToken(p.pool, me);
  await insert(p.pool, me, 2);
  const client = await connect(t, { url: p.url, token });
  assert.equal(client.helloSeq, 2);
  await insert(p.pool, me, 1);
  await client.waitForSeq(3);
  assert.deepEqual(seqs(client.events), [3]);
  const frame = client.events[0]!;
  assert.deepEqual(Object.keys(frame).sort(), ['createdAt', 'kind', 'messageRow', 'payload', 'seq']);
  assert.equal(frame.kind, 'new');
  assert.equal(frame.messageRow, null);
  assert.deepEqual(frame.payload, { owner: me });
  assert.ok(!Number.isNaN(Date.parse(frame.createdAt)));
  assert.deepEqual(client.unexpected, []);
});

test('?access_token= works as well as the header (browsers cannot set headers)', async (t) => {
  const p = await startProcess(t, testSchema(t));
  const me = account();
  const client = await connect(t, { url: p.url, token: await createToken(p.pool, me), tokenInQuery: true });
  await insert(p.pool, me, 1);
  await client.waitForSeq(1);
  assert.deepEqual(seqs(client.events), [1]);
});

test('two processes: an event committed through one reaches a client of the other', async (t) => {
  const db = testSchema(t);
  const a = await startProcess(t, db);
  const b = await startProcess(t, db);
  const me = account();
  const token = await createToken(a.pool, me);
  const onA = await connect(t, { url: a.url, token });
  const onB = await connect(t, { url: b.url, token });
  await insert(a.pool, me, 1);
  await insert(b.pool, me, 1);
  await Promise.all([onA.waitForSeq(2), onB.waitForSeq(2)]);
  assert.deepEqual(seqs(onA.events), [1, 2]);
  assert.deepEqual(seqs(onB.events), [1, 2]);
});

test('resume with ?since= while events are committed: exactly the missed ones, then live, no gap or duplicate', async (t) => {
  const db = testSchema(t);
  // A small replay batch so replays span several reads and the switch-over lands mid-stream.
  const a = await startProcess(t, db, { replayBatch: 7 });
  const b = await startProcess(t, db, { replayBatch: 7 });
  const me = account();
  const token = await createToken(a.pool, me);
  await insert(a.pool, me, 40);
  const TOTAL = 340;
  // One writer commits one event at a time, alternately through both processes' pools.
  const writer = (async () => {
    for (let i = 40; i < TOTAL; i++) await insert(i % 2 ? a.pool : b.pool, me, 1);
  })();
  const clients: Array<{ since: number; client: EventsClient }> = [];
  for (let i = 0; i < 12; i++) {
    const since = [0, 13, 39, 40][i % 4]!;
    clients.push({ since, client: await connect(t, { url: (i % 2 ? a : b).url, token, since }) });
    await new Promise((r) => setTimeout(r, i * 3)); // spread the connects over the write stream
  }
  await writer;
  for (const { since, client } of clients) {
    await client.waitForSeq(TOTAL);
    assert.deepEqual(seqs(client.events), range(since + 1, TOTAL), `since=${since}, hello ${client.helloSeq}`);
    assert.deepEqual(client.unexpected, []);
  }
});

test('a client that disconnects resumes from its cursor and misses nothing', async (t) => {
  const p = await startProcess(t, testSchema(t));
  const me = account();
  const token = await createToken(p.pool, me);
  const first = await connect(t, { url: p.url, token });
  await insert(p.pool, me, 5);
  await first.waitForSeq(5);
  await first.close();
  await insert(p.pool, me, 3); // while away
  const second = await first.resume();
  t.after(() => second.close());
  assert.equal(second.helloSeq, 8);
  await second.waitForSeq(8);
  await insert(p.pool, me, 1);
  await second.waitForSeq(9);
  assert.deepEqual(seqs(second.events), [6, 7, 8, 9]);
});

test("another account's events never reach a client, live or replayed", async (t) => {
  const p = await startProcess(t, testSchema(t));
  const [me, other] = [account(), account()];
  const [mine, theirs] = [await createToken(p.pool, me), await createToken(p.pool, other)];
  await insert(p.pool, other, 4);
  await insert(p.pool, me, 1);
  const live = await connect(t, { url: p.url, token: mine });
  const replayed = await connect(t, { url: p.url, token: mine, since: 0 });
  const theirClient = await connect(t, { url: p.url, token: theirs });
  await insert(p.pool, other, 3);
  await insert(p.pool, me, 1);
  await Promise.all([live.waitForSeq(2), replayed.waitForSeq(2), theirClient.waitForSeq(7)]);
  for (const c of [live, replayed]) assert.ok(c.events.every((e) => e.payload.owner === me));
  assert.deepEqual(seqs(replayed.events), [1, 2]);
  assert.deepEqual(seqs(live.events), [2]);
  assert.ok(theirClient.events.every((e) => e.payload.owner === other));
});

test('401 before the upgrade for a missing, malformed, unknown or revoked token; 400 for a bad since', async (t) => {
  const p = await startProcess(t, testSchema(t));
  const me = account();
  const token = await createToken(p.pool, me);
  const status = (opts: Partial<Parameters<typeof EventsClient.connect>[0]>) =>
    EventsClient.connect({ url: p.url, token, ...opts }).then(
      async (c) => (await c.close(), 101),
      (err: EventsClientError) => err.status,
    );
  assert.equal(await status({}), 101);
  assert.equal(await status({ token: '' }), 401);
  assert.equal(await status({ token: 'not-a-token' }), 401);
  assert.equal(await status({ token: `ceer_${'A'.repeat(43)}` }), 401);
  assert.equal(await status({ token: 'garbage', tokenInQuery: true }), 401);
  assert.equal(await status({ since: -1 }), 400);
  assert.equal(await status({ since: 1.5 }), 400);
  assert.equal(await status({ since: 2 ** 60 }), 400);
  await revokeTokens(p.pool, me);
  assert.equal(await status({}), 401);
  assert.equal(p.events.connections, 0);
});
