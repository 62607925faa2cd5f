/** GET /search over a real HTTP server on port 0 (the indexer's ApiServer) and real PostgreSQL. */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type pg from 'pg';
import { silentLogger } from '../../../core/log.ts';
import { createToken, revokeTokens } from '../../../lmtp-indexer/auth/tokens.ts';
import { ApiServer } from '../../../lmtp-indexer/http/server.ts';
import { searchRoute } from '../../../lmtp-indexer/search/route.ts';
import type { SearchPage } from '../../../lmtp-indexer/search/service.ts';
import { ALICE, BOB, indexDb, insertMail } from './fixtures.ts';

async function serve(t: TestContext, pool: pg.Pool, timeoutMs?: number): Promise<(path: string, token?: string) => Promise<{ status: number; body: Record<string, unknown>; headers: Headers }>> {
  const api = new ApiServer({ host: '127.0.0.1', port: 0, log: silentLogger, routes: [searchRoute({ pool, maxPageSize: 3, ...(timeoutMs ? { timeoutMs } : {}) })], upgrades: [] });
  const port = await api.listen();
  t.after(() => api.stop());
  return async (path, token) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
    return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
  };
}

test('GET /search: 401 without a live token', async (t) => {
  const pool = await indexDb(t);
  const get = await serve(t, pool);
  const none = await get('/search?q=x');
  assert.equal(none.status, 401);
  assert.match(String(none.body.error), /token is required/);
  assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
  for (const bad of ['nonsense', `ceer_${'A'.repeat(43)}`]) {
    const r = await get('/search?q=x', bad);
    assert.deepEqual([r.status, r.body.error], [401, 'the token is unknown or revoked']);
  }
  const token = await createToken(pool, ALICE);
  assert.equal((await get('/search', token)).status, 200);
  await revokeTokens(pool, ALICE);
  assert.equal((await get('/search', token)).status, 401);
});

test("GET /search: 200 with the token's account's mail only, by header or access_token", async (t) => {
  const pool = await indexDb(t);
  const get = await serve(t, pool);
  const mine = await insertMail(pool, { subject: 'quarterly numbers', body: 'see attached' });
  await insertMail(pool, { account: BOB, subject: 'quarterly numbers', body: 'see attached' });
  const token = await createToken(pool, ALICE, 'test');
  const byHeader = await get(`/search?q=${encodeURIComponent('subject:quarterly numbers')}`, token);
  assert.equal(byHeader.status, 200);
  assert.match(byHeader.headers.get('content-type') ?? '', /^application\/json/);
  const page = byHeader.body as unknown as SearchPage;
  assert.deepEqual([page.order, page.hits.map((h) => h.id), page.nextCursor], ['rank', [mine], null]);
  assert.equal(page.hits[0]!.subject, 'quarterly numbers');
  const byQuery = await get(`/search?q=quarterly&access_token=${token}`);
  assert.deepEqual((byQuery.body as unknown as SearchPage).hits.map((h) => h.id), [mine]);
});

test('GET /search: 400 names the problem (query, limit, cursor)', async (t) => {
  const pool = await indexDb(t);
  const get = await serve(t, pool);
  const token = await createToken(pool, ALICE);
  const cases: Array<[string, RegExp, string?]> = [
    ['/search?q=has:pdf', /has: expects attachment, not "pdf"/, 'bad_value'],
    ['/search?q=before:2024-02-30', /before: expects a date/, 'bad_value'],
    [`/search?q=${'x'.repeat(1100)}`, /1100 bytes long; the limit is 1024/, 'too_long'],
    ['/search?q=from:', /from: needs a value/, 'empty_value'],
    ['/search?limit=abc', /limit must be a whole number/],
    ['/search?limit=0', /limit must be a whole number from 1 to 3/],
    ['/search?cursor=zzz', /cursor is not one this server issued/],
  ];
  for (const [path, message, code] of cases) {
    const r = await get(path, token);
    assert.equal(r.status, 400, path);
    assert.match(String(r.body.error), message, path);
    assert.equal(r.body.code, code, path);
  }
});

test('GET /search: pages through nextCursor, capped at maxPageSize', async (t) => {
  const pool = await indexDb(t);
  const get = await serve(t, pool);
  const token = await createToken(pool, ALICE);
  const ids: number[] = [];
  for (let i = 0; i < 7; i++) ids.unshift(await insertMail(pool, { body: 'paged' }));
  const seen: number[] = [];
  let path = '/search?q=&limit=50';
  for (;;) {
    const page = (await get(path, token)).body as unknown as SearchPage;
    assert.ok(page.hits.length <= 3);
    seen.push(...page.hits.map((h) => h.id));
    if (!page.nextCursor) break;
    path = `/search?q=&limit=50&cursor=${page.nextCursor}`;
  }
  assert.deepEqual(seen, ids);
});

test('GET /search: 503 when PostgreSQL cancels the search at its deadline', async (t) => {
  const pool = await indexDb(t);
  const get = await serve(t, pool, 200);
  const token = await createToken(pool, ALICE);
  const locker = await pool.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE indexed_messages IN ACCESS EXCLUSIVE MODE');
    const r = await get('/search?q=anything', token);
    assert.equal(r.status, 503);
    assert.match(String(r.body.error), /longer than 200 ms/);
  } finally {
    await locker.query('ROLLBACK');
    locker.release();
  }
});
