/**
 * parseMessage on real-looking messages: plain, multipart/alternative, nested mixed with
 * attachments, base64 and quoted-printable, encoded-word subjects, unknown charsets, CRLF vs LF,
 * message/rfc822, and every limit.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseMessage } from '../../../classifier/mime/parse.ts';
import type { ParseLimits, ParsedMessage } from '../../../classifier/types.ts';

const LIMITS: ParseLimits = { maxBytes: 1 << 20, maxHeaderBytes: 64 * 1024, maxParts: 100, maxDepth: 10 };

const lf = (lines: string[]) => Buffer.from(lines.join('\n'), 'utf8');
const crlf = (lines: string[]) => Buffer.from(lines.join('\r\n'), 'utf8');
const b64 = (s: string, enc: BufferEncoding = 'utf8') => Buffer.from(s, enc).toString('base64').replace(/.{1,76}/g, '$&\n').trimEnd();
const header = (m: ParsedMessage, name: string) => m.headers.find((h) => h.name === name)?.value;

const PLAIN = [
  'Return-Path: <alice@example.org>',
  'Received: from mail.example.org (mail.example.org [192.0.2.10])',
  '\tby mx.example.net (Postfix) with ESMTP id 4F2A1;',
  '\tMon, 2 Sep 2002 10:00:00 +0000',
  'From: "Alice Example" <alice@example.org>',
  'To: bob@example.net',
  'Subject: Quarterly',
  ' figures',
  'Date: Mon, 2 Sep 2002 10:00:00 +0000',
  'Message-ID: <123@example.org>',
  '',
  'Hello Bob,',
  '',
  'the figures are attached.',
  '',
];

const ALTERNATIVE = [
  'From: shop@example.com',
  'Subject: =?utf-8?B?' + Buffer.from('Größte Auswahl – jetzt', 'utf8').toString('base64') + '?=',
  'MIME-Version: 1.0',
  'Content-Type: multipart/alternative; boundary="b1"',
  '',
  'This is a multi-part message in MIME format.',
  '',
  '--b1',
  'Content-Type: text/plain; charset=iso-8859-1',
  'Content-Transfer-Encoding: quoted-printable',
  '',
  'Gr=F6=DFte Auswahl, jetzt bestellen! Ein sehr langer Satz, der umgebrochen =',
  'wird.',
  '--b1',
  'Content-Type: text/html; charset="utf-8"',
  'Content-Transfer-Encoding: base64',
  '',
  b64('<p>Größte <b>Auswahl</b></p>'),
  '--b1--',
  '',
  'epilogue is ignored',
];

const NESTED = [
  'From: a@example.com',
  'Subject: report',
  'Content-Type: multipart/mixed;',
  '  boundary="----=_NextPart_000"',
  '',
  '------=_NextPart_000',
  'Content-Type: multipart/alternative; boundary="----=_NextPart_000_0001"',
  '',
  '------=_NextPart_000_0001',
  'Content-Type: text/plain',
  '',
  'plain body',
  '------=_NextPart_000_0001',
  'Content-Type: text/html',
  '',
  '<html><body>html body</body></html>',
  '------=_NextPart_000_0001--',
  '',
  '------=_NextPart_000',
  'Content-Type: application/pdf; name="old.pdf"',
  'Content-Transfer-Encoding: base64',
  "Content-Disposition: attachment; filename*=utf-8''Gr%C3%B6%C3%9Fe%20Liste.pdf",
  '',
  b64('%PDF-1.4 fake'),
  '------=_NextPart_000',
  'Content-Type: image/gif; name="=?iso-8859-1?Q?b=E4r.gif?="',
  'Content-Transfer-Encoding: base64',
  '',
  'R0lGODlhAQABAAAAACw=',
  '------=_NextPart_000--',
  '',
];

test('plain LF message: headers unfolded, body decoded, no defects', () => {
  const m = parseMessage(lf(PLAIN), LIMITS);
  assert.equal(header(m, 'subject'), 'Quarterly figures');
  assert.equal(header(m, 'from'), '"Alice Example" <alice@example.org>');
  assert.equal(m.headers.filter((h) => h.name === 'received').length, 1);
  assert.match(header(m, 'received')!, /^from mail\.example\.org .* with ESMTP id 4F2A1;\s+Mon, 2 Sep 2002/);
  assert.deepEqual(m.textParts, ['Hello Bob,\n\nthe figures are attached.\n']);
  assert.deepEqual(m.htmlParts, []);
  assert.deepEqual(m.stats.defects, []);
  assert.equal(m.stats.parts, 1);
  assert.equal(m.stats.depth, 0);
  assert.equal(m.stats.truncated, false);
});

test('CRLF and LF versions of the same messages parse alike', () => {
  for (const lines of [PLAIN, ALTERNATIVE, NESTED]) {
    const a = parseMessage(lf(lines), LIMITS);
    const b = parseMessage(crlf(lines), LIMITS);
    assert.deepEqual(b.headers, a.headers);
    assert.deepEqual(b.textParts.map((t) => t.replace(/\r\n/g, '\n')), a.textParts);
    assert.deepEqual(b.htmlParts.map((t) => t.replace(/\r\n/g, '\n')), a.htmlParts);
    assert.deepEqual(b.attachments.map((x) => [x.contentType, x.filename]), a.attachments.map((x) => [x.contentType, x.filename]));
    assert.deepEqual(b.stats.defects, a.stats.defects);
  }
});

test('multipart/alternative: QP latin-1 text and base64 UTF-8 HTML, encoded-word subject', () => {
  const m = parseMessage(lf(ALTERNATIVE), LIMITS);
  assert.equal(header(m, 'subject'), 'Größte Auswahl – jetzt');
  assert.deepEqual(m.textParts, ['Größte Auswahl, jetzt bestellen! Ein sehr langer Satz, der umgebrochen wird.']);
  assert.deepEqual(m.htmlParts, ['<p>Größte <b>Auswahl</b></p>']);
  assert.equal(m.stats.parts, 3);
  assert.equal(m.stats.depth, 1);
  assert.deepEqual(m.stats.defects, []);
});

test('nested multipart/mixed: inner boundary extends the outer one; attachments with RFC 2231 and RFC 2047 names', () => {
  const m = parseMessage(lf(NESTED), LIMITS);
  assert.deepEqual(m.textParts, ['plain body']);
  assert.deepEqual(m.htmlParts, ['<html><body>html body</body></html>']);
  assert.deepEqual(
    m.attachments.map((a) => [a.contentType, a.filename]),
    [
      ['application/pdf', 'Größe Liste.pdf'],
      ['image/gif', 'bär.gif'],
    ],
  );
  assert.ok(m.attachments[0]!.size > 0);
  assert.equal(m.stats.parts, 6);
  assert.equal(m.stats.depth, 2);
  assert.deepEqual(m.stats.defects, []);
});

test('encoded-word subjects: UTF-8 B, ISO-8859-1 Q, KOI8-R B, adjacent words, split characters', () => {
  const koi8 = Buffer.from([0xf0, 0xd2, 0xc9, 0xd7, 0xc5, 0xd4]).toString('base64'); // "Привет"
  const euro = Buffer.from('€', 'utf8');
  const cases: Array<[string, string]> = [
    ['=?UTF-8?B?' + Buffer.from('héllo wörld', 'utf8').toString('base64') + '?=', 'héllo wörld'],
    ['=?ISO-8859-1?Q?Caf=E9_cr=E8me?= and more', 'Café crème and more'],
    ['=?koi8-r?B?' + koi8 + '?=', 'Привет'],
    ['=?utf-8?q?a?= =?utf-8?q?b?=', 'ab'],
    ['=?utf-8?q?a?=  x  =?utf-8?q?b?=', 'a  x  b'],
    // One character split over two words decodes once the bytes are joined.
    [`=?utf-8?B?${euro.subarray(0, 1).toString('base64')}?= =?utf-8?B?${euro.subarray(1).toString('base64')}?=`, '€'],
    ['=?iso-8859-1*en?Q?na=EFve?=', 'naïve'],
    ['no =? encoded word ?= here', 'no =? encoded word ?= here'],
    ['=?utf-8?x?bad?=', '=?utf-8?x?bad?='],
  ];
  for (const [raw, want] of cases) {
    const m = parseMessage(lf(['Subject: ' + raw, '', 'x']), LIMITS);
    assert.equal(header(m, 'subject'), want, raw);
  }
});

test('unknown charset decodes as latin1 and sets badCharset; undeclared 8-bit text is UTF-8 when valid', () => {
  const unknown = parseMessage(Buffer.concat([lf(['Content-Type: text/plain; charset=x-klingon', '', '']), Buffer.from([0x61, 0xe9, 0x62])]), LIMITS);
  assert.deepEqual(unknown.textParts, ['aéb']);
  assert.equal(unknown.stats.badCharset, true);
  const undeclared = parseMessage(lf(['Subject: x', '', 'naïve café']), LIMITS);
  assert.deepEqual(undeclared.textParts, ['naïve café']);
  assert.equal(undeclared.stats.badCharset, false);
  const cp1252 = parseMessage(Buffer.concat([lf(['Content-Type: text/plain; charset=iso-8859-1', '', '']), Buffer.from([0x80, 0x20, 0x93, 0x71, 0x94])]), LIMITS);
  assert.deepEqual(cp1252.textParts, ['€ “q”']);
  const windowsName = parseMessage(lf(['Content-Type: text/html; charset="GB2312_CHARSET"', '', 'x']), LIMITS);
  assert.equal(windowsName.stats.badCharset, false);
});

test('message/rfc822: inner text joins the parts, inner headers do not, depth counts it', () => {
  const m = parseMessage(
    lf([
      'From: fwd@example.com',
      'Subject: Fwd: hello',
      'Content-Type: multipart/mixed; boundary=outer',
      '',
      '--outer',
      'Content-Type: text/plain',
      '',
      'see below',
      '--outer',
      'Content-Type: message/rfc822',
      '',
      'From: orig@example.org',
      'Subject: inner subject',
      'Content-Type: text/html; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      '<b>inner =C3=A9</b>',
      '--outer--',
    ]),
    LIMITS,
  );
  assert.deepEqual(m.textParts, ['see below']);
  assert.deepEqual(m.htmlParts, ['<b>inner é</b>']);
  assert.equal(header(m, 'subject'), 'Fwd: hello');
  assert.equal(m.headers.some((h) => h.value === 'inner subject'), false);
  assert.equal(m.stats.depth, 2);
  assert.equal(m.stats.parts, 4);

  const attached = parseMessage(
    lf(['Content-Type: multipart/mixed; boundary=o', '', '--o', 'Content-Type: message/rfc822', 'Content-Disposition: attachment; filename="fwd.eml"', '', 'Subject: in', '', 'forwarded text', '--o--']),
    LIMITS,
  );
  assert.deepEqual(attached.textParts, ['forwarded text']);
  assert.deepEqual(attached.attachments.map((a) => [a.contentType, a.filename]), [['message/rfc822', 'fwd.eml']]);
});

test('missing or invalid Content-Type reads as text/plain', () => {
  const none = parseMessage(lf(['Subject: x', '', 'body']), LIMITS);
  assert.deepEqual(none.textParts, ['body']);
  const bad = parseMessage(lf(['Content-Type: garbage', '', 'body']), LIMITS);
  assert.deepEqual(bad.textParts, ['body']);
  assert.ok(bad.stats.defects.includes('bad-content-type'));
  const noSemicolon = parseMessage(lf(['Content-Type: TEXT/HTML charset=US-ASCII', '', '<b>x</b>']), LIMITS);
  assert.deepEqual(noSemicolon.htmlParts, ['<b>x</b>']);
});

test('header block without a blank line: the first non-field line starts the body; mbox From line skipped', () => {
  const m = parseMessage(lf(['From sender@example.com Mon Sep  2 10:00:00 2002', 'Subject: hi', 'this line is body', 'and this']), LIMITS);
  assert.equal(header(m, 'subject'), 'hi');
  assert.deepEqual(m.textParts, ['this line is body\nand this']);
  assert.ok(m.stats.defects.includes('no-header-separator'));
  const onlyHeaders = parseMessage(lf(['Subject: hi', 'From: a@b.c']), LIMITS);
  assert.equal(onlyHeaders.headers.length, 2);
  assert.deepEqual(onlyHeaders.textParts, ['']);
});

test('multipart defects: missing close, missing boundary parameter, boundary never found', () => {
  const unclosed = parseMessage(lf(['Content-Type: multipart/mixed; boundary=b', '', '--b', '', 'one', '--b', '', 'two']), LIMITS);
  assert.deepEqual(unclosed.textParts, ['one', 'two']);
  assert.ok(unclosed.stats.defects.includes('multipart-unclosed'));
  const noParam = parseMessage(lf(['Content-Type: multipart/mixed', '', 'text']), LIMITS);
  assert.deepEqual(noParam.textParts, ['text']);
  assert.ok(noParam.stats.defects.includes('multipart-no-boundary'));
  const notFound = parseMessage(lf(['Content-Type: multipart/mixed; boundary=zzz', '', '--other', 'text']), LIMITS);
  assert.deepEqual(notFound.textParts, ['--other\ntext']);
  assert.ok(notFound.stats.defects.includes('multipart-boundary-not-found'));
  const trailingBlanks = parseMessage(lf(['Content-Type: multipart/mixed; boundary=b', '', '--b  ', '', 'one', '--b-- ', '']), LIMITS);
  assert.deepEqual(trailingBlanks.textParts, ['one']);
  assert.deepEqual(trailingBlanks.stats.defects, []);
});

test('transfer encodings: tolerant base64, quoted-printable soft breaks, 8bit, unknown', () => {
  const garbage = parseMessage(lf(['Content-Transfer-Encoding: base64', '', 'aGVs bG8g!!', '   d29y', 'bGQ=']), LIMITS);
  assert.deepEqual(garbage.textParts, ['hello world']);
  assert.ok(garbage.stats.defects.includes('bad-base64'));
  const concatenated = parseMessage(lf(['Content-Transfer-Encoding: BASE64', '', 'aGk=', 'aGk=']), LIMITS);
  assert.deepEqual(concatenated.textParts, ['hihi']);
  const qp = parseMessage(crlf(['Content-Transfer-Encoding: quoted-printable', '', 'soft=', 'break =3d =3D=20end', 'stray = sign']), LIMITS);
  assert.deepEqual(qp.textParts, ['softbreak = = end\r\nstray = sign']);
  assert.ok(qp.stats.defects.includes('bad-qp'));
  const unknown = parseMessage(lf(['Content-Transfer-Encoding: x-uuencode', '', 'begin 644 x']), LIMITS);
  assert.deepEqual(unknown.textParts, ['begin 644 x']);
  assert.ok(unknown.stats.defects.includes('unknown-cte'));
});

test('multipart/digest parts default to message/rfc822', () => {
  const m = parseMessage(lf(['Content-Type: multipart/digest; boundary=d', '', '--d', '', 'Subject: one', '', 'first', '--d', '', 'Subject: two', '', 'second', '--d--']), LIMITS);
  assert.deepEqual(m.textParts, ['first', 'second']);
  assert.equal(m.stats.depth, 2);
});

test('limits: maxBytes, maxHeaderBytes, maxParts, maxDepth set truncated and say which', () => {
  const big = parseMessage(lf(PLAIN), { ...LIMITS, maxBytes: 100 });
  assert.equal(big.stats.bytes, 100);
  assert.equal(big.stats.truncated, true);
  assert.ok(big.stats.defects.includes('max-bytes'));

  const longHeader = parseMessage(lf(['X-Long: ' + 'a'.repeat(5000), 'Subject: lost', '', 'body']), { ...LIMITS, maxHeaderBytes: 1000 });
  assert.equal(longHeader.headers.length, 1);
  assert.equal(longHeader.headers[0]!.value.length, 1000 - 'X-Long: '.length);
  assert.deepEqual(longHeader.textParts, ['body']);
  assert.ok(longHeader.stats.defects.includes('header-too-long'));

  const parts = ['Content-Type: multipart/mixed; boundary=b', ''];
  for (let i = 0; i < 50; i++) parts.push('--b', '', `part ${i}`);
  parts.push('--b--');
  const capped = parseMessage(lf(parts), { ...LIMITS, maxParts: 10 });
  assert.equal(capped.stats.parts, 10);
  assert.equal(capped.textParts.length, 9);
  assert.equal(capped.stats.truncated, true);
  assert.ok(capped.stats.defects.includes('too-many-parts'));

  const deep = parseMessage(lf(ALTERNATIVE), { ...LIMITS, maxDepth: 0 });
  assert.equal(deep.stats.depth, 0);
  assert.deepEqual(deep.textParts, []);
  assert.equal(deep.stats.truncated, true);
  assert.ok(deep.stats.defects.includes('too-deep'));
});

test('degenerate inputs: empty, only a blank line, binary, non-Buffer', () => {
  for (const raw of [Buffer.alloc(0), Buffer.from('\n'), Buffer.from('\r\n\r\n'), Buffer.from([0, 255, 10, 0, 58, 13]), new Uint8Array([65, 58, 10, 10, 66])]) {
    const m = parseMessage(raw as Buffer, LIMITS);
    assert.equal(m.stats.bytes, raw.length);
    assert.ok(m.stats.defects.every((d) => !d.startsWith('internal')));
  }
  const weird = parseMessage(undefined as unknown as Buffer, LIMITS);
  assert.equal(weird.stats.bytes, 0);
});
