/** NUL-terminated string helpers that never read past the end of a short packet. */
import { MilterProtocolError } from './errors.ts';

export function readCString(buf: Buffer, offset: number, what: string): [string, number] {
  const end = buf.indexOf(0, offset);
  if (end < 0) throw new MilterProtocolError('unterminated string', what);
  return [buf.toString('utf8', offset, end), end + 1];
}

/** All NUL-terminated strings in a payload; the payload must end with a NUL. */
export function readCStrings(buf: Buffer, what: string): string[] {
  const out: string[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const [s, next] = readCString(buf, offset, what);
    out.push(s);
    offset = next;
  }
  return out;
}

export function cstrings(...parts: string[]): Buffer {
  const bufs: Buffer[] = [];
  for (const p of parts) {
    if (p.includes('\0')) throw new TypeError(`milter string contains NUL: ${JSON.stringify(p)}`);
    bufs.push(Buffer.from(p, 'utf8'), ZERO);
  }
  return Buffer.concat(bufs);
}

const ZERO = Buffer.from([0]);
