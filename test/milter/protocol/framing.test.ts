// Milter framing: 4-byte big-endian length (counting the command byte), command byte, payload.
// Every expected byte sequence below is written out by hand, never produced by our encoder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_MAX_FRAME } from '../../../milter/protocol/constants.ts';
import { MilterProtocolError } from '../../../milter/protocol/errors.ts';
import { encodeFrame, FrameDecoder, type RawFrame } from '../../../milter/protocol/framing.ts';
import { b, decodeEveryWay } from '../../helpers/frames.ts';

/** Every way of feeding `bytes` must end in a MilterProtocolError with `reason`. */
function rejectsEveryWay(bytes: Buffer, reason: string, maxFrame?: number): void {
  const feeds: Buffer[][] = [[bytes], [...bytes].map((x) => Buffer.from([x]))];
  for (let i = 1; i < bytes.length; i++) feeds.push([bytes.subarray(0, i), bytes.subarray(i)]);
  for (const pieces of feeds) {
    const d = new FrameDecoder(maxFrame);
    assert.throws(
      () => pieces.forEach((p) => d.push(p)),
      (err: unknown) => err instanceof MilterProtocolError && err.reason === reason,
      `${pieces.length} pieces`,
    );
  }
}

const ENCODE_TABLE: Array<{ name: string; code: number; payload?: Buffer | Uint8Array; bytes: Buffer }> = [
  { name: 'command byte only', code: 0x54, bytes: b(0, 0, 0, 1, 'T') },
  { name: 'empty payload given explicitly', code: 0x4e, payload: Buffer.alloc(0), bytes: b(0, 0, 0, 1, 'N') },
  { name: 'short payload', code: 0x48, payload: b('mx\0'), bytes: b(0, 0, 0, 4, 'H', 'm', 'x', 0) },
  {
    name: 'payload of 256 bytes (length crosses a byte boundary)',
    code: 0x42,
    payload: Buffer.alloc(256, 0x7a),
    bytes: Buffer.concat([b(0x00, 0x00, 0x01, 0x01, 0x42), Buffer.alloc(256, 0x7a)]),
  },
  {
    name: 'Uint8Array payload',
    code: 0x62,
    payload: new Uint8Array([1, 2, 3]),
    bytes: b(0, 0, 0, 4, 0x62, 1, 2, 3),
  },
];

for (const row of ENCODE_TABLE) {
  test(`encodeFrame: ${row.name}`, () => {
    assert.deepEqual(encodeFrame(row.code, row.payload), row.bytes);
  });
  test(`FrameDecoder: ${row.name}, at every split`, () => {
    const frames = decodeEveryWay(row.bytes);
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.code, row.code);
    assert.deepEqual(frames[0]!.payload, Buffer.from(row.payload ?? []));
  });
}

test('FrameDecoder: several frames in one stream, at every split', () => {
  const stream = b(0, 0, 0, 1, 'T', 0, 0, 0, 3, 'H', 'a', 0, 0, 0, 0, 1, 'N', 0, 0, 0, 6, 'B', 'h', 'e', 'l', 'l', 'o');
  const frames = decodeEveryWay(stream);
  assert.deepEqual(
    frames.map((f) => [f.code, f.payload.toString('latin1')]),
    [
      [0x54, ''],
      [0x48, 'a\0'],
      [0x4e, ''],
      [0x42, 'hello'],
    ],
  );
});

test('FrameDecoder: a partial frame stays pending until its last byte', () => {
  const d = new FrameDecoder();
  assert.deepEqual(d.push(b(0, 0)), []);
  assert.equal(d.pendingBytes, 2);
  assert.deepEqual(d.push(b(0, 4, 'H', 'm')), []);
  assert.equal(d.pendingBytes, 6);
  const frames = d.push(b('x', 0, 0, 0));
  assert.equal(frames.length, 1);
  assert.deepEqual(frames[0]!.payload, b('m', 'x', 0));
  assert.equal(d.pendingBytes, 2, 'the start of the next header stays buffered');
  assert.deepEqual(d.push(Buffer.alloc(0)), [], 'an empty chunk yields nothing');
  assert.equal(d.pendingBytes, 2);
});

test('FrameDecoder: a frame of exactly the cap is accepted, one byte more is not', () => {
  const cap = 16;
  const atCap = Buffer.concat([b(0, 0, 0, 16, 'B'), Buffer.alloc(15, 0x2e)]);
  const frames = decodeEveryWay(atCap, { maxFrame: cap });
  assert.equal(frames[0]!.payload.length, 15);
  rejectsEveryWay(Buffer.concat([b(0, 0, 0, 17, 'B'), Buffer.alloc(16, 0x2e)]), 'frame too large', cap);
});

test('FrameDecoder: an oversized length is refused from the header alone, before any payload', () => {
  const d = new FrameDecoder();
  assert.equal(DEFAULT_MAX_FRAME, 0x100000);
  assert.throws(
    () => d.push(b(0x00, 0x10, 0x00, 0x01)),
    (err: unknown) => err instanceof MilterProtocolError && err.reason === 'frame too large' && /1048577/.test(err.message),
  );
  rejectsEveryWay(b(0xff, 0xff, 0xff, 0xff, 'B'), 'frame too large');
});

test('FrameDecoder: a declared length of zero is a protocol error', () => {
  rejectsEveryWay(b(0, 0, 0, 0), 'zero-length frame');
  rejectsEveryWay(b(0, 0, 0, 1, 'T', 0, 0, 0, 0, 'x'), 'zero-length frame');
});

test('FrameDecoder: a large frame fed one byte at a time is joined once', () => {
  const payload = Buffer.alloc(65535, 0x61);
  const bytes = Buffer.concat([b(0x00, 0x01, 0x00, 0x00, 'B'), payload]);
  const d = new FrameDecoder();
  let frames: RawFrame[] = [];
  for (let i = 0; i < bytes.length; i++) {
    frames = frames.concat(d.push(bytes.subarray(i, i + 1)));
    if (i < bytes.length - 1) assert.equal(frames.length, 0);
  }
  assert.equal(frames.length, 1);
  assert.ok(frames[0]!.payload.equals(payload));
  assert.equal(d.pendingBytes, 0);
});
