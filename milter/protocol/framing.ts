/**
 * Milter framing: a 4-byte big-endian length that counts the command byte, then the command byte,
 * then the payload. Pure: bytes in, frames out; nothing here touches a socket.
 */
import { DEFAULT_MAX_FRAME } from './constants.ts';
import { MilterProtocolError } from './errors.ts';

export interface RawFrame {
  code: number;
  payload: Buffer;
}

export function encodeFrame(code: number, payload?: Buffer | Uint8Array): Buffer {
  const len = payload ? payload.length : 0;
  const out = Buffer.allocUnsafe(5 + len);
  out.writeUInt32BE(len + 1, 0);
  out[4] = code;
  if (payload && len) out.set(payload, 5);
  return out;
}

/**
 * Incremental decoder. Chunks are kept in a list and joined once a whole frame is there, so a
 * large frame arriving in many small TCP segments costs O(n), not O(n²).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxFrame: number = DEFAULT_MAX_FRAME) {}

  /** Bytes received but not yet part of a whole frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Feed bytes; returns every frame completed by them. Throws MilterProtocolError on bad framing. */
  push(chunk: Buffer): RawFrame[] {
    if (chunk.length === 0) return [];
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: RawFrame[] = [];
    const fail = (err: MilterProtocolError) => {
      err.framesBefore = frames;
      return err;
    };
    for (;;) {
      if (this.buffered < 4) break;
      const head = this.peek(4);
      const declared = head.readUInt32BE(0);
      if (declared === 0) throw fail(new MilterProtocolError('zero-length frame'));
      if (declared > this.maxFrame) {
        throw fail(new MilterProtocolError('frame too large', `declared ${declared} bytes, cap ${this.maxFrame}`));
      }
      if (this.buffered < 4 + declared) break;
      const whole = this.take(4 + declared);
      frames.push({ code: whole[4]!, payload: whole.subarray(5) });
    }
    return frames;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }

  private take(n: number): Buffer {
    let first = this.chunks[0]!;
    if (first.length < n) {
      first = Buffer.concat(this.chunks);
      this.chunks = [first];
    }
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    return out;
  }
}
