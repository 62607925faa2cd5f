// SMFIC_* commands: hand-written wire bytes ↔ typed values, both directions, and every input
// re-fed to the FrameDecoder at every split. Lengths below are counted by hand (command byte included).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeCommand, parseCommand, type Command } from '../../../milter/protocol/commands.ts';
import { MilterProtocolError } from '../../../milter/protocol/errors.ts';
import { FrameDecoder } from '../../../milter/protocol/framing.ts';
import { b, decodeEveryWay } from '../../helpers/frames.ts';

const protocolError = (reason: string) => (err: unknown) => {
  assert.ok(err instanceof MilterProtocolError, `expected MilterProtocolError, got ${String(err)}`);
  assert.equal(err.reason, reason);
  assert.ok(err.message.startsWith(reason));
  return true;
};

const BIG = Buffer.alloc(65535, 0x61);

/** `canonical`: what our encoder writes for the value, when the table input is a legal variant. */
const TABLE: Array<{ name: string; bytes: Buffer; value: Command; canonical?: Buffer }> = [
  {
    name: 'OPTNEG version 6 (Postfix offer)',
    bytes: b(0, 0, 0, 0x0d, 'O', 0, 0, 0, 6, 0, 0, 0x01, 0xff, 0, 0x1f, 0xf7, 0xff),
    value: { kind: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1ff7ff },
  },
  {
    name: 'OPTNEG version 2',
    bytes: b(0, 0, 0, 0x0d, 'O', 0, 0, 0, 2, 0, 0, 0, 0x01, 0, 0, 0, 0x7f),
    value: { kind: 'optneg', version: 2, actions: 1, protocol: 0x7f },
  },
  {
    name: 'MACRO with several pairs',
    bytes: b(0, 0, 0, 0x31, 'D', 'C', 'j\0mx.example\0', '{daemon_name}\0smtpd\0', 'v\0Postfix 3.7\0'),
    value: {
      kind: 'macro',
      forCommand: 0x43,
      macros: [
        ['j', 'mx.example'],
        ['{daemon_name}', 'smtpd'],
        ['v', 'Postfix 3.7'],
      ],
    },
  },
  {
    name: 'MACRO with an empty value',
    bytes: b(0, 0, 0, 0x0f, 'D', 'R', '{rcpt_host}\0', 0),
    value: { kind: 'macro', forCommand: 0x52, macros: [['{rcpt_host}', '']] },
  },
  {
    name: 'MACRO with just the command byte',
    bytes: b(0, 0, 0, 2, 'D', 'M'),
    value: { kind: 'macro', forCommand: 0x4d, macros: [] },
  },
  {
    name: 'MACRO with an empty payload',
    bytes: b(0, 0, 0, 1, 'D'),
    value: { kind: 'macro', forCommand: 0, macros: [] },
    canonical: b(0, 0, 0, 2, 'D', 0),
  },
  {
    name: "CONNECT family '4'",
    bytes: b(0, 0, 0, 0x1e, 'C', 'client.example\0', '4', 0x9c, 0x40, '192.0.2.10\0'),
    value: { kind: 'connect', hostname: 'client.example', family: '4', port: 40000, address: '192.0.2.10' },
  },
  {
    name: "CONNECT family '6'",
    bytes: b(0, 0, 0, 0x1c, 'C', 'v6.example\0', '6', 0xc3, 0x50, '2001:db8::25\0'),
    value: { kind: 'connect', hostname: 'v6.example', family: '6', port: 50000, address: '2001:db8::25' },
  },
  {
    name: "CONNECT family 'L' (unix socket path, port 0)",
    bytes: b(0, 0, 0, 0x1c, 'C', 'localhost\0', 'L', 0, 0, '/run/mta.sock\0'),
    value: { kind: 'connect', hostname: 'localhost', family: 'L', port: 0, address: '/run/mta.sock' },
  },
  {
    name: "CONNECT family 'U' (no port, no address)",
    bytes: b(0, 0, 0, 0x0a, 'C', 'unknown\0', 'U'),
    value: { kind: 'connect', hostname: 'unknown', family: 'U', port: 0, address: '' },
  },
  {
    name: 'HELO',
    bytes: b(0, 0, 0, 0x12, 'H', 'mail.example.org\0'),
    value: { kind: 'helo', hostname: 'mail.example.org' },
  },
  { name: 'HELO with an empty name', bytes: b(0, 0, 0, 2, 'H', 0), value: { kind: 'helo', hostname: '' } },
  {
    name: 'MAIL with ESMTP arguments',
    bytes: b(0, 0, 0, 0x2d, 'M', '<alice@example.org>\0', 'SIZE=1024\0', 'BODY=8BITMIME\0'),
    value: { kind: 'mail', sender: '<alice@example.org>', args: ['SIZE=1024', 'BODY=8BITMIME'] },
  },
  { name: 'MAIL with the null sender', bytes: b(0, 0, 0, 4, 'M', '<>\0'), value: { kind: 'mail', sender: '<>', args: [] } },
  {
    name: 'RCPT with ESMTP arguments',
    bytes: b(0, 0, 0, 0x47, 'R', '<bob@example.net>\0', 'NOTIFY=SUCCESS,FAILURE\0', 'ORCPT=rfc822;bob@example.net\0'),
    value: {
      kind: 'rcpt',
      recipient: '<bob@example.net>',
      args: ['NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;bob@example.net'],
    },
  },
  { name: 'RCPT without arguments', bytes: b(0, 0, 0, 7, 'R', '<x@y>\0'), value: { kind: 'rcpt', recipient: '<x@y>', args: [] } },
  { name: 'DATA', bytes: b(0, 0, 0, 1, 'T'), value: { kind: 'data' } },
  {
    name: 'HEADER with a leading space',
    bytes: b(0, 0, 0, 0x10, 'L', 'Subject\0', ' Hello\0'),
    value: { kind: 'header', name: 'Subject', value: ' Hello' },
  },
  {
    name: 'HEADER with an empty value',
    bytes: b(0, 0, 0, 0x0a, 'L', 'X-Empty\0', 0),
    value: { kind: 'header', name: 'X-Empty', value: '' },
  },
  {
    name: 'HEADER with a UTF-8 value',
    bytes: b(0, 0, 0, 0x0f, 'L', 'Subject\0', 0xc3, 0xa9, 't', 0xc3, 0xa9, 0),
    value: { kind: 'header', name: 'Subject', value: 'été' },
  },
  { name: 'EOH', bytes: b(0, 0, 0, 1, 'N'), value: { kind: 'eoh' } },
  { name: 'BODY chunk', bytes: b(0, 0, 0, 8, 'B', 'Hello\r\n'), value: { kind: 'body', chunk: Buffer.from('Hello\r\n') } },
  { name: 'BODY chunk with binary bytes', bytes: b(0, 0, 0, 4, 'B', 0, 0xff, 0), value: { kind: 'body', chunk: b(0, 0xff, 0) } },
  { name: 'BODY empty chunk', bytes: b(0, 0, 0, 1, 'B'), value: { kind: 'body', chunk: Buffer.alloc(0) } },
  {
    name: 'BODY chunk of exactly 65,535 bytes',
    bytes: Buffer.concat([b(0x00, 0x01, 0x00, 0x00, 'B'), BIG]),
    value: { kind: 'body', chunk: BIG },
  },
  { name: 'BODYEOB', bytes: b(0, 0, 0, 1, 'E'), value: { kind: 'eom', chunk: Buffer.alloc(0) } },
  { name: 'BODYEOB with a last chunk', bytes: b(0, 0, 0, 5, 'E', 'tail'), value: { kind: 'eom', chunk: Buffer.from('tail') } },
  { name: 'ABORT', bytes: b(0, 0, 0, 1, 'A'), value: { kind: 'abort' } },
  { name: 'QUIT', bytes: b(0, 0, 0, 1, 'Q'), value: { kind: 'quit' } },
  { name: 'QUIT_NC', bytes: b(0, 0, 0, 1, 'K'), value: { kind: 'quitNewConnection' } },
  { name: 'UNKNOWN', bytes: b(0, 0, 0, 0x0b, 'U', 'VRFY root\0'), value: { kind: 'unknown', command: 'VRFY root' } },
];

for (const row of TABLE) {
  test(`command ${row.name}: parse`, () => {
    const frames = new FrameDecoder().push(row.bytes);
    assert.equal(frames.length, 1);
    assert.deepEqual(parseCommand(frames[0]!), row.value);
  });
  test(`command ${row.name}: encode`, () => {
    assert.deepEqual(encodeCommand(row.value), row.canonical ?? row.bytes);
  });
  test(`command ${row.name}: every split decodes the same`, () => {
    const frames = decodeEveryWay(row.bytes, { pendingBytes: 0 });
    assert.deepEqual(frames.map(parseCommand), [row.value]);
  });
}

test('all commands back to back in one stream, at every split', () => {
  const small = TABLE.filter((r) => r.bytes.length < 1000);
  const frames = decodeEveryWay(Buffer.concat(small.map((r) => r.bytes)), { pendingBytes: 0 });
  assert.deepEqual(frames.map(parseCommand), small.map((r) => r.value));
});

/** Inputs the parser must refuse; `decoder: true` means the framing itself is refused. */
const ERRORS: Array<{ name: string; bytes: Buffer; reason: string; decoder?: boolean }> = [
  { name: 'zero-length frame', bytes: b(0, 0, 0, 0), reason: 'zero-length frame', decoder: true },
  { name: 'declared length above the cap', bytes: b(0x00, 0x10, 0x00, 0x01, 'B'), reason: 'frame too large', decoder: true },
  { name: 'OPTNEG with 8 of 12 bytes', bytes: b(0, 0, 0, 9, 'O', 0, 0, 0, 6, 0, 0, 1, 0xff), reason: 'short optneg' },
  { name: 'OPTNEG with no payload', bytes: b(0, 0, 0, 1, 'O'), reason: 'short optneg' },
  { name: 'HELO unterminated', bytes: b(0, 0, 0, 3, 'H', 'mx'), reason: 'unterminated string' },
  { name: 'MAIL argument unterminated', bytes: b(0, 0, 0, 8, 'M', '<>\0SIZE'), reason: 'unterminated string' },
  { name: 'HEADER value unterminated', bytes: b(0, 0, 0, 6, 'L', 'To\0me'), reason: 'unterminated string' },
  { name: 'UNKNOWN unterminated', bytes: b(0, 0, 0, 5, 'U', 'VRFY'), reason: 'unterminated string' },
  { name: 'CONNECT hostname unterminated', bytes: b(0, 0, 0, 5, 'C', 'host'), reason: 'unterminated string' },
  { name: 'CONNECT with no family', bytes: b(0, 0, 0, 3, 'C', 'h\0'), reason: 'short connect' },
  { name: 'CONNECT with a bad family', bytes: b(0, 0, 0, 0x0e, 'C', 'h\0', 'X', 0, 25, '1.2.3.4\0'), reason: 'bad connect family' },
  { name: 'CONNECT with a lowercase family', bytes: b(0, 0, 0, 4, 'C', 'h\0', 'u'), reason: 'bad connect family' },
  { name: 'CONNECT with no port', bytes: b(0, 0, 0, 4, 'C', 'h\0', '4'), reason: 'short connect' },
  { name: 'CONNECT with half a port', bytes: b(0, 0, 0, 5, 'C', 'h\0', '4', 0), reason: 'short connect' },
  { name: 'CONNECT with the address unterminated', bytes: b(0, 0, 0, 0x0d, 'C', 'h\0', '4', 0, 25, '1.2.3.4'), reason: 'unterminated string' },
  { name: 'CONNECT with no address', bytes: b(0, 0, 0, 6, 'C', 'h\0', '6', 0, 25), reason: 'unterminated string' },
  {
    name: 'CONNECT with trailing bytes',
    bytes: b(0, 0, 0, 0x0f, 'C', 'h\0', '4', 0, 25, '1.2.3.4\0', 'x'),
    reason: 'trailing bytes',
  },
  { name: 'MACRO pair with no name', bytes: b(0, 0, 0, 5, 'D', 'C', 0, 'v\0'), reason: 'macro with no name' },
  { name: 'MACRO name without a value', bytes: b(0, 0, 0, 4, 'D', 'C', 'j\0'), reason: 'macro without value' },
  { name: 'MACRO name unterminated', bytes: b(0, 0, 0, 3, 'D', 'C', 'j'), reason: 'unterminated string' },
  { name: 'HEADER with no name', bytes: b(0, 0, 0, 4, 'L', 0, 'v\0'), reason: 'header with no name' },
  { name: 'HEADER with a name only', bytes: b(0, 0, 0, 9, 'L', 'Subject\0'), reason: 'malformed header' },
  { name: 'HEADER with three strings', bytes: b(0, 0, 0, 7, 'L', 'a\0b\0c\0'), reason: 'malformed header' },
  { name: 'HEADER with no payload', bytes: b(0, 0, 0, 1, 'L'), reason: 'malformed header' },
  { name: 'MAIL with no payload', bytes: b(0, 0, 0, 1, 'M'), reason: 'empty envelope command' },
  { name: 'RCPT with no payload', bytes: b(0, 0, 0, 1, 'R'), reason: 'empty envelope command' },
  {
    name: 'BODY chunk of 65,536 bytes',
    bytes: Buffer.concat([b(0x00, 0x01, 0x00, 0x01, 'B'), Buffer.alloc(65536, 0x61)]),
    reason: 'body chunk too large',
  },
  { name: "unknown command code 'Z'", bytes: b(0, 0, 0, 1, 'Z'), reason: 'unknown command' },
  { name: 'unknown command code 0x00', bytes: b(0, 0, 0, 3, 0, 'x', 0), reason: 'unknown command' },
  { name: "response code 'c' sent as a command", bytes: b(0, 0, 0, 1, 'c'), reason: 'unknown command' },
];

for (const row of ERRORS) {
  test(`command error: ${row.name}`, () => {
    if (row.decoder) {
      assert.throws(() => new FrameDecoder().push(row.bytes), protocolError(row.reason));
      for (let i = 1; i < row.bytes.length; i++) {
        const d = new FrameDecoder();
        assert.throws(() => [row.bytes.subarray(0, i), row.bytes.subarray(i)].forEach((p) => d.push(p)), protocolError(row.reason));
      }
      return;
    }
    const frames = decodeEveryWay(row.bytes, { pendingBytes: 0 });
    assert.equal(frames.length, 1);
    assert.throws(() => parseCommand(frames[0]!), protocolError(row.reason));
  });
}

test('unknown command errors name the code', () => {
  assert.throws(() => parseCommand({ code: 0x5a, payload: Buffer.alloc(0) }), /unknown command: 0x5a/);
});

test('encodeCommand refuses a string with a NUL in it', () => {
  assert.throws(() => encodeCommand({ kind: 'helo', hostname: 'a\0b' }), TypeError);
  assert.throws(() => encodeCommand({ kind: 'macro', forCommand: 0x43, macros: [['j', 'x\0']] }), TypeError);
});
