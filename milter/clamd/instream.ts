/**
 * clamd's INSTREAM protocol, as a pure codec (bytes in, replies out; frames to bytes). The client
 * (client.ts) owns the socket.
 *
 * The protocol, from clamd(8):
 * - A command prefixed with `z` is NUL-terminated, and so is clamd's reply: `zINSTREAM\0`.
 * - The data follows in chunks, each `uint32 big-endian length` + that many bytes. A chunk of
 *   length 0 ends the stream, so an empty data chunk must never be sent.
 * - clamd stores the chunks (at most StreamMaxLength bytes in all), scans them and answers once:
 *     `stream: OK\0`                           clean
 *     `stream: Eicar-Signature FOUND\0`        a signature matched (names from databases that are
 *                                               not ClamAV's own get `.UNOFFICIAL` appended)
 *     `INSTREAM size limit exceeded. ERROR\0`  more than StreamMaxLength (sent early, then it closes)
 *     `stream: <reason> ERROR\0`               any other failure
 *   and closes the connection.
 * - `zPING\0` is answered with `PONG\0`.
 */

export const INSTREAM_COMMAND = Buffer.from('zINSTREAM\0', 'latin1');
export const PING_COMMAND = Buffer.from('zPING\0', 'latin1');
/** The zero-length chunk that ends the stream. */
export const END_OF_STREAM = Buffer.alloc(4);
/** Replies are one short line; anything longer is not clamd. */
export const DEFAULT_MAX_REPLY_BYTES = 4096;
const MAX_CHUNK = 0xffff_ffff;

export type ClamdReply = { kind: 'clean' } | { kind: 'virus'; name: string } | { kind: 'error'; text: string };

export class ClamdProtocolError extends Error {
  constructor(
    message: string,
    readonly detail?: string,
  ) {
    super(detail ? `${message}: ${detail}` : message);
    this.name = 'ClamdProtocolError';
  }
}

/** One data chunk: its length prefix and the data itself (two buffers, so the data is not copied). */
export function frameChunk(data: Buffer): [Buffer, Buffer] {
  if (data.length === 0) throw new RangeError('an empty INSTREAM chunk would end the stream');
  if (data.length > MAX_CHUNK) throw new RangeError(`INSTREAM chunk of ${data.length} bytes is too long`);
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(data.length, 0);
  return [head, data];
}

/** The whole request for a payload in memory (tests, small scans): command, chunks, terminator. */
export function encodeInstream(data: Buffer, chunkBytes = 64 * 1024): Buffer {
  const parts: Buffer[] = [INSTREAM_COMMAND];
  for (let off = 0; off < data.length; off += chunkBytes) parts.push(...frameChunk(data.subarray(off, off + chunkBytes)));
  parts.push(END_OF_STREAM);
  return Buffer.concat(parts);
}

/** A reply's text (without its NUL) as clean, virus or error. */
export function parseReply(text: string): ClamdReply {
  // Without IDSESSION there is no "N: " prefix; a scan reply names its source ("stream").
  const body = text.startsWith('stream: ') ? text.slice('stream: '.length) : text;
  if (body === 'OK') return { kind: 'clean' };
  const found = / FOUND$/.exec(body);
  if (found) {
    const name = body.slice(0, found.index).trim();
    if (name) return { kind: 'virus', name };
  }
  const error = / ?ERROR$/.exec(body);
  if (error) return { kind: 'error', text: body.slice(0, error.index).trim() || 'ERROR' };
  return { kind: 'error', text: `unexpected reply ${JSON.stringify(text.slice(0, 200))}` };
}

/** Splits clamd's byte stream into NUL-terminated replies, whatever the chunking; caps a reply's length. */
export class ReplyDecoder {
  private parts: Buffer[] = [];
  private pending = 0;

  constructor(private readonly maxBytes = DEFAULT_MAX_REPLY_BYTES) {}

  /** Complete replies in this chunk (without their NUL); a partial one is kept for the next push. */
  push(chunk: Buffer): string[] {
    const out: string[] = [];
    let start = 0;
    for (let nul = chunk.indexOf(0, start); nul >= 0; nul = chunk.indexOf(0, start)) {
      this.take(chunk.subarray(start, nul));
      out.push(Buffer.concat(this.parts).toString('latin1'));
      this.parts = [];
      this.pending = 0;
      start = nul + 1;
    }
    if (start < chunk.length) this.take(chunk.subarray(start));
    return out;
  }

  /** Bytes of a reply still waiting for its NUL. */
  get buffered(): number {
    return this.pending;
  }

  private take(bytes: Buffer): void {
    this.pending += bytes.length;
    if (this.pending > this.maxBytes) {
      throw new ClamdProtocolError('reply too long', `more than ${this.maxBytes} bytes without a NUL`);
    }
    if (bytes.length > 0) this.parts.push(bytes);
  }
}
