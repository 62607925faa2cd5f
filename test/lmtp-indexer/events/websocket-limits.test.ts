/**
 * `/events` limits and endings against real PostgreSQL: a client that stops reading is closed with
 * 4001 and resumes from its cursor without a gap; a peer that stops answering pings is terminated;
 * client data messages get 1003 and oversized ones 1009; an unusable cursor (ahead of the server,
 * or pointing at deleted events) gets 4410; the per-account cap answers 429; shutdown sends 1001;
 * a client stays connected through a PostgreSQL restart and receives what was committed while the
 * hub could not listen.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import type pg from 'pg';
import type { Timers } from '../../../core/db/listener.ts';
import { createPool } from '../../../core/db/pool.ts';
import { silentLogger } from '../../../core/log.ts';
import { createToken } from '../../../lmtp-indexer/auth/tokens.ts';
import { EventsClient, EventsClientError, type EventFrame } from '../../../lmtp-indexer/events/client.ts';
import { EventHub } from '../../../lmtp-indexer/events/hub.ts';
import { insertEvent } from '../../../lmtp-indexer/events/store.ts';
import { CLOSE_CURSOR_UNUSABLE, CLOSE_RESUME, eventsUpgrade, type EventsEndpointOptions } from '../../../lmtp-indexer/events/websocket.ts';
import { ApiServer } from '../../../lmtp-indexer/http/server.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import { startPostgres, testSchema } from '../../harness/postgres.ts';

const account = (): string => `u${randomBytes(4).toString('hex')}@example.org`;

async function startProcess(t: TestContext, opts: Partial<EventsEndpointOptions> = {}) {
  const db = testSchema(t);
  const pool = createPool(db);
  await migrateIndex(pool);
  const hub = await EventHub.start({ pool, database: db, log: silentLogger });
  const events = eventsUpgrade({ pool, hub, ...opts });
  const api = new ApiServer({ host: '127.0.0.1', port: 0, routes: [], upgrades: [events], log: silentLogger });
  const port = await api.listen();
  t.after(async () => {
    await events.close();
    await api.stop();
    await hub.stop();
    await pool.end();
  });
  const me = account();
  return { pool, hub, events, url: `http://127.0.0.1:${port}`, me, token: await createToken(pool, me) };
}

async function insert(pool: pg.Pool, who: string, n = 1, payload: Record<string, unknown> = {}): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    for (let i = 0; i < n; i++) await insertEvent(client, { account: who, kind: 'flags', payload });
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

async function waitFor(what: string, done: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const seqs = (events: EventFrame[]) => events.map((e) => e.seq);
const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

test('a client that stops reading is closed with 4001 and resumes from its cursor without a gap', async (t) => {
  const p = await startProcess(t, { maxBufferedBytes: 64 * 1024, closeTimeoutMs: 60_000 });
  const client = await EventsClient.connect({ url: p.url, token: p.token });
  client.socket.pause(); // stop reading: the kernel buffers fill, then ws's send buffer grows
  const big = { blob: 'x'.repeat(32 * 1024) };
  let total = 0;
  // Loopback socket buffers hold a few MB; 64 MB without a cut-off means the cap does not work.
  while (p.events.stats.resumeClosed === 0) {
    assert.ok(total < 2_000, 'the slow client was never cut off');
    await insert(p.pool, p.me, 20, big);
    total += 20;
  }
  client.socket.resume();
  const closed = await client.closed;
  assert.equal(closed.code, CLOSE_RESUME);
  assert.match(closed.reason, /since/);
  assert.ok(client.cursor < total, 'it was cut off before the end');
  assert.deepEqual(seqs(client.events), range(1, client.cursor));
  assert.equal(p.hub.accountCount, 0, 'the subscription was dropped at the cut-off');
  await waitFor('the server to count the close', () => p.events.connections === 0);

  const resumed = await client.resume();
  t.after(() => resumed.close());
  await insert(p.pool, p.me, 1);
  await resumed.waitForSeq(total + 1, 30_000);
  assert.deepEqual(seqs(resumed.events), range(client.cursor + 1, total + 1));
});

test('a peer that stops answering pings is terminated', async (t) => {
  const p = await startProcess(t, { pingIntervalMs: 50 });
  const client = await EventsClient.connect({ url: p.url, token: p.token, ws: { autoPong: false } });
  const closed = await client.closed;
  assert.equal(closed.code, 1006, 'terminated, not closed politely');
  assert.ok(p.events.stats.deadPeers >= 1);
  // A peer that does answer stays: it sees a live event after several ping intervals.
  const alive = await EventsClient.connect({ url: p.url, token: p.token });
  t.after(() => alive.close());
  await new Promise((r) => setTimeout(r, 300));
  await insert(p.pool, p.me, 1);
  await alive.waitForSeq(1);
  assert.equal(alive.socket.readyState, alive.socket.OPEN);
});

test('client data messages are refused: 1003 for any message, 1009 above maxPayload', async (t) => {
  const p = await startProcess(t, { maxPayloadBytes: 512 });
  const chatty = await EventsClient.connect({ url: p.url, token: p.token });
  chatty.socket.send(JSON.stringify({ resume: 3 }));
  assert.equal((await chatty.closed).code, 1003);
  const huge = await EventsClient.connect({ url: p.url, token: p.token });
  huge.socket.send('x'.repeat(513));
  assert.equal((await huge.closed).code, 1009);
});

test('a cursor ahead of the server or at deleted events gets 4410', async (t) => {
  const p = await startProcess(t);
  await insert(p.pool, p.me, 5);
  const ahead = await EventsClient.connect({ url: p.url, token: p.token, since: 9 });
  assert.equal(ahead.helloSeq, 5);
  assert.equal((await ahead.closed).code, CLOSE_CURSOR_UNUSABLE);
  assert.deepEqual(ahead.events, []);

  // Retention removed seqs 1-3: a client at 0 would silently miss them, so it is told instead.
  await p.pool.query('DELETE FROM mail_events WHERE account = $1 AND seq <= 3', [p.me]);
  const expired = await EventsClient.connect({ url: p.url, token: p.token, since: 0 });
  const closed = await expired.closed;
  assert.equal(closed.code, CLOSE_CURSOR_UNUSABLE);
  assert.match(closed.reason, /no longer kept/);
  assert.deepEqual(expired.events, []);
  // A cursor past the deleted ones still works.
  const fine = await EventsClient.connect({ url: p.url, token: p.token, since: 3 });
  t.after(() => fine.close());
  await fine.waitForSeq(5);
  assert.deepEqual(seqs(fine.events), [4, 5]);
});

test('connections per account are capped (429); another account is unaffected', async (t) => {
  const p = await startProcess(t, { maxConnectionsPerAccount: 2 });
  const open = [await EventsClient.connect({ url: p.url, token: p.token }), await EventsClient.connect({ url: p.url, token: p.token })];
  t.after(() => Promise.all(open.map((c) => c.close())));
  await assert.rejects(EventsClient.connect({ url: p.url, token: p.token }), (err: EventsClientError) => err.status === 429);
  const other = await EventsClient.connect({ url: p.url, token: await createToken(p.pool, account()) });
  await other.close();
  await open.pop()!.close();
  await waitFor('the server to count the close', () => p.events.connections === 1);
  const again = await EventsClient.connect({ url: p.url, token: p.token });
  await again.close();
});

test('shutdown closes clients with 1001 and refuses new ones with 503', async (t) => {
  const p = await startProcess(t);
  const client = await EventsClient.connect({ url: p.url, token: p.token });
  await p.events.close();
  const closed = await client.closed;
  assert.equal(closed.code, 1001);
  await assert.rejects(EventsClient.connect({ url: p.url, token: p.token }), (err: EventsClientError) => err.status === 503);
});

test('a client stays connected through a PostgreSQL restart and gets the events committed before the hub listened again', async (t) => {
  const server = await startPostgres();
  const db = { url: server.url, schema: 'ceerion' };
  const pool = createPool(db);
  await migrateIndex(pool);
  // Reconnects happen only when the test fires them, so the events below surely predate the LISTEN.
  const retries = new Map<number, () => void>();
  let ids = 0;
  const timers: Timers = { setTimeout: (fn) => (retries.set(++ids, fn), ids), clearTimeout: (id) => void retries.delete(id as number) };
  const hub = await EventHub.start({ pool, database: db, log: silentLogger, timers, listener: { pingIntervalMs: 0 } });
  const events = eventsUpgrade({ pool, hub });
  const api = new ApiServer({ host: '127.0.0.1', port: 0, routes: [], upgrades: [events], log: silentLogger });
  const url = `http://127.0.0.1:${await api.listen()}`;
  t.after(async () => {
    await events.close();
    await api.stop();
    await hub.stop();
    await pool.end();
    await server.close();
  });
  const me = account();
  const client = await EventsClient.connect({ url, token: await createToken(pool, me) });
  await insert(pool, me, 1);
  await client.waitForSeq(1);

  await server.stop();
  await waitFor('the hub to notice', () => !hub.listening && retries.size > 0);
  await server.start();
  await insert(pool, me, 2); // the pool reconnects on its own; the hub is still deaf
  assert.equal(client.socket.readyState, client.socket.OPEN, 'the WebSocket does not depend on PostgreSQL');
  while (!hub.listening) {
    const due = [...retries.values()];
    retries.clear();
    for (const fn of due) fn();
    await waitFor('a reconnect attempt', () => hub.listening || retries.size > 0);
  }
  await client.waitForSeq(3);
  assert.deepEqual(seqs(client.events), [1, 2, 3]);
  await client.close();
});
