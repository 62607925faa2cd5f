/** Corpus loaders: the SpamAssassin package and user mboxes, maildirs and directories. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import {
  detectMailSource,
  loadLabelled,
  loadSpamAssassin,
  readMailSource,
  readMbox,
  splitMbox,
} from '../../../classifier/eval/corpus.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ceerion-eval-corpus-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

async function collect(it: AsyncIterable<Buffer>): Promise<string[]> {
  const out: string[] = [];
  for await (const b of it) out.push(b.toString('latin1'));
  return out;
}

test('SpamAssassin corpus: 1896 spam, 4150 ham of which 250 hard, unique ids, raw bytes', async () => {
  const c = await loadSpamAssassin();
  assert.equal(c.length, 6046);
  assert.equal(c.filter((m) => m.label === 'spam').length, 1896);
  assert.equal(c.filter((m) => m.label === 'ham').length, 4150);
  assert.equal(c.filter((m) => m.hard).length, 250);
  assert.ok(c.every((m) => !m.hard || (m.label === 'ham' && m.group === 'hard-ham-1')));
  assert.equal(new Set(c.map((m) => m.id)).size, c.length);
  assert.equal(c[0]!.id, 'easy-ham-1/00001');
  assert.ok(Buffer.isBuffer(c[0]!.raw) && c[0]!.raw.toString('utf8').startsWith('From '));
});

test('SpamAssassin corpus: limitPerGroup and groups select a stable subset', async () => {
  const a = await loadSpamAssassin({ limitPerGroup: 3 });
  assert.equal(a.length, 15);
  assert.deepEqual(
    a.map((m) => m.id).slice(0, 4),
    ['easy-ham-1/00001', 'easy-ham-1/00002', 'easy-ham-1/00003', 'easy-ham-2/00001'],
  );
  const s = await loadSpamAssassin({ groups: ['spam-2'], limitPerGroup: 2 });
  assert.deepEqual(s.map((m) => [m.id, m.label, m.hard]), [['spam-2/00001', 'spam', false], ['spam-2/00002', 'spam', false]]);
});

const MBOX = [
  'From alice@example.org Mon Jan  1 00:00:00 2024',
  'Subject: one',
  '',
  'Body one.',
  '>From the escaped line',
  '>>From doubly escaped',
  '> From not an escape (space)',
  'From a body line right after text is not a separator',
  '',
  'From bob@example.org Tue Jan  2 00:00:00 2024',
  'Subject: two',
  '',
  'Body two.',
  '',
].join('\n');

test('mbox: splits on From_ lines after an empty line, unescapes >From, drops framing', () => {
  const msgs = splitMbox(Buffer.from(MBOX)).map((b) => b.toString());
  assert.deepEqual(msgs, [
    'Subject: one\n\nBody one.\nFrom the escaped line\n>From doubly escaped\n> From not an escape (space)\nFrom a body line right after text is not a separator\n',
    'Subject: two\n\nBody two.\n',
  ]);
});

test('mbox: CRLF line ends, text before the first From_, no trailing newline', () => {
  const crlf = splitMbox(Buffer.from('From x\r\nA: 1\r\n\r\nb\r\n\r\nFrom y\r\nA: 2\r\n\r\nc')).map(String);
  assert.deepEqual(crlf, ['A: 1\r\n\r\nb\r\n', 'A: 2\r\n\r\nc']);
  // A plain .eml file (no From_ line) is one message, byte for byte.
  const eml = 'Subject: plain\n\nhello\n';
  assert.deepEqual(splitMbox(Buffer.from(eml)).map(String), [eml]);
  assert.deepEqual(splitMbox(Buffer.from('')), []);
  assert.deepEqual(splitMbox(Buffer.from('\n\n')), []);
});

test('mbox: streaming over chunk boundaries gives the same messages as in memory', async () => {
  // ~400 KB: several 64 KB stream chunks, with boundaries falling mid-line and mid-"From ".
  const parts: string[] = [];
  for (let i = 0; i < 300; i++) {
    parts.push(`From sender${i}@example.org Mon Jan  1 00:00:00 2024\nSubject: m${i}\n\n${'x'.repeat(i * 7)}\n>From ${i}\n${'y '.repeat(500)}\n\n`);
  }
  const file = path.join(tmp, 'big.mbox');
  writeFileSync(file, parts.join(''));
  const streamed = await collect(readMbox(file));
  assert.equal(streamed.length, 300);
  assert.deepEqual(streamed, splitMbox(Buffer.from(parts.join(''))).map((b) => b.toString('latin1')));
  assert.ok(streamed[299]!.startsWith('Subject: m299\n') && streamed[299]!.includes('\nFrom 299\n'));
  assert.equal(await detectMailSource(file), 'mbox');
});

test('maildir: cur/ and new/ in name order; tmp/ and dotfiles are skipped', async () => {
  const md = path.join(tmp, 'Maildir');
  for (const d of ['cur', 'new', 'tmp']) mkdirSync(path.join(md, d), { recursive: true });
  writeFileSync(path.join(md, 'cur', '2.host:2,S'), 'Subject: cur2\n\n');
  writeFileSync(path.join(md, 'cur', '1.host:2,S'), 'Subject: cur1\n\n');
  writeFileSync(path.join(md, 'cur', '.hidden'), 'Subject: hidden\n\n');
  writeFileSync(path.join(md, 'new', '3.host'), 'Subject: new3\n\n');
  writeFileSync(path.join(md, 'tmp', '4.host'), 'Subject: tmp4\n\n');
  assert.equal(await detectMailSource(md), 'maildir');
  assert.deepEqual(await collect(readMailSource(md)), ['Subject: cur1\n\n', 'Subject: cur2\n\n', 'Subject: new3\n\n']);
  // A maildir with only new/ is still a maildir.
  const md2 = path.join(tmp, 'Maildir2');
  mkdirSync(path.join(md2, 'new'), { recursive: true });
  writeFileSync(path.join(md2, 'new', 'a'), 'Subject: a\n\n');
  assert.deepEqual(await collect(readMailSource(md2)), ['Subject: a\n\n']);
});

test('directory of files: one message per file, whole (a leading From_ line is kept)', async () => {
  const dir = path.join(tmp, 'spamdir');
  mkdirSync(path.join(dir, 'sub'), { recursive: true });
  writeFileSync(path.join(dir, 'b.eml'), 'Subject: b\n\n');
  writeFileSync(path.join(dir, 'a.eml'), 'From x@y Mon Jan  1 00:00:00 2024\nSubject: a\n\n');
  assert.equal(await detectMailSource(dir), 'directory');
  assert.deepEqual(await collect(readMailSource(dir)), ['From x@y Mon Jan  1 00:00:00 2024\nSubject: a\n\n', 'Subject: b\n\n']);
});

test('loadLabelled tags every message with the class and a stable id', async () => {
  const file = path.join(tmp, 'ham.mbox');
  writeFileSync(file, MBOX);
  const got = [];
  for await (const m of loadLabelled(file, 'ham')) got.push(m);
  assert.deepEqual(
    got.map((m) => [m.id, m.label, m.hard, m.raw.toString().split('\n')[0]]),
    [
      ['ham.mbox/0', 'ham', false, 'Subject: one'],
      ['ham.mbox/1', 'ham', false, 'Subject: two'],
    ],
  );
});
