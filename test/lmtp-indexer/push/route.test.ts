// POST /push over a real socket, through the indexer's HTTP server (ApiServer) as service.ts
// composes it: authentication, size cap, clear 400s for garbage, and a real apply.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { Writable } from 'node:stream';
import { createLogger, silentLogger, type Logger } from '../../../core/log.ts';
import { ApiServer } from '../../../lmtp-indexer/http/server.ts';
import { isLoopback, pushRoute, tokenMatches } from '../../../lmtp-indexer/push/route.ts';
import { eventually, insertIndexRow, migratedPool, readRow } from './helpers.ts';

const TOKEN = 'c0ffee-push-token';

async function serve(t: TestContext, pool: pg.Pool, token: string, maxBodyBytes?: number, log: Logger = silentLogger, answerWithinMs?: number): Promise<string> {
  const route = pushRoute({ pool, token, log, ...(maxBodyBytes ? { maxBodyBytes } : {}), ...(answerWithinMs !== undefined ? { answerWithinMs } : {}) });
  const api = new ApiServer({ host: '127.0.0.1', port: 0, routes: [route], upgrades: [], log: silentLogger });
  const port = await api.listen();
  t.after(async () => {
    route.close();
    await api.stop();
  });
  return `http://127.0.0.1:${port}/push`;
}

const post = (url: string, body: string, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }));

const auth = { authorization: `Bearer ${TOKEN}` };

test('with a token: 401 without it or with a wrong one, 200 with it', async (t) => {
  const { pool } = await migratedPool(t);
  const url = await serve(t, pool, TOKEN);
  const body = JSON.stringify({ v: 1, user: 'a@b', events: [] });
  assert.equal((await post(url, body)).status, 401);
  assert.equal((await post(url, body, { authorization: `Bearer ${TOKEN}x` })).status, 401);
  assert.equal((await post(url, body, { authorization: TOKEN })).status, 401);
  assert.equal((await post(url, body, { authorization: 'Basic Zm9vOmJhcg==' })).status, 401);
  const ok = await post(url, body, auth);
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, { placed: 0, moved: 0, flagged: 0, expunged: 0, renamed: 0, unmatched: 0, waiting: 0, held: false, skipped: 0 });
});

test('without a token: loopback clients are accepted as they are', async (t) => {
  const { pool } = await migratedPool(t);
  const url = await serve(t, pool, '');
  assert.equal((await post(url, JSON.stringify({ v: 1, user: 'a@b', events: [] }))).status, 200);
});

test('isLoopback and tokenMatches', () => {
  const table: Array<[string | undefined, boolean]> = [
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['10.0.0.1', false],
    ['::ffff:10.0.0.1', false],
    ['128.0.0.1', false],
    ['fe80::1', false],
    [undefined, false],
  ];
  for (const [address, want] of table) assert.equal(isLoopback(address), want, String(address));
  assert.equal(tokenMatches('abc', 'abc'), true);
  assert.equal(tokenMatches('abc', 'abd'), false);
  assert.equal(tokenMatches('abc', 'abcd'), false, 'different lengths compare without throwing');
  assert.equal(tokenMatches('', 'x'), false);
});

/** A logger whose JSON lines land in `lines`. */
function capturingLogger(lines: Array<Record<string, unknown>>): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return createLogger('info', 'test', sink);
}

test('garbage gets a 400 naming what is wrong (and logged); an oversized body a 413', async (t) => {
  const { pool } = await migratedPool(t);
  const lines: Array<Record<string, unknown>> = [];
  const url = await serve(t, pool, TOKEN, 4096, capturingLogger(lines));
  const table: Array<[string, number, RegExp]> = [
    ['{"v":1', 400, /not JSON/],
    ['"just a string"', 400, /^body: expected a JSON object/],
    [JSON.stringify({ v: 1, user: 'a@b', events: [{ name: 'MessageExpunge', mailbox: 'INBOX', uid: 'one', uid_validity: 1 }] }), 400, /^events\[0\]\.uid: /],
    [JSON.stringify({ v: 1, user: 'a@b', events: [{ name: 'MessageExpunge', mailbox: 'x'.repeat(5000), uid: 1, uid_validity: 1 }] }), 413, /over 4096 bytes/],
  ];
  for (const [body, status, reason] of table) {
    const r = await post(url, body, auth);
    assert.equal(r.status, status, body.slice(0, 40));
    assert.match(String(r.body.error), reason);
  }
  const refused = lines.filter((l) => l.msg === 'push: invalid events refused').map((l) => String(l.reason));
  assert.equal(refused.length, table.length);
  table.forEach(([, , reason], i) => assert.match(refused[i]!, reason));
  // The body itself is not logged (it may be large, and is not ours to keep).
  assert.ok(!JSON.stringify(lines).includes('x'.repeat(100)));
});

test('a valid POST is applied and answered with what happened', async (t) => {
  const { pool } = await migratedPool(t);
  const url = await serve(t, pool, TOKEN);
  const id = await insertIndexRow(pool, { account: 'alice@example.com', messageId: '<route@x>' });
  const events = [
    { name: 'MessageNew', mailbox: 'INBOX', uid: 3, uid_validity: 42, message_id: '<route@x>', flags: [], keywords: [] },
    { name: 'FlagsSet', mailbox: 'INBOX', uid: 3, uid_validity: 42, flags: ['\\Seen'], keywords: [] },
    { name: 'MessageNew', mailbox: 'INBOX', uid: 4, uid_validity: 42, message_id: '<not-yet@x>' },
    { name: 'MailboxCreate', mailbox: 'Junk' },
  ];
  const r = await post(url, JSON.stringify({ v: 1, user: 'Alice@Example.com', separator: '.', events }), auth);
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { placed: 1, moved: 0, flagged: 1, expunged: 0, renamed: 0, unmatched: 0, waiting: 1, held: false, skipped: 1 });
  assert.deepEqual(await readRow(pool, id), { mailbox: 'INBOX', uidValidity: 42, uid: 3, flags: ['\\Seen'], expunged: false });
});

test('a POST that cannot be applied in time is answered 202 pending and finished afterwards', async (t) => {
  const { pool } = await migratedPool(t);
  const url = await serve(t, pool, TOKEN, undefined, silentLogger, 200);
  const id = await insertIndexRow(pool, { account: 'alice@example.com', messageId: '<slow@x>' });
  // Another transaction holds the row: the apply waits for it as long as the test wants.
  const locker = await pool.connect();
  let released = false;
  const release = (): void => {
    if (!released) locker.release();
    released = true;
  };
  // Before pool.end() (an after-hook registered earlier, so run earlier), or it waits for ever.
  t.after(release);
  await locker.query('BEGIN');
  await locker.query('SELECT id FROM indexed_messages WHERE id = $1 FOR UPDATE', [id]);
  const events = [{ name: 'MessageNew', mailbox: 'INBOX', uid: 1, uid_validity: 9, message_id: '<slow@x>' }];
  const r = await post(url, JSON.stringify({ v: 1, user: 'alice@example.com', events }), auth);
  assert.deepEqual([r.status, r.body], [202, { pending: true, events: 1, skipped: 0 }]);
  assert.equal((await readRow(pool, id)).mailbox, null);
  await locker.query('COMMIT');
  release();
  await eventually('applied after the answer', async () => ((await readRow(pool, id)).mailbox === 'INBOX' ? true : undefined));
});
