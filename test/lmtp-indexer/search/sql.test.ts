/**
 * Search against real PostgreSQL: every filter, ranking, paging, account isolation, expunged rows,
 * the text search configuration, and user text that must never reach the SQL as SQL.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type pg from 'pg';
import { QueryError } from '../../../lmtp-indexer/search/query.ts';
import { SearchInputError, searchMessages, SearchTimeoutError, type SearchDeps, type SearchHit } from '../../../lmtp-indexer/search/service.ts';
import { ALICE, BOB, indexDb, insertMail, type Mail } from './fixtures.ts';

const deps = (pool: pg.Pool, extra: Partial<SearchDeps> = {}): SearchDeps => ({ pool, maxPageSize: 100, ...extra });
const search = async (pool: pg.Pool, query: string, extra: Partial<SearchDeps> & { account?: string; limit?: number } = {}) =>
  searchMessages(deps(pool, extra), { account: extra.account ?? ALICE, query, limit: extra.limit ?? 100 });
const ids = (hits: SearchHit[]) => hits.map((h) => h.id);

/** Inserts named rows and returns their ids by name. */
async function seed<K extends string>(pool: pg.Pool, rows: Record<K, Mail>): Promise<Record<K, number>> {
  const out = {} as Record<K, number>;
  for (const [name, mail] of Object.entries(rows) as Array<[K, Mail]>) out[name] = await insertMail(pool, mail);
  return out;
}

/** The ids a query finds, as a sorted set (order is tested separately). */
const found = async (pool: pg.Pool, query: string) => ids((await search(pool, query)).hits).sort((a, b) => a - b);
const sorted = (...xs: number[]) => [...xs].sort((a, b) => a - b);

test('each filter selects exactly its rows', async (t) => {
  const pool = await indexDb(t);
  const r = await seed(pool, {
    invoice: { subject: 'Quarterly invoice', body: 'please pay the quarterly report total', fromAddress: 'billing@acme.example', fromName: 'Acme Billing' },
    report: { subject: 'Report', body: 'report quarterly numbers attached', hasAttachment: true, fromAddress: 'carol.jones@corp.example', fromName: 'Carol Jones', cc: ['dave@corp.example'] },
    lunch: { subject: 'Lunch?', body: 'pizza on friday', fromAddress: 'dave@corp.example', fromName: 'Dave Brown', to: [ALICE, 'erin@corp.example'], mailbox: null, flags: ['\\Seen'] },
    junk: { subject: 'You won', body: 'claim your invoice prize', fromAddress: 'spammer@bad.example', fromName: null, mailbox: 'Junk', flags: ['\\Seen', '\\Flagged'] },
    archived: { subject: 'Old thread', body: 'quarterly planning', mailbox: 'Archive', receivedAt: '2023-06-30T23:59:59.999999Z', flags: ['\\Flagged'] },
    boundary: { subject: 'Midnight', body: 'exactly at midnight', receivedAt: '2023-07-01T00:00:00Z' },
  });
  await t.test('words and phrases', async () => {
    assert.deepEqual(await found(pool, 'invoice'), sorted(r.invoice, r.junk));
    assert.deepEqual(await found(pool, 'quarterly report'), sorted(r.invoice, r.report));
    // A phrase needs the words adjacent and in order.
    assert.deepEqual(await found(pool, '"quarterly report"'), [r.invoice]);
    assert.deepEqual(await found(pool, '"report quarterly"'), [r.report]);
    assert.deepEqual(await found(pool, 'quarterly -invoice'), sorted(r.report, r.archived));
    assert.deepEqual(await found(pool, 'quarterly -"quarterly report"'), sorted(r.report, r.archived));
    // Case and punctuation do not matter, as in the tsvector.
    assert.deepEqual(await found(pool, 'PIZZA!'), [r.lunch]);
  });
  await t.test('from: name words, addresses, local parts, domains', async () => {
    assert.deepEqual(await found(pool, 'from:billing@acme.example'), [r.invoice]);
    assert.deepEqual(await found(pool, 'from:carol'), [r.report]);
    assert.deepEqual(await found(pool, 'from:"Carol Jones"'), [r.report]);
    assert.deepEqual(await found(pool, 'from:jones'), [r.report]);
    // Whole words, not prefixes (a prefix would expand to every address starting with it).
    assert.deepEqual(await found(pool, 'from:jon'), []);
    assert.deepEqual(await found(pool, 'from:corp.example'), sorted(r.report, r.lunch));
    assert.deepEqual(await found(pool, 'from:@corp.example'), sorted(r.report, r.lunch));
    assert.deepEqual(await found(pool, 'from:carol.jones'), [r.report]);
    // dave is in report's Cc: the B-weighted lexeme matches, the column check rejects it.
    assert.deepEqual(await found(pool, 'from:dave'), [r.lunch]);
    assert.deepEqual(await found(pool, '-from:corp.example subject:report'), []);
    assert.deepEqual(await found(pool, 'from:nobody'), []);
  });
  await t.test('to: To and Cc, never From', async () => {
    assert.deepEqual(await found(pool, 'to:dave'), [r.report]);
    assert.deepEqual(await found(pool, 'to:erin@corp.example'), [r.lunch]);
    assert.deepEqual(await found(pool, 'to:corp.example'), sorted(r.report, r.lunch));
    assert.equal((await found(pool, `to:${ALICE}`)).length, 6);
  });
  await t.test('subject: the subject only', async () => {
    assert.deepEqual(await found(pool, 'subject:report'), [r.report]);
    assert.deepEqual(await found(pool, 'subject:"quarterly invoice"'), [r.invoice]);
    assert.deepEqual(await found(pool, 'subject:pizza'), []);
    assert.deepEqual(await found(pool, 'subject:?'), [r.lunch]);
  });
  await t.test('has:, in:, is:', async () => {
    assert.deepEqual(await found(pool, 'has:attachment'), [r.report]);
    assert.equal((await found(pool, '-has:attachment')).length, 5);
    // Mail Dovecot has not reported yet (mailbox NULL) counts as INBOX.
    assert.deepEqual(await found(pool, 'in:inbox'), sorted(r.invoice, r.report, r.lunch, r.boundary));
    assert.deepEqual(await found(pool, 'in:junk'), [r.junk]);
    assert.deepEqual(await found(pool, '-in:INBOX'), sorted(r.junk, r.archived));
    assert.deepEqual(await found(pool, '-in:junk -in:archive'), sorted(r.invoice, r.report, r.lunch, r.boundary));
    assert.deepEqual(await found(pool, 'is:read'), sorted(r.lunch, r.junk));
    assert.deepEqual(await found(pool, 'is:unread'), sorted(r.invoice, r.report, r.archived, r.boundary));
    assert.deepEqual(await found(pool, 'is:flagged'), sorted(r.junk, r.archived));
    assert.deepEqual(await found(pool, 'is:read is:unread'), []);
  });
  await t.test('before: is exclusive, after: inclusive, in UTC days', async () => {
    assert.deepEqual(await found(pool, 'before:2023-07-01'), [r.archived]);
    assert.deepEqual(await found(pool, 'after:2023-07-01 before:2023-07-02'), [r.boundary]);
    assert.deepEqual(await found(pool, '-after:2023-07-01'), [r.archived]);
  });
  await t.test('combined', async () => {
    assert.deepEqual(await found(pool, 'quarterly from:corp.example has:attachment in:inbox is:unread after:2024-01-01'), [r.report]);
  });
});

test("another account's mail and expunged mail never appear", async (t) => {
  const pool = await indexDb(t);
  const mine = await insertMail(pool, { subject: 'shared secret', body: 'the same words' });
  await insertMail(pool, { account: BOB, subject: 'shared secret', body: 'the same words', to: [ALICE] });
  await insertMail(pool, { subject: 'shared secret', body: 'the same words', expunged: true });
  for (const q of ['', 'shared', '"same words"', 'subject:secret', `to:${ALICE}`, 'from:sender', 'in:inbox', 'is:unread']) {
    assert.deepEqual(ids((await search(pool, q)).hits), [mine], q);
  }
  // The account is matched case-insensitively, as addresses are stored lower case.
  assert.deepEqual(ids((await search(pool, 'shared', { account: 'ALICE@Example.COM' })).hits), [mine]);
});

test('ranking: subject over body, then newest; no words: newest first', async (t) => {
  const pool = await indexDb(t);
  const body = await insertMail(pool, { subject: 'misc', body: 'budget mentioned once in a long body of other words entirely' });
  const subject = await insertMail(pool, { subject: 'budget', body: 'see subject' });
  const tieOld = await insertMail(pool, { subject: 'x', body: 'budget' });
  const tieNew = await insertMail(pool, { subject: 'x', body: 'budget' });
  const page = await search(pool, 'budget');
  assert.equal(page.order, 'rank');
  assert.deepEqual(ids(page.hits), [subject, tieNew, tieOld, body]);
  const scores = page.hits.map((h) => h.score!);
  assert.deepEqual([...scores].sort((a, b) => b - a), scores);
  assert.ok(scores[0]! > scores[1]!);
  const newest = await search(pool, 'from:sender');
  assert.equal(newest.order, 'date');
  assert.deepEqual(ids(newest.hits), [tieNew, tieOld, subject, body]);
  assert.ok(newest.hits.every((h) => h.score === null));
});

test('result fields', async (t) => {
  const pool = await indexDb(t);
  const id = await insertMail(pool, {
    subject: 'Fields', body: 'snippet text here', fromAddress: 'x@y.example', fromName: 'X Y', to: [ALICE], cc: ['c@y.example'],
    receivedAt: '2024-05-06T07:08:09.123456Z', hasAttachment: true, mailbox: 'Archive', uid: 42, flags: ['\\Seen'],
  });
  const [hit] = (await search(pool, 'fields')).hits;
  assert.deepEqual({ ...hit, score: typeof hit?.score }, {
    id, subject: 'Fields', from: { address: 'x@y.example', name: 'X Y' }, to: [ALICE], cc: ['c@y.example'],
    date: '2024-05-06T07:08:09.123456Z', sentAt: '2024-05-06T07:08:09.123Z', size: 1017, snippet: 'snippet text here',
    hasAttachment: true, mailbox: 'Archive', uid: 42, flags: ['\\Seen'], score: 'number',
  });
});

/** Follows nextCursor to the end; returns every page's ids. */
async function allPages(pool: pg.Pool, query: string, limit: number, extra: Partial<SearchDeps> = {}): Promise<number[][]> {
  const pages: number[][] = [];
  let cursor: string | undefined;
  do {
    const page = await searchMessages(deps(pool, extra), { account: ALICE, query, limit, cursor });
    pages.push(ids(page.hits));
    cursor = page.nextCursor ?? undefined;
    assert.ok(pages.length < 100, 'paging does not end');
  } while (cursor);
  return pages;
}

test('paging: every row once, in order, in both orders, with ties and same-microsecond rows', async (t) => {
  const pool = await indexDb(t);
  for (let i = 0; i < 23; i++) {
    // Groups of three share a received_at to the microsecond and the same text (equal scores).
    const receivedAt = new Date(Date.UTC(2024, 1, 1) + Math.floor(i / 3) * 1000).toISOString();
    await insertMail(pool, { subject: i % 2 ? 'paging test' : 'other', body: `paging ${'filler '.repeat(i % 4)}`, receivedAt });
  }
  for (const query of ['paging', 'from:sender', '']) {
    const whole = ids((await search(pool, query)).hits);
    assert.equal(whole.length, 23, query);
    for (const limit of [1, 4, 7, 23]) {
      const pages = await allPages(pool, query, limit);
      assert.deepEqual(pages.flat(), whole, `${query} by ${limit}`);
      assert.ok(pages.slice(0, -1).every((p) => p.length === limit));
    }
  }
});

test('paging: mail that arrives between pages neither repeats nor hides a row of the first result', async (t) => {
  const pool = await indexDb(t);
  for (let i = 0; i < 10; i++) await insertMail(pool, { subject: `arrival ${i}`, body: i % 3 ? 'arrival' : 'arrival arrival arrival' });
  for (const query of ['arrival', 'subject:arrival']) {
    const before = ids((await search(pool, query)).hits);
    const first = await searchMessages(deps(pool), { account: ALICE, query, limit: 4 });
    // New mail ranks first or is newest; it must not shift the later pages.
    await insertMail(pool, { subject: 'arrival', body: 'arrival arrival arrival arrival' });
    const second = await searchMessages(deps(pool), { account: ALICE, query, limit: 100, cursor: first.nextCursor! });
    assert.deepEqual([...ids(first.hits), ...ids(second.hits)], before, query);
  }
});

test('rank window: a ranked query scores only the newest rankWindow matches', async (t) => {
  const pool = await indexDb(t);
  const old = await insertMail(pool, { subject: 'window window window', body: 'window' });
  const newer = [];
  for (let i = 0; i < 3; i++) newer.push(await insertMail(pool, { subject: 'x', body: 'window' }));
  assert.deepEqual(ids((await search(pool, 'window', { rankWindow: 3 })).hits), newer.reverse());
  assert.equal(ids((await search(pool, 'window', { rankWindow: 4 })).hits)[0], old);
});

test('phrase candidates: a phrase is checked on at most phraseCandidates of the newest messages with its words', async (t) => {
  const pool = await indexDb(t);
  const phrase = await insertMail(pool, { subject: 'x', body: 'alpha beta' });
  // Newer messages with both words, not as the phrase.
  for (let i = 0; i < 2; i++) await insertMail(pool, { subject: 'x', body: 'beta alpha' });
  assert.deepEqual(ids((await search(pool, '"alpha beta"', { phraseCandidates: 2 })).hits), []);
  assert.deepEqual(ids((await search(pool, '"alpha beta"', { phraseCandidates: 3 })).hits), [phrase]);
});

test('the text search configuration is the one the rows were indexed with', async (t) => {
  const pool = await indexDb(t);
  const id = await insertMail(pool, { language: 'english', subject: 'Running meetings', body: 'the runners ran' });
  // English stems: "runs" finds "Running", "meeting" finds "meetings"; "the" is a stop word, ignored.
  assert.deepEqual(ids((await search(pool, 'runs meeting the')).hits), [id]);
  assert.deepEqual(ids((await search(pool, 'subject:run')).hits), [id]);
  // Only stop words or punctuation: no text condition at all, newest first.
  const page = await search(pool, 'the !!!');
  assert.deepEqual([page.order, ids(page.hits)], ['date', [id]]);
});

test('limit and cursor errors', async (t) => {
  const pool = await indexDb(t);
  for (let i = 0; i < 8; i++) await insertMail(pool, { body: 'capped' });
  assert.equal((await searchMessages(deps(pool, { maxPageSize: 5 }), { account: ALICE, query: 'capped', limit: 1000 })).hits.length, 5);
  assert.equal((await searchMessages(deps(pool), { account: ALICE, query: '' })).hits.length, 8);
  for (const limit of [0, -1, 2.5]) {
    await assert.rejects(searchMessages(deps(pool), { account: ALICE, query: '', limit }), SearchInputError);
  }
  await assert.rejects(searchMessages(deps(pool), { account: ALICE, query: '', cursor: 'garbage' }), /not one this server issued/);
  const { nextCursor } = await searchMessages(deps(pool), { account: ALICE, query: 'capped', limit: 2 });
  await assert.rejects(searchMessages(deps(pool), { account: ALICE, query: 'other', cursor: nextCursor! }), /belongs to another query/);
  const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(nextCursor!, 'base64url').toString()), score: '1); DROP TABLE x; --' })).toString('base64url');
  await assert.rejects(searchMessages(deps(pool), { account: ALICE, query: 'capped', cursor: forged }), SearchInputError);
  await assert.rejects(searchMessages(deps(pool), { account: ALICE, query: 'has:nothing' }), QueryError);
});

test('a search stuck past its deadline is cancelled by PostgreSQL', async (t) => {
  const pool = await indexDb(t);
  await insertMail(pool, { body: 'locked' });
  const locker = await pool.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE indexed_messages IN ACCESS EXCLUSIVE MODE');
    await assert.rejects(search(pool, 'locked', { timeoutMs: 200 }), SearchTimeoutError);
  } finally {
    await locker.query('ROLLBACK');
    locker.release();
  }
  // The pool's connections are usable afterwards: nothing is left inside a failed transaction.
  for (let i = 0; i < 4; i++) assert.equal((await search(pool, 'locked')).hits.length, 1);
});

const SQL_RUNS = 300;

test(`user text is data, never SQL (${SQL_RUNS} fuzzed queries against PostgreSQL)`, async (t) => {
  const pool = await indexDb(t);
  const id = await insertMail(pool, { subject: "it's a \\ test", body: "o'brien said: 'quoted' \\n back\\slash & | ! <-> :* ( )" });
  // Characters that mean something to SQL, LIKE, tsquery syntax or the query grammar.
  const nasty = fc.constantFrom("'", "''", '\\', '"', '%', '_', '&', '|', '!', '<->', ':*', ':A', '(', ')', ';', '--', '/*', '$1', 'from:', 'to:', 'subject:', '-', ' ', '@', '.', 'é', '\u0000');
  const arb = fc.array(fc.oneof(nasty, fc.string({ maxLength: 4 })), { maxLength: 20 }).map((p) => p.join(''));
  await fc.assert(
    fc.asyncProperty(arb, async (q) => {
      try {
        const page = await search(pool, q);
        assert.ok(page.hits.every((h) => h.id === id));
      } catch (err) {
        assert.ok(err instanceof QueryError, `${JSON.stringify(q)}: ${String(err)}`);
      }
    }),
    { numRuns: SQL_RUNS },
  );
  // Still one row in a table that still exists.
  assert.deepEqual(ids((await search(pool, "o'brien")).hits), [id]);
  assert.deepEqual(ids((await search(pool, 'from:% subject:"it\'s"')).hits), []);
  assert.deepEqual(ids((await search(pool, 'subject:"it\'s"')).hits), [id]);
});
