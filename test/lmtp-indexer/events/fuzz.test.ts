/**
 * Fuzzing what a client controls on `/events` (fast-check). The endpoint takes no client messages;
 * the input is the upgrade request (query string, Authorization header) and whatever frames a client
 * sends anyway.
 * - parseEventsRequest never throws, and anything it accepts has a token and a canonical seq.
 * - Over a real socket, the status of arbitrary upgrade requests is exactly what parseEventsRequest
 *   and the token table predict (101, 400 or 401), and the server keeps serving.
 * - Arbitrary client frames get 1003 (or 1009 above maxPayload), never a crash.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { createPool } from '../../../core/db/pool.ts';
import { silentLogger } from '../../../core/log.ts';
import { createToken } from '../../../lmtp-indexer/auth/tokens.ts';
import { EventsClient } from '../../../lmtp-indexer/events/client.ts';
import { EventHub } from '../../../lmtp-indexer/events/hub.ts';
import { eventsUpgrade, parseEventsRequest } from '../../../lmtp-indexer/events/websocket.ts';
import { ApiServer } from '../../../lmtp-indexer/http/server.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import { testSchema } from '../../harness/postgres.ts';

const PURE_RUNS = 5_000;
const WIRE_RUNS = 300;
const FRAME_RUNS = 150;

/** Pieces that steer the parser into its interesting corners, mixed with arbitrary text. */
const queryPiece = fc.oneof(
  fc.constantFrom('since=', 'access_token=', 'since', '&', '=', '%', '%2', '%zz', '%00', '%26', '+', '-', '0', '00', '7', '1e3', '0x1'),
  fc.constantFrom('9007199254740991', '9007199254740992', '99999999999999999', ' 1', '1 ', '１'),
  fc.constantFrom(`ceer_${'A'.repeat(43)}`, 'Bearer x'),
  fc.nat().map(String),
  fc.constantFrom('since=-1', 'since=x', 'since=1&since=2', 'since=01', 'since=1.5', 'since=%31', 'since=+1'),
  fc.nat().map((n) => `since=${n}&`),
  fc.string({ maxLength: 12 }),
  fc.fullUnicodeString({ maxLength: 6 }),
);
const query = fc.array(queryPiece, { maxLength: 10 }).map((parts) => parts.join(''));
const authorization = fc.option(
  fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.constantFrom('Bearer ', 'bearer  ', 'Basic abc'),
    fc.string({ maxLength: 60 }).map((s) => `Bearer ${s}`),
  ),
  { nil: undefined },
);

/** What a client may put in a request-target: everything else percent-encoded (a raw `%` stays). */
const target = (q: string): string => `/events?${q.replace(/[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]/gu, (c) => encodeURIComponent(c))}`;

test(`parseEventsRequest never throws and accepts only a token with a canonical seq (${PURE_RUNS} runs per property)`, () => {
  fc.assert(
    fc.property(query, authorization, (q, auth) => {
      const url = new URL(target(q), 'http://localhost');
      const r = parseEventsRequest(auth === undefined ? {} : { authorization: auth }, url);
      if (!r.ok) {
        assert.ok(r.status === 400 || r.status === 401);
        return;
      }
      // Any non-empty string: verifyToken checks the format before it asks the database.
      assert.ok(r.token.length > 0);
      if (r.since !== undefined) {
        assert.ok(Number.isSafeInteger(r.since) && r.since >= 0);
        assert.equal(url.searchParams.get('since'), String(r.since), 'only the canonical spelling is accepted');
        assert.equal(url.searchParams.getAll('since').length, 1);
      }
    }),
    { numRuns: PURE_RUNS },
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (n) => {
      const r = parseEventsRequest({ authorization: 'Bearer t' }, new URL(`/events?since=${n}`, 'http://localhost'));
      assert.deepEqual(r, { ok: true, token: 't', since: n });
    }),
    { numRuns: PURE_RUNS },
  );
});

/** A raw upgrade request; resolves with the status code of the answer. */
function upgradeStatus(port: number, path: string, auth: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let head = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      head += chunk;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      if (m && head.includes('\r\n\r\n')) {
        socket.destroy();
        resolve(Number(m[1]));
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`closed without a status: ${JSON.stringify(head)}`)));
    const lines = [
      `GET ${path} HTTP/1.1`,
      'Host: 127.0.0.1',
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
      'Sec-WebSocket-Version: 13',
      ...(auth === undefined ? [] : [`Authorization: ${auth}`]),
    ];
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  });
}

/** Header values must be visible ASCII for the request to reach us at all. */
const headerSafe = (s: string): string => s.replace(/[^\x20-\x7e]/g, '').trim();

test(`upgrade requests over the wire: status as predicted, server unharmed (${WIRE_RUNS} runs)`, async (t) => {
  const db = testSchema(t);
  const pool = createPool(db);
  await migrateIndex(pool);
  const hub = await EventHub.start({ pool, database: db, log: silentLogger });
  const events = eventsUpgrade({ pool, hub, maxPayloadBytes: 512 });
  const api = new ApiServer({ host: '127.0.0.1', port: 0, routes: [], upgrades: [events], log: silentLogger });
  const port = await api.listen();
  t.after(async () => {
    await events.close();
    await api.stop();
    await hub.stop();
    await pool.end();
  });
  const token = await createToken(pool, `fuzz${randomBytes(3).toString('hex')}@example.org`);
  const withToken = fc.oneof(query, query.map((q) => `${q}&access_token=${token}`), query.map((q) => `access_token=${token}&${q}`));
  const auth = fc.oneof(authorization.map((a) => (a === undefined ? a : headerSafe(a))), fc.constant(`Bearer ${token}`));

  await fc.assert(
    fc.asyncProperty(withToken, auth, async (q, a) => {
      const path = target(q);
      const parsed = parseEventsRequest(a === undefined ? {} : { authorization: a }, new URL(path, 'http://localhost'));
      const expected = !parsed.ok ? parsed.status : parsed.token === token ? 101 : 401;
      assert.equal(await upgradeStatus(port, path, a), expected, `${path} with ${JSON.stringify(a)}`);
    }),
    { numRuns: WIRE_RUNS },
  );
  // Still serving after all that.
  const client = await EventsClient.connect({ url: `http://127.0.0.1:${port}`, token });
  assert.equal(client.helloSeq, 0);
  await client.close();

  await t.test(`arbitrary client frames get 1003, or 1009 above maxPayload (${FRAME_RUNS} runs)`, async () => {
    const frame = fc.oneof(fc.fullUnicodeString({ maxLength: 400 }), fc.uint8Array({ maxLength: 1_100 }), fc.constant(''));
    await fc.assert(
      fc.asyncProperty(frame, async (data) => {
        const c = await EventsClient.connect({ url: `http://127.0.0.1:${port}`, token });
        c.socket.send(data);
        const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
        assert.equal((await c.closed).code, size > 512 ? 1009 : 1003);
      }),
      { numRuns: FRAME_RUNS },
    );
  });
});
