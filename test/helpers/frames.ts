/** Wire bytes by hand, and feeding them to the FrameDecoder in every chunking an MTA might use. */
import assert from 'node:assert/strict';
import { FrameDecoder, type RawFrame } from '../../milter/protocol/framing.ts';

/** Bytes from numbers (one byte each) and ASCII strings. */
export const b = (...parts: Array<number | string>): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : Buffer.from(p, 'latin1'))));

export function sameFrames(got: RawFrame[], want: RawFrame[], where: string): void {
  assert.equal(got.length, want.length, `${where}: frame count`);
  got.forEach((f, i) => {
    assert.equal(f.code, want[i]!.code, `${where}: code of frame ${i}`);
    assert.ok(f.payload.equals(want[i]!.payload), `${where}: payload of frame ${i}`);
  });
}

/**
 * Decode `bytes` whole, in two pieces at every offset, and one byte at a time: all must give the same
 * frames. Each piecewise decoder must then hold `pendingBytes` bytes (by default: as many as the
 * decoder that got `bytes` whole). Returns the frames.
 */
export function decodeEveryWay(bytes: Buffer, opts: { maxFrame?: number; pendingBytes?: number } = {}): RawFrame[] {
  const whole = new FrameDecoder(opts.maxFrame);
  const want = whole.push(bytes);
  const pending = opts.pendingBytes ?? whole.pendingBytes;
  for (let i = 1; i < bytes.length; i++) {
    const d = new FrameDecoder(opts.maxFrame);
    sameFrames([...d.push(bytes.subarray(0, i)), ...d.push(bytes.subarray(i))], want, `split at ${i}`);
    assert.equal(d.pendingBytes, pending, `split at ${i}: pending bytes`);
  }
  const d = new FrameDecoder(opts.maxFrame);
  const got: RawFrame[] = [];
  for (let i = 0; i < bytes.length; i++) got.push(...d.push(bytes.subarray(i, i + 1)));
  sameFrames(got, want, 'one byte at a time');
  assert.equal(d.pendingBytes, pending, 'one byte at a time: pending bytes');
  return want;
}
