/** The decoders on their own: base64, quoted-printable, charsets, encoded-words, parameters. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeBase64, decodeCharset, decodeEncodedWords, decodeQuotedPrintable, type Ctx } from '../../../classifier/mime/encodings.ts';
import { parseStructured, readHeaderBlock } from '../../../classifier/mime/headers.ts';

const ctx = (): Ctx => ({ defects: [], badCharset: false });
const b = (s: string) => Buffer.from(s, 'latin1');

test('base64: whitespace skipped, garbage skipped and reported, padding restarts', () => {
  const c = ctx();
  assert.equal(decodeBase64(b('aGVs\r\nbG8='), 0, 10, c).toString(), 'hello');
  assert.deepEqual(c.defects, []);
  assert.equal(decodeBase64(b('aG*Vs|bG8'), 0, 9, c).toString(), 'hello');
  assert.deepEqual(c.defects, ['bad-base64']);
  assert.equal(decodeBase64(b('YQ==Yg=='), 0, 8, ctx()).toString(), 'ab');
  assert.equal(decodeBase64(b('aGVsbG8'), 0, 7, ctx()).toString(), 'hello', 'missing padding');
  assert.equal(decodeBase64(b('x'), 0, 1, ctx()).length, 0);
});

test('base64: 2,000 random byte strings round-trip through Buffer base64 with random line breaks', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 4, max: 80 }), (bytes, width) => {
      const enc = Buffer.from(bytes).toString('base64');
      const wrapped = enc.replace(new RegExp(`.{1,${width}}`, 'g'), '$&\r\n');
      assert.deepEqual(decodeBase64(b(wrapped), 0, wrapped.length, ctx()), Buffer.from(bytes));
    }),
    { numRuns: 2000 },
  );
});

test('quoted-printable: escapes, soft breaks with trailing blanks, lower-case hex, stray "="', () => {
  const qp = (s: string, c = ctx()) => decodeQuotedPrintable(b(s), 0, s.length, c).toString('latin1');
  assert.equal(qp('a=3Db=3db'), 'a=b=b');
  assert.equal(qp('soft=\r\nbreak'), 'softbreak');
  assert.equal(qp('soft=  \nbreak'), 'softbreak');
  assert.equal(qp('end='), 'end');
  const c = ctx();
  assert.equal(qp('1 = 2 =G', c), '1 = 2 =G');
  assert.deepEqual(c.defects, ['bad-qp']);
});

test('charsets: UTF-8, windows-1252 for latin labels, KOI8-R, Shift_JIS, UTF-16, unknown → latin1', () => {
  const c = ctx();
  assert.equal(decodeCharset(Buffer.from('añ€', 'utf8'), 'UTF-8', c), 'añ€');
  assert.equal(decodeCharset(Buffer.from([0x80, 0xe9]), '"ISO-8859-1"', c), '€é');
  assert.equal(decodeCharset(Buffer.from([0xf0, 0xd2, 0xc9]), 'koi8-r', c), 'При');
  assert.equal(decodeCharset(Buffer.from([0x82, 0xa0]), 'shift_jis', c), 'あ');
  assert.equal(decodeCharset(Buffer.from('hi', 'utf16le'), 'utf-16le', c), 'hi');
  assert.equal(decodeCharset(Buffer.from('plain ascii'), 'iso-2022-jp', c), 'plain ascii');
  assert.equal(c.badCharset, false);
  assert.equal(decodeCharset(Buffer.from([0x61, 0xff]), 'x-martian', c), 'aÿ');
  assert.equal(c.badCharset, true);
});

test('encoded-words: the whitespace rule and bad words left alone', () => {
  const d = (s: string) => decodeEncodedWords(s, ctx());
  assert.equal(d('=?utf-8?Q?a_b?= =?utf-8?Q?c?='), 'a bc');
  assert.equal(d('x =?utf-8?Q?a?=y'), 'x ay');
  assert.equal(d('=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?='), 'éé', 'different charsets, adjacent');
  assert.equal(d('=?utf-8?B?not closed'), '=?utf-8?B?not closed');
  assert.equal(d('=?' + 'a'.repeat(100) + '?Q?x?='), '=?' + 'a'.repeat(100) + '?Q?x?=');
  assert.equal(d('=?=?=?'), '=?=?=?');
});

test('parameters: quoted strings with escapes, RFC 2231 continuations and charsets, case', () => {
  const p = parseStructured('Multipart/Mixed; Boundary="a\\"b;c"; charset=UTF-8 ; x', ctx());
  assert.equal(p.value, 'multipart/mixed');
  assert.equal(p.params.get('boundary'), 'a"b;c');
  assert.equal(p.params.get('charset'), 'UTF-8');
  const q = parseStructured("attachment; filename*0*=iso-8859-1''caf%E9; filename*1=\" menu.pdf\"; filename=plain.pdf", ctx());
  assert.equal(q.value, 'attachment');
  assert.equal(q.params.get('filename'), 'café menu.pdf');
  const r = parseStructured('inline; name*1=b.txt; name*0=a', ctx());
  assert.equal(r.params.get('name'), 'ab.txt');
  const unterminated = parseStructured('text/plain; name="open', ctx());
  assert.equal(unterminated.params.get('name'), 'open');
});

test('header blocks: folding, "Name : value", leading continuation, a field longer than the cap', () => {
  const c = ctx();
  const buf = b(' orphan\nSubject : a\n\tb\nX: 1\n\nbody');
  const h = readHeaderBlock(buf, 0, buf.length, 1000, c);
  assert.deepEqual(h.fields, [
    { name: 'subject', raw: 'a\tb' },
    { name: 'x', raw: '1' },
  ]);
  assert.equal(buf.toString('latin1', h.bodyStart), 'body');
  assert.deepEqual(c.defects, ['leading-continuation']);
  const utf8 = Buffer.from('Subject: Grüße\n\n', 'utf8');
  assert.equal(readHeaderBlock(utf8, 0, utf8.length, 1000, ctx()).fields[0]!.raw, 'Grüße');
});
