/**
 * The durable backlog on a real directory: entries survive a reopen, replay in order, are removed
 * only when committed, a torn last line is skipped with a warning, rejected entries are kept
 * aside, and a full backlog refuses loudly.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Backlog, BacklogFullError } from '../../../lmtp-indexer/index/backlog.ts';
import type { IndexRecord } from '../../../lmtp-indexer/types.ts';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-backlog-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A logger whose lines the test can read. */
function captureLog() {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines, messages: () => lines.map((l) => l.msg) };
}

const sha = (n: number): string => n.toString(16).padStart(64, '0');

function entry(n: number, accounts = ['bob@example.org']): IndexRecord[] {
  return accounts.map((account) => ({
    account,
    contentSha256: sha(n),
    sizeBytes: 100 + n,
    receivedAt: '2024-01-02T09:00:00.000Z',
    language: 'simple',
    messageId: `<m${n}@x>`, inReplyTo: null, references: [], fromAddress: 'a@x', fromName: null, to: [account], cc: [], subject: `message ${n}`,
    sentAt: null, attachments: [], spamScore: null, spamStatus: null, authResults: null, spf: null, dkim: null, dmarc: null, queueId: null,
    text: `body ${n}`, snippet: `body ${n}`, problems: [],
  }));
}

const subjects = (seen: IndexRecord[][]) => seen.map((records) => records[0]!.subject);
const segments = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('segment-')).sort();

test('appended entries are on disk before append returns, and a reopened backlog knows them', async (t) => {
  const dir = tempDir(t);
  const { log } = captureLog();
  const backlog = await Backlog.open({ dir, log });
  assert.equal(backlog.nonEmpty, false);
  await backlog.append(entry(1, ['bob@example.org', 'Carol@Example.org']));
  await backlog.append(entry(2));
  // Read with a plain fs call while the backlog still holds its file open: the bytes are there.
  const files = segments(dir);
  assert.equal(files.length, 1);
  const lines = readFileSync(path.join(dir, files[0]!), 'utf8').split('\n');
  assert.deepEqual(lines.map((l) => (l ? (JSON.parse(l) as IndexRecord[]).map((r) => r.account) : l)), [['bob@example.org', 'Carol@Example.org'], ['bob@example.org'], '']);
  assert.equal(backlog.size, 2);
  assert.equal(backlog.has('carol@example.org', sha(1).toUpperCase()), true, 'account and hash compare case-insensitively');
  assert.equal(backlog.has('bob@example.org', sha(3)), false);

  const again = await Backlog.open({ dir, log });
  assert.equal(again.size, 2);
  assert.equal(again.has('bob@example.org', sha(2)), true);
  await backlog.close();
  await again.close();
});

test('replay goes oldest first across segments and processes, and deletes each finished segment', async (t) => {
  const dir = tempDir(t);
  const { log } = captureLog();
  const first = await Backlog.open({ dir, log, segmentBytes: 1500 });
  for (let n = 1; n <= 6; n++) await first.append(entry(n));
  await first.close();
  // A second process (after a restart) adds its own segment behind the first one's.
  const backlog = await Backlog.open({ dir, log, segmentBytes: 1500 });
  await backlog.append(entry(7));
  assert.ok(segments(dir).length >= 3, 'segments rotated');
  const seen: IndexRecord[][] = [];
  const result = await backlog.replay(async (records) => (seen.push(records), 'committed'));
  assert.deepEqual(result, { committed: 7, rejected: 0, stopped: false });
  assert.deepEqual(subjects(seen), ['message 1', 'message 2', 'message 3', 'message 4', 'message 5', 'message 6', 'message 7']);
  assert.deepEqual(segments(dir), []);
  assert.equal(backlog.size, 0);
  assert.equal(backlog.nonEmpty, false);
  assert.equal(backlog.has('bob@example.org', sha(7)), false);
  await backlog.close();
});

test('a replay that stops keeps the segment; the next pass starts it again from its first entry', async (t) => {
  const dir = tempDir(t);
  const { log } = captureLog();
  const backlog = await Backlog.open({ dir, log });
  for (let n = 1; n <= 3; n++) await backlog.append(entry(n));
  const seen: IndexRecord[][] = [];
  const stopped = await backlog.replay(async (records) => (seen.push(records), records[0]!.subject === 'message 2' ? 'stop' : 'committed'));
  assert.deepEqual(stopped, { committed: 1, rejected: 0, stopped: true });
  assert.equal(segments(dir).length, 1);
  assert.equal(backlog.size, 2);
  // Entry 1 is committed (not pending any more), 2 and 3 still are.
  assert.deepEqual([1, 2, 3].map((n) => backlog.has('bob@example.org', sha(n))), [false, true, true]);
  // Appends made meanwhile go to a new segment, replayed after the old one.
  await backlog.append(entry(4));
  const done = await backlog.replay(async (records) => (seen.push(records), 'committed'));
  assert.deepEqual(done, { committed: 3, rejected: 0, stopped: false });
  // The pass resumes at entry 2 (1 is committed), then 3 and the new 4.
  assert.deepEqual(subjects(seen), ['message 1', 'message 2', 'message 2', 'message 3', 'message 4']);
  assert.deepEqual(segments(dir), []);
  assert.equal(backlog.size, 0);
  // After a restart nothing is remembered: a segment left by a crash replays from its start.
  await backlog.append(entry(5));
  await backlog.append(entry(6));
  await backlog.replay(async (records) => (records[0]!.subject === 'message 6' ? 'stop' : 'committed'));
  await backlog.close();
  const restarted = await Backlog.open({ dir, log });
  assert.equal(restarted.size, 2);
  const after: IndexRecord[][] = [];
  await restarted.replay(async (records) => (after.push(records), 'committed'));
  assert.deepEqual(subjects(after), ['message 5', 'message 6']);
  await restarted.close();
  await backlog.close();
});

test('a torn last line (crash mid-append) is skipped with a warning, and nothing is appended behind it', async (t) => {
  const dir = tempDir(t);
  const { log, lines } = captureLog();
  const name = 'segment-000000000001.jsonl';
  const good = `${JSON.stringify(entry(1))}\n${JSON.stringify(entry(2))}\n`;
  writeFileSync(path.join(dir, name), good + JSON.stringify(entry(3)).slice(0, 57));
  const backlog = await Backlog.open({ dir, log });
  assert.equal(backlog.size, 2);
  await backlog.append(entry(4));
  assert.equal(readFileSync(path.join(dir, name), 'utf8').startsWith(good), true);
  assert.equal(segments(dir).length, 2, 'the new entry went to a new segment');
  const seen: IndexRecord[][] = [];
  await backlog.replay(async (records) => (seen.push(records), 'committed'));
  assert.deepEqual(subjects(seen), ['message 1', 'message 2', 'message 4']);
  const torn = lines.filter((l) => l.msg.includes('torn last line'));
  assert.ok(torn.length >= 1 && torn.every((l) => l.level === 40 && l.bytes === 57));
  assert.deepEqual(segments(dir), []);
  await backlog.close();
});

test('a line that is not an entry is skipped with a warning; the lines around it replay', async (t) => {
  const dir = tempDir(t);
  const { log, messages } = captureLog();
  writeFileSync(path.join(dir, 'segment-000000000001.jsonl'), [JSON.stringify(entry(1)), '{"not":"an entry"}', '[]', 'garbage', JSON.stringify(entry(2)), ''].join('\n'));
  const backlog = await Backlog.open({ dir, log });
  const seen: IndexRecord[][] = [];
  await backlog.replay(async (records) => (seen.push(records), 'committed'));
  assert.deepEqual(subjects(seen), ['message 1', 'message 2']);
  assert.ok(messages().filter((m) => m.includes('unreadable line')).length >= 3);
  await backlog.close();
});

test('rejected entries are kept aside (rejected.jsonl), still known to has(), and do not block the rest', async (t) => {
  const dir = tempDir(t);
  const { log, lines } = captureLog();
  const backlog = await Backlog.open({ dir, log });
  for (let n = 1; n <= 3; n++) await backlog.append(entry(n));
  const result = await backlog.replay(async (records) => (records[0]!.subject === 'message 2' ? 'rejected' : 'committed'));
  assert.deepEqual(result, { committed: 2, rejected: 1, stopped: false });
  const kept = readFileSync(path.join(dir, 'rejected.jsonl'), 'utf8').trim().split('\n');
  assert.deepEqual(kept.map((l) => (JSON.parse(l) as IndexRecord[])[0]!.subject), ['message 2']);
  assert.equal(backlog.has('bob@example.org', sha(2)), true);
  assert.ok(lines.some((l) => l.level === 50 && l.msg.includes('rejected')));
  assert.equal(backlog.nonEmpty, false);
  const reopened = await Backlog.open({ dir, log });
  assert.equal(reopened.has('bob@example.org', sha(2)), true);
  assert.equal(reopened.size, 0);
  await backlog.close();
  await reopened.close();
});

test('a full backlog refuses the entry with an error naming the message; nothing is written', async (t) => {
  const dir = tempDir(t);
  const { log, lines } = captureLog();
  const one = Buffer.byteLength(`${JSON.stringify(entry(1))}\n`);
  const backlog = await Backlog.open({ dir, log, maxBytes: one * 2 });
  await backlog.append(entry(1));
  await backlog.append(entry(2));
  assert.equal(backlog.isFull(), true);
  await assert.rejects(backlog.append(entry(3)), BacklogFullError);
  assert.equal(backlog.size, 2);
  assert.equal(backlog.has('bob@example.org', sha(3)), false);
  const error = lines.find((l) => l.level === 50);
  assert.equal(error?.messageId, '<m3@x>');
  // Replaying makes room again.
  await backlog.replay(async () => 'committed');
  assert.equal(backlog.isFull(), false);
  await backlog.append(entry(3));
  assert.equal(backlog.size, 1);
  await backlog.close();
});

test('concurrent appends never interleave their lines', async (t) => {
  const dir = tempDir(t);
  const { log } = captureLog();
  const backlog = await Backlog.open({ dir, log });
  const big = (n: number) => entry(n).map((r) => ({ ...r, text: 'x'.repeat(200_000 + n) }));
  await Promise.all(Array.from({ length: 20 }, (_, i) => backlog.append(big(i))));
  const seen: IndexRecord[][] = [];
  await backlog.replay(async (records) => (seen.push(records), 'committed'));
  assert.equal(seen.length, 20);
  assert.deepEqual(new Set(seen.map((r) => r[0]!.text.length)), new Set(Array.from({ length: 20 }, (_, i) => 200_000 + i)));
  await backlog.close();
});

test('rejected entries can be retried as documented: rename rejected.jsonl to segment-000000000000.jsonl', async (t) => {
  const dir = tempDir(t);
  const { log } = captureLog();
  const backlog = await Backlog.open({ dir, log });
  await backlog.append(entry(1));
  await backlog.replay(async () => 'rejected');
  await backlog.close();
  renameSync(path.join(dir, 'rejected.jsonl'), path.join(dir, 'segment-000000000000.jsonl'));
  const reopened = await Backlog.open({ dir, log });
  assert.equal(reopened.size, 1);
  const seen: IndexRecord[][] = [];
  await reopened.replay(async (records) => (seen.push(records), 'committed'));
  assert.deepEqual(subjects(seen), ['message 1']);
  assert.deepEqual(readdirSync(dir), []);
  await reopened.close();
});
