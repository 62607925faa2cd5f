// The reply codec and the dot-stuffer by tables. Every decoder case is also fed split at every byte
// offset and one byte at a time, and must give the same replies and the same error; every stuffer
// case likewise.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import {
  DEFAULT_MAX_LINE_BYTES,
  DotStuffer,
  encodeReply,
  ReplyDecoder,
  ReplyProtocolError,
  toRecipientReply,
  type ReplyDecoderOptions,
  type ReplyErrorReason,
  type SmtpReply,
} from '../../../lmtp-indexer/relay/reply-codec.ts';

type Outcome = { replies: SmtpReply[]; reason?: ReplyErrorReason };

function decodeChunks(chunks: Buffer[], opts: Partial<ReplyDecoderOptions> = {}): Outcome {
  const d = new ReplyDecoder(opts);
  const replies: SmtpReply[] = [];
  for (const c of chunks) {
    try {
      replies.push(...d.push(c));
    } catch (err) {
      if (!(err instanceof ReplyProtocolError)) throw err;
      return { replies: [...replies, ...err.repliesBefore], reason: err.reason };
    }
  }
  return { replies };
}

/** Whole, split at every offset, and byte by byte: all must agree; returns the whole-input outcome. */
function decodeEverySplit(input: Buffer, opts: Partial<ReplyDecoderOptions> = {}): Outcome {
  const whole = decodeChunks([input], opts);
  for (let k = 0; k <= input.length; k++) {
    assert.deepEqual(decodeChunks([input.subarray(0, k), input.subarray(k)], opts), whole, `split at ${k}`);
  }
  const bytes = [...input].map((b) => Buffer.from([b]));
  assert.deepEqual(decodeChunks(bytes, opts), whole, 'byte at a time');
  return whole;
}

const DOVECOT_LHLO = '250-vm\r\n250-8BITMIME\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250 PIPELINING\r\n';

const VALID: Array<[string, string, SmtpReply[]]> = [
  ['Dovecot greeting', '220 vm Dovecot (Debian) ready.\r\n', [{ code: 220, lines: ['vm Dovecot (Debian) ready.'] }]],
  ['Dovecot LHLO', DOVECOT_LHLO, [{ code: 250, lines: ['vm', '8BITMIME', 'CHUNKING', 'ENHANCEDSTATUSCODES', 'PIPELINING'] }]],
  ['enhanced code', '250 2.1.5 OK\r\n', [{ code: 250, enhanced: '2.1.5', lines: ['OK'] }]],
  [
    'Dovecot over quota',
    '552 5.2.2 <alice> Quota exceeded (mailbox for user is full)\r\n',
    [{ code: 552, enhanced: '5.2.2', lines: ['<alice> Quota exceeded (mailbox for user is full)'] }],
  ],
  [
    'one reply per recipient after DATA',
    '250 2.0.0 <a> id Saved\r\n552 5.2.2 <b> Quota exceeded\r\n451 4.3.0 <c> Temporary failure\r\n',
    [
      { code: 250, enhanced: '2.0.0', lines: ['<a> id Saved'] },
      { code: 552, enhanced: '5.2.2', lines: ['<b> Quota exceeded'] },
      { code: 451, enhanced: '4.3.0', lines: ['<c> Temporary failure'] },
    ],
  ],
  ['multi-line with enhanced on each line', '550-5.1.1 first\r\n550 5.1.1 second\r\n', [{ code: 550, enhanced: '5.1.1', lines: ['first', 'second'] }]],
  ['code alone', '250\r\n', [{ code: 250, lines: [''] }]],
  ['code and space', '250 \r\n', [{ code: 250, lines: [''] }]],
  ['enhanced and no text', '250 2.0.0\r\n', [{ code: 250, enhanced: '2.0.0', lines: [''] }]],
  ['three-digit subject and detail', '554 5.7.123 no\r\n', [{ code: 554, enhanced: '5.7.123', lines: ['no'] }]],
  ['class not matching the code is text', '451 5.1.1 odd\r\n', [{ code: 451, lines: ['5.1.1 odd'] }]],
  ['enhanced-looking word is text', '250 2.0.0x fine\r\n', [{ code: 250, lines: ['2.0.0x fine'] }]],
  ['bare LF tolerated', '250 OK\n221 Bye\n', [{ code: 250, lines: ['OK'] }, { code: 221, lines: ['Bye'] }]],
  ['UTF-8 text', "550 5.1.1 <jörg@例え.jp> User doesn't exist\r\n", [{ code: 550, enhanced: '5.1.1', lines: ["<jörg@例え.jp> User doesn't exist"] }]],
  ['empty continuation line', '250-\r\n250 end\r\n', [{ code: 250, lines: ['', 'end'] }]],
];

for (const [name, input, expected] of VALID) {
  test(`decodes: ${name}`, () => {
    assert.deepEqual(decodeEverySplit(Buffer.from(input, 'utf8')), { replies: expected });
  });
}

const maxLine = (extra: number) => `250 ${'a'.repeat(DEFAULT_MAX_LINE_BYTES - 5 + extra)}\r\n`;

const INVALID: Array<[string, string, ReplyErrorReason, number]> = [
  ['HTTP instead of LMTP', 'HTTP/1.1 400 Bad Request\r\n', 'malformed line', 0],
  ['code out of range', '600 nope\r\n', 'malformed line', 0],
  ['1xx code', '150 later\r\n', 'malformed line', 0],
  ['short code', '25\r\n', 'malformed line', 0],
  ['no separator after code', '250x\r\n', 'malformed line', 0],
  ['empty line', '\r\n', 'malformed line', 0],
  ['code changes mid-reply', '250-a\r\n251 b\r\n', 'code changed mid-reply', 0],
  ['NUL in text', '250 a\0b\r\n', 'NUL byte', 0],
  ['line one byte over the cap', maxLine(1), 'line too long', 0],
  ['endless line', 'x'.repeat(DEFAULT_MAX_LINE_BYTES + 10), 'line too long', 0],
  ['garbage after a good reply', '250 2.1.0 OK\r\nSSH-2.0-OpenSSH\r\n', 'malformed line', 1],
  ['101 lines', `${'250-x\r\n'.repeat(100)}250 end\r\n`, 'too many lines', 0],
];

for (const [name, input, reason, before] of INVALID) {
  test(`rejects: ${name}`, () => {
    const out = decodeEverySplit(Buffer.from(input, 'utf8'));
    assert.equal(out.reason, reason);
    assert.equal(out.replies.length, before);
  });
}

test('a line exactly at the cap (CR counted) and a reply of exactly maxLines lines are accepted', () => {
  const line = maxLine(0);
  assert.equal(line.length - 1, DEFAULT_MAX_LINE_BYTES);
  assert.equal(decodeEverySplit(Buffer.from(line)).replies.length, 1);
  const hundred = `${'250-x\r\n'.repeat(99)}250 end\r\n`;
  assert.equal(decodeEverySplit(Buffer.from(hundred)).replies[0]!.lines.length, 100);
});

test('caps are configurable', () => {
  assert.equal(decodeEverySplit(Buffer.from('250 abcdef\r\n'), { maxLineBytes: 8 }).reason, 'line too long');
  assert.equal(decodeEverySplit(Buffer.from('250 abcde\r\n'), { maxLineBytes: 10 }).reason, undefined);
  assert.equal(decodeEverySplit(Buffer.from('250-a\r\n250-b\r\n250 c\r\n'), { maxLines: 2 }).reason, 'too many lines');
});

test('the failure is sticky and pending state is visible', () => {
  const d = new ReplyDecoder({ maxLineBytes: 16 });
  assert.deepEqual(d.push(Buffer.from('250-first\r\n250 sec')), []);
  assert.equal(d.midReply, true);
  assert.equal(d.pendingBytes, 7);
  assert.deepEqual(d.push(Buffer.from('ond\r\n')), [{ code: 250, lines: ['first', 'second'] }]);
  assert.equal(d.midReply, false);
  assert.equal(d.pendingBytes, 0);
  assert.throws(() => d.push(Buffer.from('nonsense\r\n')), (e: unknown) => e instanceof ReplyProtocolError && e.reason === 'malformed line');
  assert.throws(() => d.push(Buffer.from('250 OK\r\n')), (e: unknown) => e instanceof ReplyProtocolError && e.reason === 'malformed line');
});

test('encodeReply writes what the decoder reads, and refuses line injection', () => {
  assert.equal(encodeReply({ code: 250, enhanced: '2.1.5', lines: ['OK'] }).toString(), '250 2.1.5 OK\r\n');
  assert.equal(encodeReply({ code: 552, enhanced: '5.2.2', lines: ['a', 'b'] }).toString(), '552-5.2.2 a\r\n552 5.2.2 b\r\n');
  assert.equal(encodeReply({ code: 250, lines: [''] }).toString(), '250\r\n');
  assert.equal(encodeReply({ code: 250, lines: ['', 'x'] }).toString(), '250-\r\n250 x\r\n');
  assert.throws(() => encodeReply({ code: 250, lines: ['OK\r\n250 forged'] }), TypeError);
  assert.throws(() => encodeReply({ code: 250, enhanced: '5.1.1', lines: ['x'] }), TypeError);
  assert.throws(() => encodeReply({ code: 199, lines: ['x'] }), TypeError);
  assert.throws(() => encodeReply({ code: 250, lines: [] }), TypeError);
});

test('toRecipientReply joins lines and keeps the message on one line', () => {
  assert.deepEqual(toRecipientReply({ code: 552, enhanced: '5.2.2', lines: ['<a> Quota', 'exceeded'] }), { code: 552, enhanced: '5.2.2', message: '<a> Quota exceeded' });
  assert.deepEqual(toRecipientReply({ code: 451, lines: ['bad\rtext\x07here'] }), { code: 451, message: 'bad text here' });
  assert.equal('enhanced' in toRecipientReply({ code: 250, lines: ['OK'] }), false);
});

async function stuff(chunks: Buffer[], terminate = true): Promise<string> {
  const s = new DotStuffer(terminate);
  const out: Buffer[] = [];
  s.on('data', (b: Buffer) => out.push(b));
  for (const c of chunks) s.write(c);
  s.end();
  await once(s, 'end');
  return Buffer.concat(out).toString('latin1');
}

const STUFFING: Array<[string, string]> = [
  ['', '.\r\n'],
  ['a', 'a\r\n.\r\n'],
  ['a\r\n', 'a\r\n.\r\n'],
  ['a\n', 'a\r\n.\r\n'],
  ['.', '..\r\n.\r\n'],
  ['.\r\n', '..\r\n.\r\n'],
  ['.a\n.b', '..a\r\n..b\r\n.\r\n'],
  ['a\r\n.\r\nb\r\n', 'a\r\n..\r\nb\r\n.\r\n'],
  ['..\r\n', '...\r\n.\r\n'],
  ['x.\r\n.y.\r\n', 'x.\r\n..y.\r\n.\r\n'],
  ['\n\n.\n', '\r\n\r\n..\r\n.\r\n'],
  ['a\rb', 'a\rb\r\n.\r\n'],
  ['a\r', 'a\r\r\n.\r\n'],
  ['\r.x\r\n', '\r.x\r\n.\r\n'],
  ['a\r\r\n.', 'a\r\r\n..\r\n.\r\n'],
];

for (const [input, expected] of STUFFING) {
  test(`dot-stuffs ${JSON.stringify(input)} at every split`, async () => {
    const buf = Buffer.from(input, 'latin1');
    assert.equal(await stuff([buf]), expected);
    for (let k = 0; k <= buf.length; k++) assert.equal(await stuff([buf.subarray(0, k), buf.subarray(k)]), expected, `split at ${k}`);
    assert.equal(await stuff([...buf].map((b) => Buffer.from([b]))), expected, 'byte at a time');
  });
}

test('without the terminator the stuffer still ends the body with CRLF', async () => {
  assert.equal(await stuff([Buffer.from('.a\nb')], false), '..a\r\nb\r\n');
  assert.equal(await stuff([], false), '');
});
