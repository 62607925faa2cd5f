// SMFIR_* responses: hand-written wire bytes ↔ typed values, both directions, and every input
// re-fed to the FrameDecoder at every split. Lengths below are counted by hand (response byte included).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MilterProtocolError } from '../../../milter/protocol/errors.ts';
import { FrameDecoder } from '../../../milter/protocol/framing.ts';
import { encodeResponse, isFinalResponse, parseResponse, type Response } from '../../../milter/protocol/responses.ts';
import { b, decodeEveryWay } from '../../helpers/frames.ts';

const protocolError = (reason: string) => (err: unknown) => {
  assert.ok(err instanceof MilterProtocolError, `expected MilterProtocolError, got ${String(err)}`);
  assert.equal(err.reason, reason);
  return true;
};

const SIMPLE: Array<[Response['kind'], string]> = [
  ['continue', 'c'],
  ['accept', 'a'],
  ['reject', 'r'],
  ['tempfail', 't'],
  ['discard', 'd'],
  ['skip', 's'],
  ['progress', 'p'],
  ['shutdown', '4'],
  ['connFail', 'f'],
];

const TABLE: Array<{ name: string; bytes: Buffer; value: Response; canonical?: Buffer }> = [
  ...SIMPLE.map(([kind, code]) => ({ name: kind, bytes: b(0, 0, 0, 1, code), value: { kind } as Response })),
  {
    name: 'REPLYCODE with an enhanced code',
    bytes: b(0, 0, 0, 0x1b, 'y', '550 5.7.1 Message refused\0'),
    value: { kind: 'replycode', reply: '550 5.7.1 Message refused' },
  },
  {
    name: 'REPLYCODE with a doubled %',
    bytes: b(0, 0, 0, 0x1b, 'y', '451 4.3.0 Disk 100%% full\0'),
    value: { kind: 'replycode', reply: '451 4.3.0 Disk 100%% full' },
  },
  {
    name: 'REPLYCODE without an enhanced code',
    bytes: b(0, 0, 0, 0x15, 'y', '421 Service closing\0'),
    value: { kind: 'replycode', reply: '421 Service closing' },
  },
  {
    name: 'ADDHEADER',
    bytes: b(0, 0, 0, 0x12, 'h', 'X-Spam-Flag\0', ' YES\0'),
    value: { kind: 'addheader', name: 'X-Spam-Flag', value: ' YES' },
  },
  {
    name: 'INSHEADER at index 0',
    bytes: b(0, 0, 0, 0x11, 'i', 0, 0, 0, 0, 'X-Trace\0', 'v=1\0'),
    value: { kind: 'insheader', index: 0, name: 'X-Trace', value: 'v=1' },
  },
  {
    name: 'CHGHEADER with an empty value (delete)',
    bytes: b(0, 0, 0, 0x0e, 'm', 0, 0, 0, 2, 'Subject\0', 0),
    value: { kind: 'chgheader', index: 2, name: 'Subject', value: '' },
  },
  {
    name: 'CHGHEADER with a large index',
    bytes: b(0, 0, 0, 9, 'm', 0x01, 0x00, 0x00, 0x00, 'X\0', 'y\0'),
    value: { kind: 'chgheader', index: 0x01000000, name: 'X', value: 'y' },
  },
  {
    name: 'ADDRCPT',
    bytes: b(0, 0, 0, 0x15, '+', '<carol@example.org>\0'),
    value: { kind: 'addrcpt', rcpt: '<carol@example.org>' },
  },
  {
    name: 'ADDRCPT_PAR',
    bytes: b(0, 0, 0, 0x21, '2', '<dave@example.org>\0', 'NOTIFY=NEVER\0'),
    value: { kind: 'addrcptPar', rcpt: '<dave@example.org>', args: 'NOTIFY=NEVER' },
  },
  {
    name: 'DELRCPT',
    bytes: b(0, 0, 0, 0x13, '-', '<bob@example.net>\0'),
    value: { kind: 'delrcpt', rcpt: '<bob@example.net>' },
  },
  {
    name: 'CHGFROM without arguments',
    bytes: b(0, 0, 0, 0x16, 'e', '<bounce@example.org>\0'),
    value: { kind: 'chgfrom', from: '<bounce@example.org>' },
  },
  {
    name: 'CHGFROM with ESMTP arguments',
    bytes: b(0, 0, 0, 0x0d, 'e', '<>\0', 'SIZE=100\0'),
    value: { kind: 'chgfrom', from: '<>', args: 'SIZE=100' },
  },
  {
    name: 'QUARANTINE',
    bytes: b(0, 0, 0, 0x17, 'q', 'suspicious attachment\0'),
    value: { kind: 'quarantine', reason: 'suspicious attachment' },
  },
  {
    name: 'REPLBODY',
    bytes: b(0, 0, 0, 0x0b, 'b', 'new body\r\n'),
    value: { kind: 'replbody', chunk: Buffer.from('new body\r\n') },
  },
  {
    name: 'OPTNEG reply without macros',
    bytes: b(0, 0, 0, 0x0d, 'O', 0, 0, 0, 6, 0, 0, 0, 0x11, 0, 0x10, 0x04, 0),
    value: { kind: 'optneg', version: 6, actions: 0x11, protocol: 0x100400, macros: {} },
  },
  {
    name: 'OPTNEG reply with a SETSYMLIST macro list per stage',
    bytes: b(
      ...[0, 0, 0, 0x67, 'O', 0, 0, 0, 6, 0, 0, 0x01, 0x11, 0, 0x10, 0x04, 0],
      ...[0, 0, 0, 0, 'j {client_addr}\0'],
      ...[0, 0, 0, 1, '{tls_version}\0'],
      ...[0, 0, 0, 2, 'i {auth_type}\0'],
      ...[0, 0, 0, 3, '{rcpt_addr}\0'],
      ...[0, 0, 0, 4, 'i\0'],
      ...[0, 0, 0, 5, 'i\0'],
      ...[0, 0, 0, 6, 'i\0'],
    ),
    value: {
      kind: 'optneg',
      version: 6,
      actions: 0x111,
      protocol: 0x100400,
      macros: { 0: ['j', '{client_addr}'], 1: ['{tls_version}'], 2: ['i', '{auth_type}'], 3: ['{rcpt_addr}'], 4: ['i'], 5: ['i'], 6: ['i'] },
    },
  },
  {
    name: 'OPTNEG reply with a doubled space in a macro list',
    bytes: b(0, 0, 0, 0x16, 'O', 0, 0, 0, 6, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'j  v\0'),
    value: { kind: 'optneg', version: 6, actions: 0x100, protocol: 0, macros: { 0: ['j', 'v'] } },
    canonical: b(0, 0, 0, 0x15, 'O', 0, 0, 0, 6, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'j v\0'),
  },
];

for (const row of TABLE) {
  test(`response ${row.name}: parse`, () => {
    const frames = new FrameDecoder().push(row.bytes);
    assert.equal(frames.length, 1);
    assert.deepEqual(parseResponse(frames[0]!), row.value);
  });
  test(`response ${row.name}: encode`, () => {
    assert.deepEqual(encodeResponse(row.value), row.canonical ?? row.bytes);
  });
  test(`response ${row.name}: every split decodes the same`, () => {
    assert.deepEqual(decodeEveryWay(row.bytes, { pendingBytes: 0 }).map(parseResponse), [row.value]);
  });
}

test('OPTNEG reply: encoding without a macros field equals encoding with none', () => {
  assert.deepEqual(
    encodeResponse({ kind: 'optneg', version: 2, actions: 1, protocol: 0x7f }),
    b(0, 0, 0, 0x0d, 'O', 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0x7f),
  );
  assert.deepEqual(
    encodeResponse({ kind: 'optneg', version: 6, actions: 0, protocol: 0, macros: { 4: [] } }),
    b(0, 0, 0, 0x0d, 'O', 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0),
    'an empty list for a stage is left out',
  );
});

test('all responses back to back in one stream, at every split', () => {
  const frames = decodeEveryWay(Buffer.concat(TABLE.map((r) => r.bytes)), { pendingBytes: 0 });
  assert.deepEqual(frames.map(parseResponse), TABLE.map((r) => r.value));
});

const ERRORS: Array<{ name: string; bytes: Buffer; reason: string }> = [
  { name: "unknown response code 'Z'", bytes: b(0, 0, 0, 1, 'Z'), reason: 'unknown response' },
  { name: 'SETSYMLIST outside an OPTNEG reply', bytes: b(0, 0, 0, 3, 'l', 'i\0'), reason: 'unknown response' },
  { name: 'OPTNEG reply with 8 of 12 bytes', bytes: b(0, 0, 0, 9, 'O', 0, 0, 0, 6, 0, 0, 0, 1), reason: 'short optneg reply' },
  {
    name: 'OPTNEG reply with half a symlist stage',
    bytes: b(0, 0, 0, 0x0f, 'O', 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0),
    reason: 'short symlist',
  },
  {
    name: 'OPTNEG reply with symlist stage 7',
    bytes: b(0, 0, 0, 0x13, 'O', 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 'i\0'),
    reason: 'bad symlist stage',
  },
  {
    name: 'OPTNEG reply with an unterminated symlist',
    bytes: b(0, 0, 0, 0x12, 'O', 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 'j'),
    reason: 'unterminated string',
  },
  { name: 'REPLYCODE unterminated', bytes: b(0, 0, 0, 7, 'y', '550 no'), reason: 'unterminated string' },
  { name: 'REPLYCODE 2xx', bytes: b(0, 0, 0, 8, 'y', '250 ok\0'), reason: 'bad reply code' },
  { name: 'REPLYCODE with CR LF', bytes: b(0, 0, 0, 0x0a, 'y', '550 a\r\nb\0'), reason: 'bad reply code' },
  { name: 'REPLYCODE with a class mismatch', bytes: b(0, 0, 0, 0x0d, 'y', '550 4.7.1 x\0'), reason: 'reply class mismatch' },
  { name: 'REPLYCODE with an undoubled %', bytes: b(0, 0, 0, 0x15, 'y', '550 5.7.1 100% sure\0'), reason: 'undoubled % in reply' },
  { name: 'ADDHEADER with a name only', bytes: b(0, 0, 0, 3, 'h', 'X\0'), reason: 'malformed addheader' },
  { name: 'INSHEADER shorter than its index', bytes: b(0, 0, 0, 4, 'i', 0, 0, 0), reason: 'short insheader' },
  {
    name: 'INSHEADER with trailing bytes',
    bytes: b(0, 0, 0, 0x0a, 'i', 0, 0, 0, 1, 'X\0', 'v\0', 'z'),
    reason: 'trailing bytes',
  },
  { name: 'CHGHEADER value unterminated', bytes: b(0, 0, 0, 8, 'm', 0, 0, 0, 1, 'X\0', 'v'), reason: 'unterminated string' },
  { name: 'ADDRCPT unterminated', bytes: b(0, 0, 0, 4, '+', '<a>'), reason: 'unterminated string' },
  { name: 'QUARANTINE unterminated', bytes: b(0, 0, 0, 4, 'q', 'why'), reason: 'unterminated string' },
];

for (const row of ERRORS) {
  test(`response error: ${row.name}`, () => {
    const frames = decodeEveryWay(row.bytes, { pendingBytes: 0 });
    assert.equal(frames.length, 1);
    assert.throws(() => parseResponse(frames[0]!), protocolError(row.reason));
  });
}

test('encodeResponse refuses what it must not put on the wire', () => {
  assert.throws(() => encodeResponse({ kind: 'replycode', reply: '550 4.7.1 x' }), protocolError('reply class mismatch'));
  assert.throws(() => encodeResponse({ kind: 'replycode', reply: '550 50% off' }), protocolError('undoubled % in reply'));
  assert.throws(() => encodeResponse({ kind: 'addheader', name: 'X', value: 'a\0b' }), TypeError);
  assert.throws(() => encodeResponse({ kind: 'bogus' } as unknown as Response), TypeError);
});

test('isFinalResponse: verdicts and the OPTNEG reply end a stage; progress and modifications do not', () => {
  const finals = TABLE.filter((r) => isFinalResponse(r.value)).map((r) => r.value.kind);
  assert.deepEqual(
    [...new Set(finals)].sort(),
    ['accept', 'connFail', 'continue', 'discard', 'optneg', 'reject', 'replycode', 'shutdown', 'skip', 'tempfail'],
  );
});
