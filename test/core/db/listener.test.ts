/**
 * PgListener against real PostgreSQL: notifications on its channels only; after the backend is
 * terminated, the server restarts, or the connection is black-holed, it reconnects, runs
 * onReconnect with LISTEN already in place, and notifications flow again; the backoff doubles up
 * to its cap (driven by injected timers), logs one warning per outage, and resets after success.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { PgListener, type Timers } from '../../../core/db/listener.ts';
import { createPool } from '../../../core/db/pool.ts';
import { createLogger, silentLogger } from '../../../core/log.ts';
import { startPostgres, testSchema } from '../../harness/postgres.ts';

const channel = (): string => `test_ch_${randomBytes(5).toString('hex')}`;

async function waitFor(what: string, done: () => boolean, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function notifier(t: TestContext, url: string) {
  // Channels are database-wide: the schema does not matter, and `public` outlives a private server.
  const pool = createPool({ url, schema: 'public' });
  t.after(() => pool.end());
  return (ch: string, payload: string) => pool.query('SELECT pg_notify($1, $2)', [ch, payload]);
}

async function listen(t: TestContext, opts: Partial<Parameters<typeof PgListener.start>[0]> & { url: string; channels: string[] }) {
  const got: Array<[string, string | undefined]> = [];
  const listener = await PgListener.start({
    database: { url: opts.url, schema: 'public' },
    log: silentLogger,
    onNotification: (ch, payload) => got.push([ch, payload]),
    ...opts,
  });
  t.after(() => listener.stop());
  return { listener, got };
}

/** A TCP proxy to PostgreSQL that can refuse new connections or freeze the open ones (a black hole). */
async function tcpProxy(t: TestContext, port: number) {
  let refuse = false;
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((c) => {
    if (refuse) return void c.destroy();
    const u = net.connect(port, '127.0.0.1');
    const pair: [net.Socket, net.Socket] = [c, u];
    pairs.add(pair);
    const end = (): void => {
      pairs.delete(pair);
      c.destroy();
      u.destroy();
    };
    c.on('error', end).on('close', end);
    u.on('error', end).on('close', end);
    c.pipe(u);
    u.pipe(c);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const [c, u] of pairs) c.destroy(), u.destroy();
    server.close();
  });
  return {
    url: `postgres://postgres@127.0.0.1:${(server.address() as net.AddressInfo).port}/postgres`,
    setRefuse: (v: boolean) => void (refuse = v),
    /** Open connections stay open but nothing crosses them any more. */
    freeze: () => {
      for (const [c, u] of pairs) {
        c.unpipe(u);
        u.unpipe(c);
        c.pause();
        u.pause();
      }
    },
  };
}

/** Timers a test fires by hand; each setTimeout is recorded with its delay. */
function manualTimers() {
  const pending = new Map<number, { fn: () => void; ms: number }>();
  const delays: number[] = [];
  let id = 0;
  const timers: Timers = {
    setTimeout: (fn, ms) => {
      pending.set(++id, { fn, ms });
      delays.push(ms);
      return id;
    },
    clearTimeout: (h) => void pending.delete(h as number),
  };
  return {
    timers,
    delays,
    get count() {
      return pending.size;
    },
    fireAll: () => {
      const due = [...pending.values()];
      pending.clear();
      for (const t of due) t.fn();
    },
  };
}

const SHARED = 'postgres://postgres@127.0.0.1:5432/postgres';

test('delivers notifications on its channels and not on others', async (t) => {
  const [a, b, other] = [channel(), channel(), channel()];
  const notify = notifier(t, SHARED);
  const { listener, got } = await listen(t, { url: SHARED, channels: [a, b] });
  assert.equal(listener.connected, true);
  assert.equal(typeof listener.pid, 'number');
  await notify(other, 'x');
  await notify(a, 'one');
  await notify(b, 'two');
  await waitFor('two notifications', () => got.length >= 2);
  // The NOTIFY on `other` was sent first; had it been delivered it would have arrived first.
  assert.deepEqual(got, [
    [a, 'one'],
    [b, 'two'],
  ]);
});

test('refuses channel names that are not plain identifiers', async () => {
  await assert.rejects(
    PgListener.start({ database: { url: SHARED, schema: 'public' }, channels: ['x; DROP TABLE y'], log: silentLogger, onNotification: () => {} }),
    /not a lower-case SQL identifier/,
  );
});

test('after pg_terminate_backend it reconnects, with LISTEN in place before onReconnect runs', async (t) => {
  const ch = channel();
  const notify = notifier(t, SHARED);
  const admin = createPool(testSchema(t));
  t.after(() => admin.end());
  let reconnects = 0;
  const { listener, got } = await listen(t, {
    url: SHARED,
    channels: [ch],
    retryMinMs: 20,
    onReconnect: async () => {
      reconnects++;
      // Sent from inside the catch-up: heard only if LISTEN was issued first.
      await notify(ch, `during-catch-up-${reconnects}`);
    },
  });
  const firstPid = listener.pid!;
  await admin.query('SELECT pg_terminate_backend($1)', [firstPid]);
  await waitFor('the reconnect', () => listener.connected && listener.pid !== firstPid);
  await notify(ch, 'after');
  await waitFor('both notifications', () => got.length >= 2);
  assert.equal(reconnects, 1);
  assert.deepEqual(
    got.map(([, p]) => p),
    ['during-catch-up-1', 'after'],
  );
  assert.equal(listener.stats.failures, 1);
});

test('an onReconnect that fails drops the connection and runs again on the next one', async (t) => {
  const ch = channel();
  const admin = createPool(testSchema(t));
  t.after(() => admin.end());
  let calls = 0;
  const { listener } = await listen(t, {
    url: SHARED,
    channels: [ch],
    retryMinMs: 20,
    onReconnect: () => {
      calls++;
      if (calls === 1) throw new Error('catch-up read failed');
    },
  });
  await admin.query('SELECT pg_terminate_backend($1)', [listener.pid!]);
  await waitFor('a good reconnect', () => calls >= 2 && listener.connected);
  assert.equal(calls, 2);
  assert.equal(listener.stats.failures, 2);
});

test('backoff doubles to its cap, warns once per outage, resets after success, and stop() ends it', async (t) => {
  const ch = channel();
  const proxy = await tcpProxy(t, 5432);
  const clock = manualTimers();
  const lines: Array<{ level: number; msg: string }> = [];
  const log = createLogger('debug', 'test', { write: (l: string) => void lines.push(JSON.parse(l)) });
  proxy.setRefuse(true);
  let reconnects = 0;
  const { listener } = await listen(t, {
    url: proxy.url,
    channels: [ch],
    log,
    timers: clock.timers,
    retryMinMs: 10,
    retryMaxMs: 80,
    pingIntervalMs: 0,
    onReconnect: () => void reconnects++,
  });
  assert.equal(listener.connected, false, 'the first attempt fails but start() still resolves');
  for (let i = 0; i < 5; i++) {
    const before = clock.delays.length;
    clock.fireAll();
    await waitFor('the next retry to be scheduled', () => clock.delays.length > before);
  }
  assert.deepEqual(clock.delays, [10, 20, 40, 80, 80, 80]);
  const warns = lines.filter((l) => l.level === 40);
  assert.equal(warns.length, 1, 'one warning for the whole outage');
  assert.equal(lines.filter((l) => l.level === 20 && /still unavailable/.test(l.msg)).length, 5);

  proxy.setRefuse(false);
  clock.fireAll();
  await waitFor('the connection', () => listener.connected);
  assert.equal(reconnects, 1, 'a first success after a failed start() is a reconnect');
  assert.ok(lines.some((l) => l.level === 30 && /is back/.test(l.msg)));

  // A new outage starts from the first delay again.
  const admin = createPool(testSchema(t));
  t.after(() => admin.end());
  const delays = clock.delays.length;
  await admin.query('SELECT pg_terminate_backend($1)', [listener.pid!]);
  await waitFor('the retry after the drop', () => clock.delays.length > delays);
  assert.equal(clock.delays.at(-1), 10);

  await listener.stop();
  assert.equal(clock.count, 0, 'stop() leaves no timer behind');
});

test('a black-holed connection is declared dead by the liveness probe and replaced', async (t) => {
  const ch = channel();
  const proxy = await tcpProxy(t, 5432);
  const notify = notifier(t, SHARED);
  const { listener, got } = await listen(t, { url: proxy.url, channels: [ch], pingIntervalMs: 50, pingTimeoutMs: 200, retryMinMs: 20 });
  const firstPid = listener.pid;
  proxy.freeze();
  await waitFor('a new connection', () => listener.stats.reconnects >= 1 && listener.connected);
  assert.notEqual(listener.pid, firstPid);
  await notify(ch, 'through the new connection');
  await waitFor('the notification', () => got.length >= 1);
  assert.deepEqual(got, [[ch, 'through the new connection']]);
});

test('survives a server restart: reconnects and runs onReconnect', async (t) => {
  const server = await startPostgres();
  t.after(() => server.close());
  const ch = channel();
  let reconnects = 0;
  const { listener, got } = await listen(t, { url: server.url, channels: [ch], retryMinMs: 20, retryMaxMs: 200, onReconnect: () => void reconnects++ });
  await server.stop();
  await waitFor('the drop to be noticed', () => !listener.connected);
  await server.start();
  await waitFor('the reconnect', () => listener.connected);
  assert.equal(reconnects, 1);
  const notify = notifier(t, server.url);
  await notify(ch, 'back');
  await waitFor('the notification', () => got.length >= 1);
  assert.deepEqual(got, [[ch, 'back']]);
});
