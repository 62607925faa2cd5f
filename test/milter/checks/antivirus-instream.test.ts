/** The INSTREAM codec by tables: chunk frames, every reply form, replies split at every byte offset, the reply cap. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ClamdProtocolError,
  END_OF_STREAM,
  INSTREAM_COMMAND,
  PING_COMMAND,
  ReplyDecoder,
  encodeInstream,
  frameChunk,
  parseReply,
  type ClamdReply,
} from '../../../milter/clamd/instream.ts';

describe('INSTREAM frames', () => {
  test('the commands are z-prefixed and NUL-terminated; the terminator is a zero length', () => {
    assert.deepEqual(INSTREAM_COMMAND, Buffer.from('zINSTREAM\0'));
    assert.deepEqual(PING_COMMAND, Buffer.from('zPING\0'));
    assert.deepEqual(END_OF_STREAM, Buffer.from([0, 0, 0, 0]));
  });

  const chunks: Array<[number, number[]]> = [
    [1, [0, 0, 0, 1]],
    [255, [0, 0, 0, 255]],
    [256, [0, 0, 1, 0]],
    [65_535, [0, 0, 255, 255]],
    [0x0102_0304, [1, 2, 3, 4]],
  ];
  for (const [length, prefix] of chunks) {
    test(`a ${length}-byte chunk has the big-endian prefix ${prefix.join(' ')} and the data itself`, () => {
      const data = Buffer.alloc(length, 0x61);
      const [head, body] = frameChunk(data);
      assert.deepEqual([...head], prefix);
      assert.equal(body, data, 'the data is passed through, not copied');
    });
  }

  test('an empty chunk is refused: it would end the stream', () => {
    assert.throws(() => frameChunk(Buffer.alloc(0)), RangeError);
  });

  test('encodeInstream: command, chunks of at most chunkBytes, terminator', () => {
    const wire = encodeInstream(Buffer.from('hello world'), 5);
    const expected = Buffer.concat([
      Buffer.from('zINSTREAM\0'),
      Buffer.from([0, 0, 0, 5]),
      Buffer.from('hello'),
      Buffer.from([0, 0, 0, 5]),
      Buffer.from(' worl'),
      Buffer.from([0, 0, 0, 1]),
      Buffer.from('d'),
      Buffer.from([0, 0, 0, 0]),
    ]);
    assert.deepEqual(wire, expected);
    assert.deepEqual(encodeInstream(Buffer.alloc(0)), Buffer.from('zINSTREAM\0\0\0\0\0'));
  });
});

describe('clamd replies', () => {
  const replies: Array<[string, ClamdReply]> = [
    ['stream: OK', { kind: 'clean' }],
    ['stream: Eicar-Signature FOUND', { kind: 'virus', name: 'Eicar-Signature' }],
    ['stream: Ceerion.Test.EICAR.UNOFFICIAL FOUND', { kind: 'virus', name: 'Ceerion.Test.EICAR.UNOFFICIAL' }],
    ['stream: Win.Test.EICAR_HDB-1 FOUND', { kind: 'virus', name: 'Win.Test.EICAR_HDB-1' }],
    // ExtendedDetectionInfo adds the hash and size of the matching part.
    ['stream: Eicar-Signature(44d88612fea8a8f36de82e1278abb02f:68) FOUND', { kind: 'virus', name: 'Eicar-Signature(44d88612fea8a8f36de82e1278abb02f:68)' }],
    ['stream: Heuristics.Encrypted.Zip FOUND', { kind: 'virus', name: 'Heuristics.Encrypted.Zip' }],
    ['INSTREAM size limit exceeded. ERROR', { kind: 'error', text: 'INSTREAM size limit exceeded.' }],
    ["stream: Can't allocate memory ERROR", { kind: 'error', text: "Can't allocate memory" }],
    ['stream: lstat() failed: No such file or directory. ERROR', { kind: 'error', text: 'lstat() failed: No such file or directory.' }],
    ['COMMAND READ TIMED OUT', { kind: 'error', text: 'unexpected reply "COMMAND READ TIMED OUT"' }],
    ['UNKNOWN COMMAND', { kind: 'error', text: 'unexpected reply "UNKNOWN COMMAND"' }],
    ['ERROR', { kind: 'error', text: 'ERROR' }],
    ['stream:  FOUND', { kind: 'error', text: 'unexpected reply "stream:  FOUND"' }],
    ['', { kind: 'error', text: 'unexpected reply ""' }],
  ];
  for (const [text, expected] of replies) {
    test(`${JSON.stringify(text)} → ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(parseReply(text), expected);
    });
  }

  test('every reply, split at every byte offset, decodes to the same text', () => {
    for (const [text] of replies) {
      const wire = Buffer.from(`${text}\0`, 'latin1');
      for (let cut = 0; cut <= wire.length; cut++) {
        const d = new ReplyDecoder();
        const got = [...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))];
        assert.deepEqual(got, [text], `cut at ${cut}`);
        assert.equal(d.buffered, 0);
      }
      // One byte at a time.
      const d = new ReplyDecoder();
      const got = [...wire].flatMap((b) => d.push(Buffer.from([b])));
      assert.deepEqual(got, [text]);
    }
  });

  test('a reply without its NUL yet is kept, not returned', () => {
    const d = new ReplyDecoder();
    assert.deepEqual(d.push(Buffer.from('stream: O')), []);
    assert.equal(d.buffered, 9);
    assert.deepEqual(d.push(Buffer.from('K\0')), ['stream: OK']);
  });

  test('two replies in one chunk come out in order', () => {
    const d = new ReplyDecoder();
    assert.deepEqual(d.push(Buffer.from('PONG\0stream: OK\0stream: x')), ['PONG', 'stream: OK']);
    assert.deepEqual(d.push(Buffer.from(' FOUND\0')), ['stream: x FOUND']);
  });

  test('the reply cap: exactly maxBytes is fine, one more without a NUL throws, however it is chunked', () => {
    const ok = new ReplyDecoder(10);
    assert.deepEqual(ok.push(Buffer.from('0123456789\0')), ['0123456789']);
    const whole = new ReplyDecoder(10);
    assert.throws(() => whole.push(Buffer.from('0123456789A')), ClamdProtocolError);
    const split = new ReplyDecoder(10);
    split.push(Buffer.from('01234'));
    split.push(Buffer.from('56789'));
    assert.throws(() => split.push(Buffer.from('A')), /reply too long/);
    // A long stream of garbage never grows the buffer past the cap.
    const flood = new ReplyDecoder(4096);
    assert.throws(() => {
      for (let i = 0; i < 100; i++) flood.push(Buffer.alloc(1000, 0x41));
    }, ClamdProtocolError);
    assert.ok(flood.buffered <= 4096 + 1000);
  });
});
