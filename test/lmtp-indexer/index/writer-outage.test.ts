/**
 * PostgreSQL going away and coming back, with a private server this test stops and starts:
 * writes go to the backlog, has() still answers from it, the replay timer brings the index up
 * to date exactly once. And crash safety: a backlog with a torn last line, replayed twice
 * (a crash after the commit but before the segment was deleted), gives no duplicates.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import type pg from 'pg';
import type { DatabaseConfig } from '../../../core/config/policyd.ts';
import { createPool } from '../../../core/db/pool.ts';
import { eventsAfter } from '../../../lmtp-indexer/events/store.ts';
import { Backlog } from '../../../lmtp-indexer/index/backlog.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import { IndexWriter } from '../../../lmtp-indexer/index/writer.ts';
import type { IndexRecord } from '../../../lmtp-indexer/types.ts';
import { startPostgres, testSchema } from '../../harness/postgres.ts';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-outage-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function captureLog() {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  return { lines, log: pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) }) };
}

function message(n: number, accounts: string[]): IndexRecord[] {
  return accounts.map((account) => ({
    account,
    contentSha256: n.toString(16).padStart(64, 'c'),
    sizeBytes: 1000 + n,
    receivedAt: '2024-03-01T12:00:00.000Z',
    language: 'simple',
    messageId: `<o${n}@x>`, inReplyTo: null, references: [], fromAddress: 'a@x.example', fromName: 'A', to: accounts, cc: [], subject: `outage ${n}`,
    sentAt: null, attachments: [], spamScore: null, spamStatus: null, authResults: null, spf: null, dkim: null, dmarc: null, queueId: null,
    text: `outage body ${n}`, snippet: `outage body ${n}`, problems: [],
  }));
}

async function counts(pool: pg.Pool): Promise<{ rows: number; distinct: number; events: number }> {
  const { rows } = await pool.query(
    `SELECT (SELECT count(*) FROM indexed_messages)::int AS rows,
            (SELECT count(DISTINCT (account, content_sha256)) FROM indexed_messages)::int AS distinct,
            (SELECT count(*) FROM mail_events WHERE kind = 'new')::int AS events`,
  );
  return rows[0];
}

/** Polls (no timing assertion: a broken replay fails by the test runner's timeout). */
async function until(check: () => Promise<boolean> | boolean): Promise<void> {
  while (!(await check())) await sleep(50);
}

test('PostgreSQL down: entries are backlogged; back up: the replay timer indexes each exactly once', async (t) => {
  const server = await startPostgres();
  t.after(() => server.close());
  const db: DatabaseConfig = { url: server.url, schema: 'ceerion' };
  const pool = createPool(db, { connectTimeoutMs: 2000 });
  t.after(() => pool.end());
  await migrateIndex(pool);
  const dir = tempDir(t);
  const { log, lines } = captureLog();
  const writer = new IndexWriter({ pool, log, backlogDir: dir, replayIntervalMs: 100 });
  await writer.start();
  t.after(() => writer.stop());

  // Indexed while the server is up.
  assert.deepEqual(await writer.write(message(1, ['bob@example.org'])), { status: 'indexed', inserted: 1 });

  await server.stop();
  const during = [message(2, ['bob@example.org', 'carol@example.org']), message(3, ['bob@example.org']), message(1, ['bob@example.org'])];
  for (const m of during) assert.deepEqual(await writer.write(m), { status: 'backlogged', inserted: 0 });
  assert.equal(await writer.backlogSize(), 3);
  assert.ok(lines.some((l) => l.level === 40 && l.msg.includes('PostgreSQL unavailable')));
  // has() answers from the backlog; for anything else it cannot know.
  assert.equal(await writer.has('carol@example.org', during[0]![0]!.contentSha256), true);
  assert.equal(await writer.has('carol@example.org', 'd'.repeat(64)), undefined);
  // The timer keeps trying while the server is down; nothing is lost meanwhile.
  await sleep(350);
  assert.equal(await writer.backlogSize(), 3);

  await server.start();
  await until(async () => (await writer.backlogSize()) === 0);
  assert.deepEqual(await counts(pool), { rows: 4, distinct: 4, events: 4 });
  assert.deepEqual(readdirSync(dir), [], 'replayed segments are deleted');
  assert.deepEqual((await eventsAfter(pool, 'bob@example.org', 0)).map((e) => e.payload.subject), ['outage 1', 'outage 2', 'outage 3']);
  // A retry of a replayed message changes nothing.
  assert.deepEqual(await writer.write(message(3, ['bob@example.org'])), { status: 'indexed', inserted: 0 });
  assert.equal(await writer.has('carol@example.org', during[0]![0]!.contentSha256), true);
});

test('a backlog with a torn last line, replayed twice (crash before the segment was deleted): no duplicates', async (t) => {
  const pool = createPool(testSchema(t));
  t.after(() => pool.end());
  await migrateIndex(pool);
  const dir = tempDir(t);
  const { log, lines } = captureLog();
  const segment = path.join(dir, 'segment-000000000007.jsonl');
  const entries = [message(1, ['bob@example.org', 'carol@example.org']), message(2, ['bob@example.org'])];
  writeFileSync(segment, `${entries.map((e) => JSON.stringify(e)).join('\n')}\n${JSON.stringify(message(3, ['bob@example.org'])).slice(0, 100)}`);
  const saved = path.join(tempDir(t), 'copy.jsonl');
  copyFileSync(segment, saved);

  const first = await Backlog.open({ dir, log });
  assert.equal(first.size, 2);
  const writer = new IndexWriter({ pool, backlog: first, log, replayIntervalMs: 60_000 });
  await writer.replay();
  assert.deepEqual(await counts(pool), { rows: 3, distinct: 3, events: 3 });
  assert.ok(lines.some((l) => l.level === 40 && l.msg.includes('torn last line')));
  await writer.stop();
  await first.close();

  // As if the process had died after the commits but before deleting the segment.
  copyFileSync(saved, segment);
  const second = await Backlog.open({ dir, log });
  const again = new IndexWriter({ pool, backlog: second, log, replayIntervalMs: 60_000 });
  await again.replay();
  await again.replay();
  assert.deepEqual(await counts(pool), { rows: 3, distinct: 3, events: 3 });
  assert.equal(second.size, 0);
  assert.deepEqual(readdirSync(dir), []);
  await again.stop();
  await second.close();
});
