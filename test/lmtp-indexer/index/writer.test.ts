/**
 * IndexWriter against the real PostgreSQL (a fresh schema per test): one row and one 'new'
 * event per recipient however often a message is written, full-text search over what was
 * written, PostgreSQL's tsvector limits, dirty text, and entries PostgreSQL refuses.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { createPool } from '../../../core/db/pool.ts';
import { eventsAfter } from '../../../lmtp-indexer/events/store.ts';
import { Backlog } from '../../../lmtp-indexer/index/backlog.ts';
import { parseForIndex } from '../../../lmtp-indexer/index/parse.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import { IndexWriter } from '../../../lmtp-indexer/index/writer.ts';
import type { IndexRecord } from '../../../lmtp-indexer/types.ts';
import { testSchema } from '../../harness/postgres.ts';

const LIMITS = { maxTextBytes: 1024 * 1024, snippetChars: 200, maxParts: 500, maxDepth: 20, maxHeaderBytes: 256 * 1024 };

async function setup(t: TestContext) {
  const pool = createPool(testSchema(t));
  t.after(() => pool.end());
  await migrateIndex(pool);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-writer-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const backlog = await Backlog.open({ dir, log });
  t.after(() => backlog.close());
  const writer = new IndexWriter({ pool, backlog, log, replayIntervalMs: 60_000 });
  t.after(() => writer.stop());
  return { pool, dir, backlog, writer, lines };
}

let counter = 0;
/** Records for `accounts` from a real parse of `eml`; the hash stands for the message bytes. */
async function records(eml: string, accounts: string[], language = 'simple'): Promise<IndexRecord[]> {
  const parsed = await parseForIndex(Readable.from([Buffer.from(eml.replace(/\n/g, '\r\n'))]), LIMITS);
  const contentSha256 = (++counter).toString(16).padStart(64, 'a');
  return accounts.map((account) => ({ ...parsed, account, contentSha256, sizeBytes: eml.length, receivedAt: '2024-03-01T12:00:00.000Z', language }));
}

const REPORT = `Received: by mx.example.org (Postfix) with ESMTPS id 4Qid123;
 Fri, 1 Mar 2024 12:00:00 +0000
X-Spam-Status: No, score=0.05
Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=sender.example; dkim=pass; dmarc=pass
From: Alice Liddell <alice@sender.example>
To: bob@example.org, carol@example.org
Subject: Quarterly report
Message-ID: <q1@sender.example>
Date: Fri, 1 Mar 2024 12:59:00 +0100
Content-Type: multipart/mixed; boundary=B

--B
Content-Type: text/plain

The figures for the third quarter are attached.
--B
Content-Type: application/pdf; name=figures.pdf
Content-Transfer-Encoding: base64

AAAA
--B--
`;

test('a message for two recipients: one row and one new event each, however often it is written', async (t) => {
  const { pool, writer } = await setup(t);
  const recs = await records(REPORT, ['bob@example.org', 'Carol@Example.org']);
  assert.deepEqual(await writer.write(recs), { status: 'indexed', inserted: 2 });
  assert.deepEqual(await writer.write(recs), { status: 'indexed', inserted: 0 });
  // A retry for one recipient plus a new one: only the new one is inserted.
  const third = recs.map((r, i) => (i === 1 ? { ...r, account: 'dave@example.org' } : r));
  assert.deepEqual(await writer.write(third), { status: 'indexed', inserted: 1 });

  const { rows } = await pool.query(
    `SELECT account, encode(content_sha256, 'hex') AS sha, queue_id, message_id, from_address, from_name, to_addresses, subject, sent_at,
            has_attachment, attachments, spam_score, spam_status, spf, dkim, dmarc, snippet, language::text AS language, parse_problems
       FROM indexed_messages ORDER BY account`,
  );
  assert.deepEqual(rows.map((r) => r.account), ['bob@example.org', 'carol@example.org', 'dave@example.org']);
  assert.deepEqual(
    { ...rows[0], sent_at: rows[0].sent_at.toISOString() },
    {
      account: 'bob@example.org',
      sha: recs[0]!.contentSha256,
      queue_id: '4Qid123',
      message_id: '<q1@sender.example>',
      from_address: 'alice@sender.example',
      from_name: 'Alice Liddell',
      to_addresses: ['bob@example.org', 'carol@example.org'],
      subject: 'Quarterly report',
      sent_at: '2024-03-01T11:59:00.000Z',
      has_attachment: true,
      attachments: [{ name: 'figures.pdf', contentType: 'application/pdf', size: 3 }],
      spam_score: 0.05,
      spam_status: 'No',
      spf: 'pass',
      dkim: 'pass',
      dmarc: 'pass',
      snippet: 'The figures for the third quarter are attached.',
      language: 'simple',
      parse_problems: [],
    },
  );
  for (const account of ['bob@example.org', 'carol@example.org', 'dave@example.org']) {
    const events = await eventsAfter(pool, account, 0);
    assert.equal(events.length, 1, account);
    assert.equal(events[0]!.kind, 'new');
    assert.deepEqual(events[0]!.payload, { subject: 'Quarterly report', from: 'alice@sender.example', size: REPORT.length, snippet: 'The figures for the third quarter are attached.', spamStatus: 'No' });
    const row = await pool.query('SELECT id FROM indexed_messages WHERE account = $1', [account]);
    assert.equal(events[0]!.messageRow, Number(row.rows[0].id));
  }
});

test('has(): indexed rows, case-insensitively; false for another recipient or message', async (t) => {
  const { writer } = await setup(t);
  const recs = await records(REPORT, ['bob@example.org']);
  const sha = recs[0]!.contentSha256;
  assert.equal(await writer.has('bob@example.org', sha), false);
  await writer.write(recs);
  assert.equal(await writer.has('Bob@Example.ORG', sha.toUpperCase()), true);
  assert.equal(await writer.has('carol@example.org', sha), false);
  assert.equal(await writer.has('bob@example.org', 'b'.repeat(64)), false);
});

test('search: words from subject, body, names, addresses and attachment names; subject ranks first', async (t) => {
  const { pool, writer } = await setup(t);
  await writer.write(await records(REPORT, ['bob@example.org']));
  await writer.write(await records('From: x@y.example\nSubject: lunch\n\nthe quarterly numbers can wait\n', ['bob@example.org']));
  const find = async (q: string) =>
    (
      await pool.query(
        `SELECT subject FROM indexed_messages WHERE account = $1 AND tsv @@ plainto_tsquery('simple', $2)
          ORDER BY ts_rank(tsv, plainto_tsquery('simple', $2)) DESC, id`,
        ['bob@example.org', q],
      )
    ).rows.map((r) => r.subject);
  assert.deepEqual(await find('quarterly'), ['Quarterly report', 'lunch']);
  assert.deepEqual(await find('third quarter'), ['Quarterly report']);
  assert.deepEqual(await find('liddell'), ['Quarterly report']);
  assert.deepEqual(await find('alice'), ['Quarterly report'], 'the local part of an address');
  assert.deepEqual(await find('alice@sender.example'), ['Quarterly report']);
  assert.deepEqual(await find('figures.pdf'), ['Quarterly report']);
  assert.deepEqual(await find('wait'), ['lunch']);
  assert.deepEqual(await find('nowhere'), []);
});

test('the configured language stems words (english: "reports" finds "report")', async (t) => {
  const { pool, writer } = await setup(t);
  await writer.write(await records('Subject: monthly reports\n\nrunning totals\n', ['bob@example.org'], 'english'));
  const { rows } = await pool.query(`SELECT language::text AS l FROM indexed_messages WHERE tsv @@ plainto_tsquery('english', 'report run')`);
  assert.deepEqual(rows, [{ l: 'english' }]);
});

test('tsvector limits: words over 2 KB are skipped, a text whose tsvector exceeds 1 MB is cut, not refused', async (t) => {
  const { pool, writer } = await setup(t);
  const [longWord] = await records(`Subject: long\n\nstart ${'x'.repeat(5000)} end\n`, ['bob@example.org']);
  assert.deepEqual(await writer.write([longWord!]), { status: 'indexed', inserted: 1 });
  // ~1 MB of distinct short words: the tsvector would be about 2.5 MB.
  const words = Array.from({ length: 180_000 }, (_, i) => `w${i.toString(36)}`).join(' ');
  const [many] = await records(`Subject: distinct\n\nfirstword ${words}\n`, ['bob@example.org']);
  assert.ok(Buffer.byteLength(many!.text) > 900_000);
  assert.deepEqual(await writer.write([many!]), { status: 'indexed', inserted: 1 });
  const { rows } = await pool.query(
    `SELECT subject, parse_problems, pg_column_size(tsv) AS size, tsv @@ 'firstword'::tsquery AS first, tsv @@ 'end'::tsquery AS "end"
       FROM indexed_messages ORDER BY id`,
  );
  assert.equal(rows[0].end, true, 'the words around the long one are indexed');
  assert.deepEqual(rows[0].parse_problems, []);
  assert.equal(rows[1].first, true);
  assert.ok(rows[1].size < 1024 * 1024);
  assert.match(rows[1].parse_problems.at(-1), /search text was cut to \d+ bytes/);
});

test('dirty records (NUL, lone surrogates, absurd dates and scores, a 5 KB Message-ID) are stored cleaned', async (t) => {
  const { pool, writer } = await setup(t);
  const [base] = await records('Subject: x\n\nbody\n', ['bob@example.org']);
  const dirty: IndexRecord = {
    ...base!,
    subject: 'a\u0000b\uD800c',
    fromName: '\uDC00\u0000',
    to: ['x\u0000@y'],
    text: 'nul\u0000here \uDBFF',
    snippet: 'snip\u0000',
    attachments: [{ name: 'f\u0000\uD800.txt', contentType: 'text/plain', size: 3 }],
    problems: ['p\u0000'],
    messageId: `<${'m'.repeat(5000)}@x>`,
    sentAt: '+275760-09-13T00:00:00.000Z',
    spamScore: Number.POSITIVE_INFINITY,
  };
  assert.deepEqual(await writer.write([dirty]), { status: 'indexed', inserted: 1 });
  const { rows } = await pool.query('SELECT subject, from_name, to_addresses, snippet, attachments, parse_problems, length(message_id) AS idlen, sent_at, spam_score FROM indexed_messages');
  assert.deepEqual(rows[0], {
    subject: 'ab\uFFFDc',
    from_name: '\uFFFD',
    to_addresses: ['x@y'],
    snippet: 'snip',
    attachments: [{ name: 'f\uFFFD.txt', contentType: 'text/plain', size: 3 }],
    parse_problems: ['p'],
    idlen: 1000,
    sent_at: null,
    spam_score: null,
  });
});

test('an entry PostgreSQL refuses for its content is backlogged loudly, then set aside at replay; has() still knows it', async (t) => {
  const { pool, writer, backlog, dir, lines } = await setup(t);
  const [good] = await records(REPORT, ['bob@example.org']);
  // Two bytes, not 32: the CHECK on content_sha256 refuses it.
  const bad = { ...good!, contentSha256: 'abcd' };
  assert.deepEqual(await writer.write([bad]), { status: 'backlogged', inserted: 0 });
  const failure = lines.find((l) => l.level === 50 && l.msg.includes('index write FAILED'));
  assert.equal(failure?.code, '23514');
  assert.equal(await writer.has('bob@example.org', 'abcd'), true);
  await writer.write([good!]);
  await writer.replay();
  assert.equal(backlog.size, 0);
  assert.equal(backlog.nonEmpty, false);
  const rejected = readFileSync(path.join(dir, 'rejected.jsonl'), 'utf8').trim().split('\n');
  assert.equal((JSON.parse(rejected[0]!) as IndexRecord[])[0]!.contentSha256, 'abcd');
  assert.equal(await writer.has('bob@example.org', 'abcd'), true);
  const { rows } = await pool.query('SELECT count(*)::int AS n FROM indexed_messages');
  assert.deepEqual(rows, [{ n: 1 }]);
});

test('one recipient refused rolls back the whole message: no row and no event for the others', async (t) => {
  const { pool, writer, backlog } = await setup(t);
  const [bob] = await records(REPORT, ['bob@example.org']);
  const refused = { ...bob!, account: 'carol@example.org', sizeBytes: -1 };
  assert.equal((await writer.write([bob!, refused])).status, 'backlogged');
  const { rows } = await pool.query('SELECT (SELECT count(*) FROM indexed_messages)::int AS msgs, (SELECT count(*) FROM mail_events)::int AS events');
  assert.deepEqual(rows, [{ msgs: 0, events: 0 }]);
  assert.equal(backlog.size, 1);
});
