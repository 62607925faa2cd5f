/**
 * Policy sessions over real sockets (TCP on port 0 and a unix socket in a temp dir), driven by our
 * own PolicyClient and, for garbage, by raw sockets: connection reuse, pipelining, bad input,
 * handler failures, idle timeout and graceful stop. The handler is the trivial one below.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { parseListen } from '../../core/listen.ts';
import { createLogger } from '../../core/log.ts';
import { PolicyClient } from '../../policyd/client.ts';
import { PolicyServer, type PolicyServerOptions } from '../../policyd/server.ts';
import type { PolicyAttributes, PolicyContext, PolicyHandler } from '../../policyd/types.ts';

type Gate = { open: () => void; opened: Promise<void> };
function gate(): Gate {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

/**
 * The trivial handler: answers `DUNNO <seq>`. `hold=K` waits until the test opens gate K;
 * `yield=N` gives the event loop N turns first; `fail=sync|async|action` throws or returns an
 * action Postfix must never see.
 */
class TrivialHandler implements PolicyHandler {
  readonly seen: Array<{ conn: string; requestNo: number; seq: string | undefined }> = [];
  last: PolicyAttributes | undefined;
  active = 0;
  maxActive = 0;
  private readonly held = new Map<string, Gate>();
  private readonly arrived = new Map<string, Gate>();

  request(attrs: PolicyAttributes, ctx: PolicyContext): Promise<string> {
    if (attrs.fail === 'sync') throw new Error('handler failed synchronously');
    return this.run(attrs, ctx);
  }

  /** Open gate `key` (the held request answers). */
  release(key: string): void {
    this.gate(this.held, key).open();
  }

  /** Resolves once a request with `hold=key` is inside the handler. */
  entered(key: string): Promise<void> {
    return this.gate(this.arrived, key).opened;
  }

  private async run(attrs: PolicyAttributes, ctx: PolicyContext): Promise<string> {
    this.maxActive = Math.max(this.maxActive, ++this.active);
    try {
      this.seen.push({ conn: ctx.conn, requestNo: ctx.requestNo, seq: attrs.seq });
      this.last = attrs;
      if (attrs.hold) {
        this.gate(this.arrived, attrs.hold).open();
        await this.gate(this.held, attrs.hold).opened;
      }
      for (let i = 0; i < Number(attrs.yield ?? 0); i++) await new Promise((r) => setImmediate(r));
      if (attrs.fail === 'async') throw new Error('handler failed');
      if (attrs.fail === 'action') return 'OK\nREJECT injected';
      if (attrs.note) ctx.log.info({ note: attrs.note }, 'handler note');
      return attrs.seq === undefined ? 'DUNNO' : `DUNNO ${attrs.seq}`;
    } finally {
      this.active--;
    }
  }

  private gate(map: Map<string, Gate>, key: string): Gate {
    let g = map.get(key);
    if (!g) map.set(key, (g = gate()));
    return g;
  }
}

type Transport = 'tcp' | 'unix';
type LogLine = Record<string, unknown> & { level: number; msg: string };

async function setup(t: TestContext, transport: Transport, over: Partial<PolicyServerOptions> = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ceerion-policyd-'));
  const lines: LogLine[] = [];
  const handler = new TrivialHandler();
  const registry = new Registry();
  const server = new PolicyServer({
    listen: transport === 'tcp' ? 'inet:127.0.0.1:0' : `unix:${path.join(dir, 'policy.sock')}`,
    maxLineBytes: 8192,
    maxAttributes: 128,
    idleTimeoutMs: 60_000,
    shutdownGraceMs: 1000,
    handler,
    log: createLogger('debug', 'policyd', { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) }),
    registry,
    ...over,
  });
  const address = await server.start();
  const clients: PolicyClient[] = [];
  t.after(async () => {
    for (const c of clients) c.destroy();
    await server.stop(200);
    rmSync(dir, { recursive: true, force: true });
  });
  const connect = async () => {
    const c = await PolicyClient.connect(address);
    clients.push(c);
    return c;
  };
  const metric = async (name: string, labels: Record<string, string> = {}) => {
    const values = (await registry.getSingleMetric(name)!.get()).values;
    return values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((sum, v) => sum + v.value, 0);
  };
  return { server, address, handler, lines, connect, metric };
}

/** Fails the test instead of hanging it when the server does not close the connection. */
async function closedWithin(closed: Promise<unknown>, what: string): Promise<void> {
  const outcome = await Promise.race([closed.then(() => 'closed' as const), sleep(5000, 'open' as const, { ref: false })]);
  assert.equal(outcome, 'closed', `${what}: connection still open`);
}

/**
 * Write `chunks` on a fresh raw connection; resolves with every byte the server sent before the
 * connection closed. With `hangUpAfter`, we close once that many replies have arrived.
 */
async function rawExchange(address: string, chunks: Array<string | Buffer>, what: string, hangUpAfter = 0): Promise<string> {
  const a = parseListen(address);
  const sock = a.kind === 'unix' ? net.connect(a.path) : net.connect(a.port, a.host);
  let received = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    received += d;
    if (hangUpAfter > 0 && received.split('\n\n').length > hangUpAfter) sock.end();
  });
  sock.on('error', () => {}); // EPIPE or ECONNRESET: the server dropped us mid-write, as intended
  await once(sock, 'connect');
  for (const c of chunks) sock.write(c);
  // Not events.once: it would reject on the 'error' that may precede 'close'.
  await closedWithin(new Promise((r) => sock.on('close', r)), what);
  return received;
}

const REQUEST = { request: 'smtpd_access_policy', protocol_state: 'RCPT', client_address: '192.0.2.7', sender: 'alice@example.org' };

for (const transport of ['tcp', 'unix'] as const) {
  // A lost reply would hang a test: fail it instead.
  describe(`over ${transport}`, { timeout: 60_000 }, () => {
    test('connection reuse: 1,000 requests on one connection, numbered 1…1000 in one conn', async (t) => {
      const { handler, connect, metric, address } = await setup(t, transport);
      assert.match(address, transport === 'tcp' ? /^inet:127\.0\.0\.1:[1-9]\d*$/ : /^unix:\/.*policy\.sock$/);
      const c = await connect();
      for (let i = 0; i < 1000; i++) assert.equal(await c.request({ ...REQUEST, seq: String(i) }), `DUNNO ${i}`);
      assert.deepEqual(
        handler.seen.map((s) => s.requestNo),
        Array.from({ length: 1000 }, (_, i) => i + 1),
      );
      assert.equal(new Set(handler.seen.map((s) => s.conn)).size, 1);
      assert.equal(await metric('ceerion_policyd_requests_total', { outcome: 'answered' }), 1000);
      assert.equal(await metric('ceerion_policyd_sessions_total'), 1);
      // A second connection has its own id and numbering.
      const c2 = await connect();
      assert.equal(await c2.request({ ...REQUEST, seq: 'x' }), 'DUNNO x');
      assert.notEqual(handler.seen.at(-1)!.conn, handler.seen[0]!.conn);
      assert.equal(handler.seen.at(-1)!.requestNo, 1);
    });

    test('a Postfix request with an SMTPUTF8 sender and CRLF line ends reaches the handler decoded', async (t) => {
      const { handler, address } = await setup(t, transport);
      const wire = Buffer.concat([
        Buffer.from('request=smtpd_access_policy\r\nprotocol_state=RCPT\r\nsender='),
        Buffer.from([0xe7, 0x94, 0xa8, 0x40, 0xc3, 0xa9, 0x2e, 0x65, 0x78]), // 用@é.ex
        Buffer.from('\r\nrecipient=bob@example.net\r\nx_unknown=kept\r\nsize=1\r\nsize=2\r\n\r\n'),
      ]);
      assert.equal(await rawExchange(address, [wire], 'postfix request', 1), 'action=DUNNO\n\n');
      assert.deepEqual(
        { ...handler.last },
        { request: 'smtpd_access_policy', protocol_state: 'RCPT', sender: '用@é.ex', recipient: 'bob@example.net', x_unknown: 'kept', size: '2' },
      );
      assert.equal(Object.getPrototypeOf(handler.last), null);
    });

    test('pipelining: 500 requests in one write are answered in order, one handler call at a time', async (t) => {
      const { handler, connect } = await setup(t, transport);
      const c = await connect();
      // Handlers that finish after 0, 1 or 2 event-loop turns: a later one could overtake an earlier one.
      const replies = await Promise.all(Array.from({ length: 500 }, (_, i) => c.request({ ...REQUEST, seq: String(i), yield: String((i * 7) % 3) })));
      assert.deepEqual(
        replies,
        Array.from({ length: 500 }, (_, i) => `DUNNO ${i}`),
      );
      assert.equal(handler.maxActive, 1);
      assert.equal(await c.request({ ...REQUEST, seq: 'after' }), 'DUNNO after');
    });

    test('garbage closes only its connection, with no reply and a logged reason; a concurrent session keeps working', async (t) => {
      const { handler, lines, connect, address, metric } = await setup(t, transport, { maxLineBytes: 256, maxAttributes: 16 });
      const good = await connect();
      assert.equal(await good.request({ ...REQUEST, seq: 'before' }), 'DUNNO before');
      const goodConn = handler.seen[0]!.conn;
      // The good session has a request with the handler while the garbage arrives.
      const inFlight = good.request({ ...REQUEST, seq: 'during', hold: 'during' });
      await handler.entered('during');

      const attrs17 = Array.from({ length: 17 }, (_, i) => `a${i}=1\n`).join('');
      const cases: Array<{ name: string; chunks: Array<string | Buffer>; reason: string; reply?: string }> = [
        { name: 'HTTP', chunks: ['GET / HTTP/1.1\r\nHost: policy\r\n\r\n'], reason: 'line without =' },
        { name: 'bad name', chunks: ['request=smtpd_access_policy\nclient address=1\n\n'], reason: 'bad attribute name' },
        { name: 'empty name', chunks: ['=x\n\n'], reason: 'empty attribute name' },
        { name: 'NUL byte', chunks: [Buffer.from('sender=a\0b\n\n')], reason: 'NUL byte' },
        { name: 'empty request', chunks: ['\n'], reason: 'empty request' },
        { name: '1 MiB line, no LF ever', chunks: [Buffer.alloc(1 << 20, 0x61)], reason: 'line too long' },
        { name: '257-byte line', chunks: [`sender=${'a'.repeat(250)}\n\n`], reason: 'line too long' },
        { name: '17 attributes', chunks: [`${attrs17}\n`], reason: 'too many attributes' },
        { name: 'garbage after a good request', chunks: ['request=smtpd_access_policy\n\nnonsense\n'], reason: 'line without =', reply: 'action=DUNNO\n\n' },
      ];
      for (const bad of cases) {
        assert.equal(await rawExchange(address, bad.chunks, bad.name), bad.reply ?? '', `${bad.name}: reply`);
      }
      const warns = lines.filter((l) => l.level === 40);
      assert.deepEqual(
        warns.map((l) => l.reason),
        cases.map((c) => c.reason),
      );
      for (const w of warns) {
        assert.equal(w.msg, 'policy protocol error; closing without a reply');
        assert.match(String(w.conn), /^[0-9a-f]{10}$/);
        assert.notEqual(w.conn, goodConn);
      }
      assert.equal(new Set(warns.map((w) => w.conn)).size, cases.length, 'one connection each');
      assert.equal(await metric('ceerion_policyd_errors_total', { kind: 'protocol' }), cases.length);

      handler.release('during');
      assert.equal(await inFlight, 'DUNNO during');
      assert.equal(await good.request({ ...REQUEST, seq: 'after' }), 'DUNNO after');
      assert.equal(good.closed, false);
    });

    test('the line cap: exactly maxLineBytes, sent in pieces, is fine; one byte more closes before any LF', async (t) => {
      const { address, lines } = await setup(t, transport, { maxLineBytes: 256 });
      const line = `sender=${'a'.repeat(256 - 7)}`;
      assert.equal(await rawExchange(address, [line.slice(0, 100), line.slice(100), '\n\nrequest=x\n\n=\n'], 'at the cap'), 'action=DUNNO\n\naction=DUNNO\n\n');
      assert.equal(await rawExchange(address, [`${line}a`], 'one over, no LF'), '');
      assert.deepEqual(
        lines.filter((l) => l.level === 40).map((l) => l.reason),
        ['empty attribute name', 'line too long'],
      );
    });

    test('the attribute cap: exactly maxAttributes is answered, one more closes', async (t) => {
      const { connect, address } = await setup(t, transport, { maxAttributes: 16 });
      const c = await connect();
      const sixteen = Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`x${i}`, 'v']));
      assert.equal(await c.request({ ...sixteen, seq: '16' }), 'DUNNO 16');
      const seventeen = Array.from({ length: 17 }, (_, i) => `x${i}=v\n`).join('');
      assert.equal(await rawExchange(address, [`${seventeen}\n`], '17 attributes'), '');
    });

    test('a handler that throws or answers garbage: no reply, that connection closes, an error is logged', async (t) => {
      const { connect, lines, metric } = await setup(t, transport);
      const other = await connect();
      for (const fail of ['sync', 'async', 'action']) {
        const c = await connect();
        assert.equal(await c.request({ ...REQUEST, seq: 'ok' }), 'DUNNO ok');
        await assert.rejects(c.request({ ...REQUEST, fail }), /^Error: policy connection closed with 1 request outstanding$/);
        await closedWithin(c.waitClosed(), fail);
        await assert.rejects(c.request(REQUEST), /policy connection is closed/);
        assert.equal(await other.request({ ...REQUEST, seq: fail }), `DUNNO ${fail}`);
      }
      const errors = lines.filter((l) => l.level === 50);
      assert.deepEqual(
        errors.map((l) => [l.msg, l.requestNo]),
        [
          ['policy handler failed; closing without a reply', 2],
          ['policy handler failed; closing without a reply', 2],
          ['policy handler failed; closing without a reply', 2],
        ],
      );
      assert.deepEqual(
        errors.map((l) => (l.err as { message: string }).message),
        ['handler failed synchronously', 'handler failed', 'policy action contains CR, LF or NUL: "OK\\nREJECT injected"'],
      );
      for (const e of errors) assert.match(String(e.conn), /^[0-9a-f]{10}$/);
      assert.equal(await metric('ceerion_policyd_requests_total', { outcome: 'failed' }), 3);
      assert.equal(await metric('ceerion_policyd_errors_total', { kind: 'handler' }), 3);
    });

    test('the handler logs through ctx.log, with conn and requestNo', async (t) => {
      const { connect, lines, handler } = await setup(t, transport);
      const c = await connect();
      await c.request({ ...REQUEST, note: 'first' });
      await c.request({ ...REQUEST, note: 'second' });
      const notes = lines.filter((l) => l.msg === 'handler note');
      assert.deepEqual(
        notes.map((l) => [l.note, l.conn, l.requestNo]),
        [
          ['first', handler.seen[0]!.conn, 1],
          ['second', handler.seen[0]!.conn, 2],
        ],
      );
    });

    test('idle timeout: an idle connection is closed; a request running longer than the timeout is not', async (t) => {
      const { connect, handler, lines, metric } = await setup(t, transport, { idleTimeoutMs: 100 });
      const slow = await connect();
      const reply = slow.request({ ...REQUEST, seq: 'slow', hold: 'slow' });
      await handler.entered('slow');
      await sleep(400); // four idle periods with the handler busy
      handler.release('slow');
      assert.equal(await reply, 'DUNNO slow');

      const idle = await connect();
      assert.equal(await idle.request({ ...REQUEST, seq: '1' }), 'DUNNO 1');
      await closedWithin(idle.waitClosed(), 'idle');
      await closedWithin(slow.waitClosed(), 'slow, once idle');
      const timeouts = lines.filter((l) => l.msg === 'idle policy connection timed out');
      assert.equal(timeouts.length, 2);
      assert.deepEqual(timeouts.map((l) => [l.level, l.idleMs]), [
        [30, 100],
        [30, 100],
      ]);
      assert.equal(await metric('ceerion_policyd_errors_total', { kind: 'idle_timeout' }), 2);
    });
  });
}

describe('stop', { timeout: 60_000 }, () => {
  for (const transport of ['tcp', 'unix'] as const) {
    test(`over ${transport}: a request in flight is answered, then the connection closes; no new connections`, async (t) => {
      const { server, connect, handler, address } = await setup(t, transport);
      const idle = await connect();
      assert.equal(await idle.request(REQUEST), 'DUNNO');
      const busy = await connect();
      const reply = busy.request({ ...REQUEST, seq: 'inflight', hold: 'stop' });
      await handler.entered('stop');

      const stopped = server.stop(10_000);
      await closedWithin(idle.waitClosed(), 'idle session at stop');
      await assert.rejects(PolicyClient.connect(address), /ECONNREFUSED|ENOENT/);
      assert.equal(busy.closed, false);
      handler.release('stop');
      assert.equal(await reply, 'DUNNO inflight');
      await closedWithin(busy.waitClosed(), 'busy session after its reply');
      await stopped;
      assert.equal(server.activeSessions, 0);
    });
  }

  test('after the grace period the rest is closed, and the client rejects its outstanding requests', async (t) => {
    const { server, connect, handler, lines } = await setup(t, 'tcp');
    const c = await connect();
    const outstanding = [c.request({ ...REQUEST, hold: 'never' }), c.request({ ...REQUEST, seq: 'queued' })];
    await handler.entered('never');
    await server.stop(50);
    for (const p of outstanding) await assert.rejects(p, /^Error: policy connection closed with 2 requests outstanding/);
    assert.equal(server.activeSessions, 0);
    assert.ok(lines.some((l) => l.msg === 'grace period over, closing remaining policy connections'));
  });
});
