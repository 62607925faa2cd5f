// The Postfix queue collector against a real queue: a private Postfix (Debian's binaries) with one
// message on hold and others deferred (the relay refuses connections), and against a hand-made
// queue directory with the hashed layout and known arrival times.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { Writable } from 'node:stream';
import { arrivalFromHead, registerPostfixQueueMetrics } from '../../core/postfix-queue.ts';
import { silentLogger } from '../../core/log.ts';
import { createRegistry } from '../../core/metrics.ts';
import { freePort, startPostfix } from '../harness/postfix.ts';
import { sendMail } from '../harness/smtp-client.ts';

function sample(text: string, name: string, queue: string): number | undefined {
  const m = new RegExp(`^${name}\\{queue="${queue}"\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/** A record as Postfix writes it (global/record.c): type, base-128 length low digits first, data. */
function record(type: string, data: string): Buffer {
  const bytes = Buffer.from(data, 'latin1');
  const len: number[] = [];
  let n = bytes.length;
  do {
    let b = n & 0x7f;
    n >>= 7;
    if (n) b |= 0x80;
    len.push(b);
  } while (n);
  return Buffer.concat([Buffer.from(type, 'latin1'), Buffer.from(len), bytes]);
}

/** The head of a cleanup-written queue file: the fixed-width size record, then the arrival time. */
function queueFile(arrivalSeconds: number): Buffer {
  const size = `${'355'.padStart(15)} ${'661'.padStart(15)} ${'1'.padStart(15)} ${'0'.padStart(15)} ${'355'.padStart(15)} ${'0'.padStart(15)}`;
  return Buffer.concat([record('C', size), record('T', `${arrivalSeconds} 123456`), record('F', ''), record('E', '')]);
}

test('arrival time from the record head; anything else is not taken for one', () => {
  assert.equal(arrivalFromHead(queueFile(1_700_000_000)), 1_700_000_000_123);
  // A size record longer than 127 bytes needs a two-digit length.
  assert.equal(arrivalFromHead(Buffer.concat([record('C', 'x'.repeat(300)), record('T', '1700000001 0')])), 1_700_000_001_000);
  assert.equal(arrivalFromHead(Buffer.from('')), undefined);
  assert.equal(arrivalFromHead(record('C', 'x'.repeat(20))), undefined);
  assert.equal(arrivalFromHead(Buffer.from('From alice@example.com\n')), undefined);
  assert.equal(arrivalFromHead(Buffer.concat([record('C', 'x'), Buffer.from([0x54, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])])), undefined);
});

test('hashed layout: counts per queue, age from the T record (not the future mtime of deferred mail), cached', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-pfq-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const now = Date.parse('2026-11-22T12:00:00Z');
  const put = async (rel: string, arrival: number) => {
    const file = path.join(dir, rel);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, queueFile(arrival / 1000));
    // As qmgr does for deferred mail: mtime = the next attempt, in the future.
    const next = new Date(now + 3_600_000);
    await utimes(file, next, next);
  };
  await put('deferred/A/A1B2C3D4E5', now - 7_200_000);
  await put('deferred/B/B1B2C3D4E5', now - 60_000);
  await put('deferred/0/0/0ABCDEF12', now - 30_000); // hash_queue_depth = 2
  await put('hold/C1B2C3D4E5', now - 600_000);
  await mkdir(path.join(dir, 'incoming'));
  // active is missing: no sample for it, and a warning, not a crash.
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, new Writable({ write: (c, _e, cb) => (lines.push(c.toString()), cb()) }));
  let clock = now;
  const registry = createRegistry(false);
  const snapshot = registerPostfixQueueMetrics(registry, dir, { log, cacheMs: 5_000, now: () => clock });
  let text = await registry.metrics();
  assert.equal(sample(text, 'ceerion_postfix_queue_messages', 'deferred'), 3);
  assert.equal(sample(text, 'ceerion_postfix_queue_messages', 'hold'), 1);
  assert.equal(sample(text, 'ceerion_postfix_queue_messages', 'incoming'), 0);
  assert.equal(sample(text, 'ceerion_postfix_queue_messages', 'active'), undefined);
  assert.equal(sample(text, 'ceerion_postfix_queue_oldest_seconds', 'deferred'), 7200 - 0.123);
  assert.equal(sample(text, 'ceerion_postfix_queue_oldest_seconds', 'hold'), 600 - 0.123);
  assert.equal(sample(text, 'ceerion_postfix_queue_oldest_seconds', 'incoming'), 0);
  assert.equal(sample(text, 'ceerion_postfix_queue_oldest_seconds', 'active'), undefined);
  assert.equal(lines.length, 1, 'one warning for the missing queue');
  assert.match(lines[0]!, /"queue":"active"/);

  // Within the cache period a new message is not seen; after it, it is. The warning is not repeated.
  await put('hold/D1B2C3D4E5', now - 1_000);
  clock += 1_000;
  assert.equal(sample(await registry.metrics(), 'ceerion_postfix_queue_messages', 'hold'), 1);
  clock += 5_000;
  text = await registry.metrics();
  assert.equal(sample(text, 'ceerion_postfix_queue_messages', 'hold'), 2);
  assert.equal(lines.length, 1);
  assert.deepEqual(Object.keys((await snapshot()).errors), ['active']);

  // A queue directory that does not exist at all: the metrics are declared, with no samples.
  const gone = createRegistry(false);
  registerPostfixQueueMetrics(gone, path.join(dir, 'nope'), { log: silentLogger });
  text = await gone.metrics();
  assert.doesNotMatch(text, /^ceerion_postfix_queue_messages\{/m);
  assert.match(text, /# TYPE ceerion_postfix_queue_messages gauge/);
});

test('a real Postfix queue: one message on hold, two deferred by a refusing relay', async (t) => {
  const deadRelay = await freePort();
  const pf = await startPostfix({
    relayPort: deadRelay,
    main: { smtpd_sender_restrictions: 'check_sender_access inline:{hold@example.com=HOLD}' },
  });
  t.after(() => pf.stop());
  const started = Date.now();
  const send = (from: string) => sendMail({ port: pf.smtpPort, from, to: ['rcpt@example.org'], data: `Subject: ${from}\n\nqueued\n` });
  assert.equal((await send('hold@example.com')).code, 250);
  assert.equal((await send('a@example.com')).code, 250);
  assert.equal((await send('b@example.com')).code, 250);
  await pf.waitForLog(/status=deferred[\s\S]*status=deferred/, 20_000);
  const registry = createRegistry(false);
  const queueDir = path.join(pf.dir, 'spool');
  registerPostfixQueueMetrics(registry, queueDir, { log: silentLogger, cacheMs: 0 });
  // qmgr moves deferred mail back to active for each retry (every second here): count both.
  let text = '';
  const deadline = Date.now() + 20_000;
  for (;;) {
    text = await registry.metrics();
    const deferred = sample(text, 'ceerion_postfix_queue_messages', 'deferred') ?? 0;
    const active = sample(text, 'ceerion_postfix_queue_messages', 'active') ?? 0;
    if (deferred === 2 && active === 0) break;
    assert.ok(Date.now() < deadline, `expected 2 deferred and 0 active:\n${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(sample(text, 'ceerion_postfix_queue_messages', 'hold'), 1);
  assert.equal(sample(text, 'ceerion_postfix_queue_messages', 'incoming'), 0);
  const elapsed = (Date.now() - started) / 1000;
  for (const q of ['hold', 'deferred']) {
    const age = sample(text, 'ceerion_postfix_queue_oldest_seconds', q)!;
    assert.ok(age >= 0 && age <= elapsed + 1, `${q}: oldest ${age} s, but the test began ${elapsed} s ago`);
  }
  assert.equal(await pf.queueSize(), 3);
});
