// Hostile and broken messages straight to our LMTP server, with the real Dovecot and PostgreSQL
// behind it: each one is delivered (Dovecot decides) and indexed with what could be read, and the
// server keeps serving. 50 MB goes through too, with the process's memory bounded.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lmtpSend } from '../../helpers/lmtp-client.ts';
import { DOMAIN, startLmtpStack } from './stack.ts';

const head = (subject: string, extra: string[] = []) => [`From: fuzz@example.net`, `To: alice@${DOMAIN}`, `Subject: ${subject}`, `Message-ID: <${subject}@example.net>`, ...extra].join('\r\n');

function manyParts(n: number): string {
  const parts = Array.from({ length: n }, (_, i) => `--b\r\nContent-Type: text/plain; name="part${i}.txt"\r\nContent-Disposition: attachment; filename="part${i}.txt"\r\n\r\npart ${i}\r\n`);
  return `${head('thousand-parts', ['MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b"'])}\r\n\r\n${parts.join('')}--b--\r\n`;
}

function bigMessage(bytes: number): Buffer {
  const line = `${'abcdefghij'.repeat(7)}xyz\r\n`;
  const body = line.repeat(Math.ceil(bytes / line.length));
  return Buffer.from(`${head('fifty-megabytes')}\r\n\r\n${body}`, 'latin1');
}

const cases: Array<[string, string | Buffer]> = [
  ['malformed-mime', `${head('malformed-mime', ['MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary='])}\r\n\r\n--\r\nContent-Type: text/html\r\n\r\n<b>unclosed <i>tags\r\n--nope--\r\n`],
  ['nul-bytes', `${head('nul-bytes')}\r\n\r\nbefore\u0000after\u0000\u0000 nul\r\n`],
  ['invalid-utf8', Buffer.concat([Buffer.from(`${head('invalid-utf8', ['Content-Type: text/plain; charset=utf-8'])}\r\n\r\nbroken `), Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xf0, 0x28, 0x8c, 0x28, 0xff, 0xfe]), Buffer.from(' bytes\r\n')])],
  ['header-bomb', `${head('header-bomb', Array.from({ length: 5000 }, (_, i) => `X-Bomb-${i}: ${'h'.repeat(60)}`))}\r\n\r\nbody after a header bomb\r\n`],
  ['bad-base64', `${head('bad-base64', ['MIME-Version: 1.0', 'Content-Type: application/pdf; name="x.pdf"', 'Content-Transfer-Encoding: base64'])}\r\n\r\n!!!not*base64@@@\r\n`],
  ['thousand-parts', manyParts(1000)],
];

test('broken and hostile messages are each delivered and indexed, and the server keeps serving', async (t) => {
  const stack = await startLmtpStack(t);
  const port = Number(stack.service.address.split(':').pop());
  for (const [name, message] of cases) {
    const tr = await lmtpSend({ port }, { from: 'fuzz@example.net', to: [`alice@${DOMAIN}`], message });
    assert.equal(tr.results[0]?.code, 250, `${name}: ${tr.results[0]?.line}`);
  }
  const { rows } = await stack.pool.query<{ subject: string; parse_problems: string[]; snippet: string; attachments: unknown[] }>(
    'SELECT subject, parse_problems, snippet, attachments FROM indexed_messages ORDER BY id',
  );
  assert.deepEqual(rows.map((r) => r.subject), cases.map(([n]) => n));
  const bySubject = Object.fromEntries(rows.map((r) => [r.subject, r]));
  assert.ok(!bySubject['nul-bytes']!.snippet.includes('\u0000'));
  assert.match(bySubject['nul-bytes']!.snippet, /before.?after/);
  assert.ok(bySubject['thousand-parts']!.parse_problems.length > 0, 'the part limit is recorded');
  assert.ok(bySubject['thousand-parts']!.attachments.length > 0);
  const imap = await stack.imap('alice');
  const status = await imap.status('INBOX', { messages: true });
  assert.ok(status);
  assert.equal(status.messages, cases.length, 'Dovecot has every message');
});

test('a 50 MB message is delivered and indexed', async (t) => {
  const stack = await startLmtpStack(t);
  const port = Number(stack.service.address.split(':').pop());
  const message = bigMessage(50 * 1024 * 1024);
  const tr = await lmtpSend({ port }, { from: 'big@example.net', to: [`alice@${DOMAIN}`, `bob@${DOMAIN}`], message }, 180_000);
  assert.deepEqual(tr.results.map((r) => r.code), [250, 250]);
  const { rows } = await stack.pool.query<{ size_bytes: string; parse_problems: string[] }>('SELECT size_bytes, parse_problems FROM indexed_messages');
  assert.equal(rows.length, 2);
  assert.equal(Number(rows[0]!.size_bytes), message.length);
  assert.ok(rows[0]!.parse_problems.some((p) => /text/i.test(p)), `text cap recorded: ${rows[0]!.parse_problems.join('; ')}`);
  const imap = await stack.imap('bob');
  const status = await imap.status('INBOX', { messages: true });
  assert.ok(status);
  assert.equal(status.messages, 1);
});

test('a retried delivery of a message Dovecot already has is answered 250 without a second copy or row', async (t) => {
  const stack = await startLmtpStack(t);
  const port = Number(stack.service.address.split(':').pop());
  // The same bytes twice: what Postfix sends again when our 250 was lost (it adds nothing on retry).
  const message = `${head('retried')}\r\n\r\nsame bytes twice\r\n`;
  const first = await lmtpSend({ port }, { from: 'a@example.net', to: [`alice@${DOMAIN}`], message });
  const again = await lmtpSend({ port }, { from: 'a@example.net', to: [`alice@${DOMAIN}`, `bob@${DOMAIN}`], message });
  assert.equal(first.results[0]!.code, 250);
  assert.match(again.results[0]!.line, /^250 2\.0\.0 Already delivered/);
  assert.equal(again.results[1]!.code, 250, 'a recipient that did not have it yet gets it');
  const alice = await stack.imap('alice');
  const status = await alice.status('INBOX', { messages: true });
  assert.ok(status);
  assert.equal(status.messages, 1, 'one copy in Dovecot');
  const { rows } = await stack.pool.query<{ account: string }>('SELECT account FROM indexed_messages ORDER BY account');
  assert.deepEqual(rows.map((r) => r.account), [`alice@${DOMAIN}`, `bob@${DOMAIN}`]);
});
