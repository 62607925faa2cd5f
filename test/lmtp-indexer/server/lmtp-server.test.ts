// The LMTP server's protocol behaviour over a real socket, with the relay and the index given as
// in-process functions: what Postfix sees for each per-recipient outcome. The real Dovecot and
// PostgreSQL paths are covered in test/lmtp-indexer/e2e.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { test, type TestContext } from 'node:test';
import { configSchema } from '../../../core/config/schema.ts';
import { createLogger, silentLogger, type Logger } from '../../../core/log.ts';
import { createPool } from '../../../core/db/pool.ts';
import { insertAccount } from '../../../accounts/repository.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import { DeliveryPipeline, type IndexSink, type RelayFn } from '../../../lmtp-indexer/server/delivery.ts';
import { LmtpServer } from '../../../lmtp-indexer/server/lmtp-server.ts';
import { accountLookup, accountOfRecipient } from '../../../lmtp-indexer/server/recipient-lookup.ts';
import type { IndexRecord, ParsedMessage, RecipientReply } from '../../../lmtp-indexer/types.ts';
import { lmtpSend } from '../../helpers/lmtp-client.ts';
import { testSchema } from '../../harness/postgres.ts';

const parsed: ParsedMessage = {
  messageId: null, inReplyTo: null, references: [], fromAddress: null, fromName: null, to: [], cc: [], subject: 'x', sentAt: null,
  attachments: [], spamScore: null, spamStatus: null, authResults: null, spf: null, dkim: null, dmarc: null, queueId: null, text: '', snippet: '', problems: [],
};

class MemoryIndex implements IndexSink {
  readonly rows: IndexRecord[] = [];
  async has(account: string, sha: string) {
    return this.rows.some((r) => r.account === account && r.contentSha256 === sha);
  }
  async write(records: IndexRecord[]) {
    this.rows.push(...records);
    return { status: 'indexed' as const, inserted: records.length };
  }
}

interface Setup {
  port: number;
  index: MemoryIndex;
  relayed: Array<{ rcpts: string[]; body: string }>;
  spoolDir: string;
}

async function start(t: TestContext, answer: (rcpts: string[]) => RecipientReply[] | Promise<RecipientReply[]>, extra: { maxMessageBytes?: number; lookupPool?: Parameters<typeof accountLookup>[0]; log?: Logger } = {}): Promise<Setup> {
  const spoolDir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-lmtp-spool-'));
  t.after(() => rm(spoolDir, { recursive: true, force: true }));
  const config = configSchema.parse({ lmtp: { listen: 'inet:127.0.0.1:0', spoolDir, ...(extra.maxMessageBytes ? { maxMessageBytes: extra.maxMessageBytes } : {}) } }).lmtp;
  const index = new MemoryIndex();
  const relayed: Setup['relayed'] = [];
  const relay: RelayFn = async (envelope, body) => {
    const rcpts = envelope.recipients.map((r) => r.address);
    relayed.push({ rcpts, body: await text(body()) });
    return answer(rcpts);
  };
  const accountOf = accountOfRecipient('+');
  const delivery = new DeliveryPipeline({ relay, parse: async (input) => (await text(input), parsed), index, language: 'simple', accountOf });
  const server = new LmtpServer({
    config,
    hostname: 'mx.test',
    log: extra.log ?? silentLogger,
    delivery,
    ...(extra.lookupPool ? { recipientCheck: accountLookup(extra.lookupPool, config.recipientLookup, accountOf) } : {}),
  });
  const address = await server.listen();
  t.after(() => server.stop());
  return { port: Number(address.split(':').pop()), index, relayed, spoolDir };
}

const message = 'From: a@b.test\r\nTo: x@y.test\r\nSubject: hi\r\n\r\nHello\r\n.starts with a dot\r\n';
const ok = (): RecipientReply => ({ code: 250, enhanced: '2.0.0', message: 'Saved' });

test('LHLO advertises the RFC 2033 extensions Postfix uses', async (t) => {
  const s = await start(t, (r) => r.map(ok));
  const tr = await lmtpSend({ port: s.port }, { from: 'a@b.test', to: ['alice@example.test'], message });
  assert.match(tr.greeting.line, /^220 .*LMTP/);
  const ext = tr.lhlo.lines.map((l) => l.slice(4));
  for (const e of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES']) assert.ok(ext.includes(e), `${e} in ${ext.join(',')}`);
  assert.ok(ext.some((e) => /^SIZE \d+$/.test(e)));
});

test('each recipient gets its own answer after DATA, in RCPT order, with the enhanced code Dovecot sent', async (t) => {
  const s = await start(t, () => [ok(), { code: 552, enhanced: '5.2.2', message: 'Quota exceeded (mailbox for user is full)' }, { code: 451, enhanced: '4.4.1', message: 'Dovecot unreachable' }]);
  const tr = await lmtpSend({ port: s.port }, { from: 'a@b.test', to: ['alice@example.test', 'full@example.test', 'carol@example.test'], message });
  assert.deepEqual(tr.rcpts.map((r) => r.code), [250, 250, 250]);
  assert.deepEqual(
    tr.results.map((r) => r.line),
    ['250 2.0.0 Saved', '552 5.2.2 Quota exceeded (mailbox for user is full)', '451 4.4.1 Dovecot unreachable'],
  );
  // Only the accepted recipient is indexed; the body reached the relay unstuffed and whole.
  assert.deepEqual(s.index.rows.map((r) => r.account), ['alice@example.test']);
  assert.equal(s.relayed[0]!.body, message);
  assert.deepEqual(await readdir(s.spoolDir), [], 'spool file removed');
});

test('a retried message that was already delivered is answered 250 without a second relay', async (t) => {
  const s = await start(t, (r) => r.map(ok));
  const first = await lmtpSend({ port: s.port }, { from: 'a@b.test', to: ['Alice+news@Example.test'], message });
  const again = await lmtpSend({ port: s.port }, { from: 'a@b.test', to: ['alice+news@example.test', 'bob@example.test'], message });
  assert.equal(first.results[0]!.code, 250);
  assert.match(again.results[0]!.line, /^250 2\.0\.0 Already delivered/);
  assert.equal(again.results[1]!.code, 250);
  assert.deepEqual(s.relayed.map((r) => r.rcpts), [['Alice+news@Example.test'], ['bob@example.test']]);
  assert.deepEqual(s.index.rows.map((r) => r.account), ['alice@example.test', 'bob@example.test']);
});

test('a failing delivery is a 451 for every recipient, so Postfix keeps the message', async (t) => {
  const s = await start(t, () => {
    throw new Error('boom');
  });
  const tr = await lmtpSend({ port: s.port }, { from: '', to: ['alice@example.test', 'bob@example.test'], message });
  assert.equal(tr.results.length, 2);
  for (const r of tr.results) assert.match(r.line, /^451 4\.3\.0 Local error in processing \(ref [0-9a-f]{10}\)/);
  assert.equal(s.index.rows.length, 0);
});

test('a message over SIZE gets 552 for each recipient and is not relayed', async (t) => {
  const s = await start(t, (r) => r.map(ok), { maxMessageBytes: 1000 });
  const tr = await lmtpSend({ port: s.port }, { from: 'a@b.test', to: ['alice@example.test', 'bob@example.test'], message: `${message}${'x'.repeat(2000)}\r\n` });
  assert.deepEqual(tr.results.map((r) => r.code), [552, 552]);
  assert.equal(s.relayed.length, 0);
});

test('with a recipient lookup, unknown recipients are refused at RCPT and the rest delivered', async (t) => {
  const pool = createPool(testSchema(t));
  t.after(() => pool.end());
  await migrateIndex(pool);
  await insertAccount(pool, { address: 'alice@example.test', passwordHash: '{PLAIN}x' });
  const s = await start(t, (r) => r.map(ok), { lookupPool: pool });
  const tr = await lmtpSend({ port: s.port }, { from: 'a@b.test', to: ['nobody@example.test', 'ALICE+x@example.test'], message });
  assert.match(tr.rcpts[0]!.line, /^550 5\.1\.1 <nobody@example\.test>: no such user here/);
  assert.equal(tr.rcpts[1]!.code, 250);
  assert.deepEqual(tr.results.map((r) => r.code), [250]);
  assert.deepEqual(s.relayed[0]!.rcpts, ['ALICE+x@example.test']);
});

test('the delivered line carries the Postfix queue id from the top Received header (mail:logs --queue-id)', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('info', 'lmtp', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const s = await start(t, (r) => r.map(ok), { log });
  const traced = `Received: from mx.example.net (mx.example.net [192.0.2.7])\r\n\tby mail.example.test (Postfix) with ESMTP id 4F3A2B1C0D\r\n\tfor <alice@example.test>; Sun, 22 Nov 2026 03:00:00 +0000\r\n${message}`;
  await lmtpSend({ port: s.port }, { from: 'a@b.test', to: ['alice@example.test'], message: traced });
  await lmtpSend({ port: s.port }, { from: 'a@b.test', to: ['alice@example.test'], message: message.replace('hi', 'untraced') });
  const delivered = lines.filter((l) => l.msg === 'delivered');
  assert.equal(delivered.length, 2);
  assert.equal(delivered[0]!.qid, '4F3A2B1C0D');
  assert.equal('qid' in delivered[1]!, false, 'no Received header: no made-up id');
});
