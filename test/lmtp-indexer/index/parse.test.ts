/**
 * parseForIndex on real-shaped messages: what each kind of message gives the index, and the
 * limits (parts, depth, header bytes, text) that make an entry partial instead of failing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { parseForIndex, type ParseLimits } from '../../../lmtp-indexer/index/parse.ts';
import type { ParsedMessage } from '../../../lmtp-indexer/types.ts';

const LIMITS: ParseLimits = { maxTextBytes: 1024 * 1024, snippetChars: 200, maxParts: 500, maxDepth: 20, maxHeaderBytes: 256 * 1024 };

/** CRLF lines; `source` may carry raw bytes as \xNN (latin1 → bytes). */
const eml = (...lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'latin1');
const utf8 = (...lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'utf8');

function parse(message: Buffer | Iterable<Buffer>, limits: Partial<ParseLimits> = {}, chunk = 7): Promise<ParsedMessage> {
  // Small chunks: every boundary, header end and line ending lands split across reads somewhere.
  const chunks = Buffer.isBuffer(message) ? Array.from({ length: Math.ceil(message.length / chunk) }, (_, i) => message.subarray(i * chunk, (i + 1) * chunk)) : message;
  return parseForIndex(Readable.from(chunks), { ...LIMITS, ...limits });
}

const noNul = (m: ParsedMessage): void => {
  for (const [k, v] of Object.entries(m)) assert.ok(!JSON.stringify(v ?? '').includes('\\u0000'), `${k} has a NUL`);
};

test('a plain message: envelope headers, milter headers, queue id, text and snippet', async () => {
  const m = await parse(
    utf8(
      'Received: from mail.sender.example (mail.sender.example [192.0.2.1])',
      '\tby mx.example.org (Postfix) with ESMTPS id 4Xyz1AbC2d3Ef',
      '\tfor <bob@example.org>; Tue, 2 Jan 2024 10:00:01 +0100 (CET)',
      'Received: from older.example by mail.sender.example with ESMTP id OLDID123; Tue, 2 Jan 2024 09:59:00 +0100',
      'Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=alice@sender.example;',
      ' dkim=fail (bad signature) header.d=sender.example; dmarc=none header.from=sender.example',
      'Authentication-Results: mx.example.org; spf=fail',
      'X-Spam-Status: Yes, score=0.93 tests=BAYES',
      'From: "Alice Liddell" <alice@sender.example>',
      'To: bob@example.org, "Carol" <carol@example.org>',
      'Cc: team: dave@example.org, erin@example.org;',
      'Subject: Quarterly report',
      'Date: Tue, 2 Jan 2024 10:00:00 +0100',
      'Message-ID: <m1@sender.example>',
      'In-Reply-To: <p2@sender.example>',
      'References: <p1@sender.example>',
      '  <p2@sender.example>',
      '',
      'Hello   Bob,',
      '',
      'the numbers are in.',
      '',
    ),
  );
  assert.deepEqual(
    { ...m, text: undefined },
    {
      messageId: '<m1@sender.example>',
      inReplyTo: '<p2@sender.example>',
      references: ['<p1@sender.example>', '<p2@sender.example>'],
      fromAddress: 'alice@sender.example',
      fromName: 'Alice Liddell',
      to: ['bob@example.org', 'carol@example.org'],
      cc: ['dave@example.org', 'erin@example.org'],
      subject: 'Quarterly report',
      sentAt: '2024-01-02T09:00:00.000Z',
      attachments: [],
      spamScore: 0.93,
      spamStatus: 'Yes',
      authResults: 'mx.example.org; spf=pass smtp.mailfrom=alice@sender.example; dkim=fail (bad signature) header.d=sender.example; dmarc=none header.from=sender.example',
      spf: 'pass',
      dkim: 'fail',
      dmarc: 'none',
      queueId: '4Xyz1AbC2d3Ef',
      text: undefined,
      snippet: 'Hello Bob, the numbers are in.',
      problems: [],
    },
  );
  for (const word of ['Quarterly', 'Alice Liddell', 'alice@sender.example', 'carol@example.org', 'Carol', 'the numbers are in']) {
    assert.ok(m.text.includes(word), `text has ${word}`);
  }
});

test('X-Spam-Score wins over the score in X-Spam-Status; LMTP queue ids are read too', async () => {
  const m = await parse(eml('Received: from x by y with LMTP id 0AbCdEf12; now', 'X-Spam-Score: -1.5', 'X-Spam-Status: No, score=2.0', '', 'x'));
  assert.equal(m.spamScore, -1.5);
  assert.equal(m.spamStatus, 'No');
  assert.equal(m.queueId, '0AbCdEf12');
});

test('multipart/alternative: the plain text is indexed, the HTML twin is not added again', async () => {
  const m = await parse(
    eml(
      'Subject: alt',
      'Content-Type: multipart/alternative; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'plain version',
      '--b1',
      'Content-Type: text/html; charset=utf-8',
      '',
      '<p>html <b>version</b></p>',
      '--b1--',
      '',
    ),
  );
  assert.equal(m.snippet, 'plain version');
  assert.ok(!m.text.includes('html version'));
  assert.deepEqual(m.attachments, []);
});

test('HTML only, inside a multipart: converted to text (tags, scripts and link targets dropped)', async () => {
  const m = await parse(
    eml(
      'Subject: html',
      'Content-Type: multipart/mixed; boundary=X',
      '',
      '--X',
      'Content-Type: text/html; charset=iso-8859-1',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      '<html><head><style>p{color:red}</style></head><body><p>Caf=E9 <a href=3D"https://t.example/x">menu</a></p></body></html>',
      '--X--',
    ),
  );
  assert.equal(m.snippet, 'Café menu');
  assert.ok(!m.text.includes('t.example') && !m.text.includes('<p>') && !m.text.includes('color'));
});

test('attachments: sizes are decoded bytes, names decoded from RFC 2231 and encoded-words', async () => {
  const pdf = Buffer.alloc(3000, 7);
  const m = await parse(
    eml(
      // The space between adjacent encoded-words is not text (RFC 2047 6.2): it is encoded in the second.
      'Subject: =?UTF-8?B?UmFwcG9ydCDDqXTDqQ==?= =?ISO-8859-1?Q?_=E0_lire?=',
      'From: =?UTF-8?Q?Ren=C3=A9e?= <renee@example.fr>',
      'Content-Type: multipart/mixed; boundary=M',
      '',
      '--M',
      'Content-Type: text/plain',
      '',
      'see attached',
      '--M',
      'Content-Type: application/pdf',
      "Content-Disposition: attachment; filename*0*=UTF-8''r%C3%A9sum%C3%A9%20;",
      ' filename*1="2024.pdf"',
      'Content-Transfer-Encoding: base64',
      '',
      pdf.toString('base64').replace(/.{76}/g, '$&\r\n'),
      '--M',
      'Content-Type: text/plain; name="=?UTF-8?Q?notes_=C3=BC.txt?="',
      'Content-Disposition: attachment',
      '',
      'some notes',
      '--M--',
    ),
  );
  assert.equal(m.subject, 'Rapport été à lire');
  assert.equal(m.fromName, 'Renée');
  assert.deepEqual(m.attachments, [
    { name: 'résumé 2024.pdf', contentType: 'application/pdf', size: 3000 },
    { name: 'notes ü.txt', contentType: 'text/plain', size: 10 },
  ]);
  assert.ok(m.text.includes('résumé 2024.pdf') && m.text.includes('notes ü.txt'));
  assert.equal(m.snippet, 'see attached');
});

test('an attached message/rfc822 is one attachment; an inline one is read as text', async () => {
  const inner = ['From: x@inner.example', 'Subject: inner subject', '', 'inner body'];
  const outer = (disposition: string) =>
    eml('Subject: fwd', 'Content-Type: multipart/mixed; boundary=F', '', '--F', 'Content-Type: text/plain', '', 'outer body', '--F', 'Content-Type: message/rfc822', `Content-Disposition: ${disposition}`, '', ...inner, '--F--');
  const attached = await parse(outer('attachment; filename="fwd.eml"'));
  assert.deepEqual(attached.attachments, [{ name: 'fwd.eml', contentType: 'message/rfc822', size: Buffer.from(inner.join('\r\n')).length }]);
  assert.ok(!attached.text.includes('inner body'));
  const inline = await parse(outer('inline'));
  assert.deepEqual(inline.attachments, []);
  assert.ok(inline.text.includes('inner body') && inline.text.includes('outer body'));
});

test('broken input still gives an entry: bad base64, no boundary, NUL bytes, invalid UTF-8, bad dates', async () => {
  const b64 = await parse(eml('Subject: b64', 'Content-Transfer-Encoding: base64', '', '!!SGVsbG8gd29y bGQ=*** ==garbage', ''));
  assert.equal(b64.snippet.slice(0, 11), 'Hello world');

  const noBoundary = await parse(eml('Subject: nb', 'Content-Type: multipart/mixed', '', 'the body is still text', ''));
  assert.equal(noBoundary.snippet, 'the body is still text');
  assert.deepEqual(noBoundary.problems, ['a multipart part has no boundary; its body was read as plain text']);

  const unclosed = await parse(eml('Content-Type: multipart/mixed; boundary=U', '', '--U', 'Content-Type: text/plain', '', 'never closed'));
  assert.equal(unclosed.snippet, 'never closed');

  const nul = await parse(eml('Subject: a\x00b', 'From: "N\x00ul" <n@x.example>', 'Date: not a date', '', 'x\x00y \xff\xfe\xc3( end'));
  noNul(nul);
  assert.equal(nul.subject, 'ab');
  assert.equal(nul.sentAt, null);
  assert.equal(nul.snippet, 'xy \uFFFD\uFFFD\uFFFD( end');

  const farDate = await parse(eml('Date: Sat, 1 Jan 99999 00:00:00 +0000', '', 'x'));
  assert.equal(farDate.sentAt, null);

  // A UTF-16 part with an odd byte count decodes to a lone surrogate: replaced, never stored.
  const u16 = await parse(eml('Content-Type: text/plain; charset=utf-16le', '', '\x00\xd8A\x00'));
  assert.ok(!/[\uD800-\uDFFF]/.test(u16.text));
});

test('a message that is only a header, or nothing at all', async () => {
  const empty = await parse(Buffer.alloc(0));
  assert.equal(empty.text, '');
  assert.deepEqual(empty.problems, []);
  const headerOnly = await parse(eml('Subject: just this'));
  assert.equal(headerOnly.subject, 'just this');
});

test('1,000 parts: the first maxParts are indexed, the rest noted', async () => {
  function* message() {
    yield Buffer.from('Subject: many\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n');
    for (let i = 0; i < 1000; i++) yield Buffer.from(`--b\r\nContent-Type: ${i % 2 ? 'text/plain' : 'application/octet-stream'}\r\n\r\npart${i}\r\n`);
    yield Buffer.from('--b--\r\n');
  }
  const capped = await parse(message(), { maxParts: 500 });
  // The root is a part too: 499 children, every other one an attachment.
  assert.equal(capped.attachments.length, 250);
  assert.ok(capped.text.includes('part497') && !capped.text.includes('part499'));
  assert.deepEqual(capped.problems, ['more than 500 MIME parts; the rest was not indexed']);
  const all = await parse(message(), { maxParts: 2000 });
  assert.equal(all.attachments.length, 500);
  assert.ok(all.text.includes('part999'));
  assert.deepEqual(all.problems, []);
});

test('nesting deeper than maxDepth: the outer levels are indexed', async () => {
  function* message() {
    yield Buffer.from('Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n');
    for (let i = 1; i < 5000; i++) yield Buffer.from(`--b${i - 1}\r\nContent-Type: multipart/mixed; boundary=b${i}\r\n\r\n`);
  }
  const m = await parse(message(), { maxDepth: 20 });
  assert.equal(m.subject, 'deep');
  assert.deepEqual(m.problems, ['MIME parts nested deeper than 20; the rest was not indexed']);
  const shallow = await parse(
    eml('Content-Type: multipart/mixed; boundary=a', '', '--a', 'Content-Type: multipart/mixed; boundary=b', '', '--b', '', 'level two', '--b--', '--a--'),
    { maxDepth: 2 },
  );
  assert.equal(shallow.snippet, 'level two');
  assert.deepEqual(shallow.problems, []);
});

test('header bombs: a 10 MB header line and 100,000 headers are cut; what fits and the body are kept', async () => {
  function* longLine() {
    yield Buffer.from('Subject: bomb\r\nX-Big: ');
    for (let i = 0; i < 160; i++) yield Buffer.alloc(65536, 0x61);
    yield Buffer.from('\r\nFrom: late@x.example\r\n\r\nbody after the bomb\r\n');
  }
  const one = await parse(longLine());
  assert.equal(one.subject, 'bomb');
  assert.equal(one.fromAddress, null, 'headers after the cut are not read');
  assert.equal(one.snippet, 'body after the bomb');
  assert.deepEqual(one.problems, ['the header is larger than 262144 bytes; only its first lines were read']);

  function* many() {
    yield Buffer.from('Subject: bomb2\r\n');
    for (let i = 0; i < 100_000; i++) yield Buffer.from(`X-H${i}: v${i}\n`);
    yield Buffer.from('\nbody after many\n');
  }
  const two = await parse(many(), { maxHeaderBytes: 64 * 1024 });
  assert.equal(two.subject, 'bomb2');
  assert.equal(two.snippet, 'body after many');
  assert.equal(two.problems.length, 1);

  // A nested part's header over the limit stops the parse there; what came before is kept.
  const nested = await parse(
    Buffer.concat([
      eml('Subject: nb', 'Content-Type: multipart/mixed; boundary=b', '', '--b', 'Content-Type: text/plain', '', 'first part', '--b', 'X-Big: '),
      Buffer.alloc(300 * 1024, 0x61),
      eml('', '', 'second', '--b--'),
    ]),
  );
  assert.equal(nested.subject, 'nb');
  assert.ok(!nested.text.includes('second'));
  assert.deepEqual(nested.problems, ["a MIME part's header is larger than the limit; the rest was not indexed"]);
});

test('text over maxTextBytes is cut (at a character boundary) and noted; the snippet is snippetChars', async () => {
  const word = 'été ';
  const m = await parse(utf8('Subject: big', 'Content-Type: text/plain; charset=utf-8', '', word.repeat(100_000)), { maxTextBytes: 10_001, snippetChars: 9 }, 64 * 1024);
  assert.ok(Buffer.byteLength(m.text) <= 10_001 && Buffer.byteLength(m.text) > 9_990);
  assert.ok(!m.text.includes('\uFFFD'));
  assert.equal(m.snippet, 'été été é');
  assert.ok(m.problems.some((p) => p.startsWith('the text')));
});

test('an input stream that fails midway resolves with what was read', async () => {
  const input = new Readable({ read() {} });
  const parsed = parseForIndex(input, LIMITS);
  input.push(eml('Subject: cut short', '', 'first line', ''));
  setImmediate(() => input.destroy(new Error('spool file vanished')));
  const m = await parsed;
  assert.equal(m.subject, 'cut short');
  assert.ok(m.problems.some((p) => p.includes('spool file vanished')));
});

test('parse speed for a 10 KB message (reported, not asserted)', async (t) => {
  const body = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(170);
  const message = utf8('From: a@b.example', 'To: c@d.example', 'Subject: ten', 'Message-ID: <x@y>', '', body);
  assert.ok(message.length > 9_500 && message.length < 10_500);
  const runs = 500;
  const started = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) await parseForIndex(Readable.from([message]), LIMITS);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  t.diagnostic(`10 KB message: ${Math.round(runs / seconds)} msgs/s (${((seconds / runs) * 1000).toFixed(2)} ms each)`);
});

test('a message mailparser never finishes (found by the fuzzer) still resolves, with the stall noted', async () => {
  // A top-level message/rfc822 whose inner header runs past maxHeaderBytes in one long line.
  const input = Buffer.from('WC1go0dOXI0bCkNvbnRlbnQtVHlwZTogbWVzc2FnZS9yZmM4MjI7IGNoYXJzZXQ9Z2IyMzEyCkNvbnRlbnQtVHJhbnNmZXItRW5jb2Rpbmc6IDhiaXQKQ29udGVudC1EaXNwb3NpdGlvbjogaW5saW5lCkZyb206IHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4DQp4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA==', 'base64');
  const m = await parseForIndex(Readable.from([input]), { maxTextBytes: 2048, snippetChars: 40, maxParts: 12, maxDepth: 4, maxHeaderBytes: 1024 });
  assert.ok(m.problems.some((p) => /stalled/.test(p)), m.problems.join('; '));
});
