/**
 * SMTP/LMTP replies as a pure codec (bytes in, replies out; replies to bytes), and the dot-stuffer
 * for DATA. Nothing here touches a socket; the session in dovecot-client.ts owns that.
 *
 * The wire format, summarised from RFC 5321 §4.2 and RFC 2034/3463:
 *   reply      = *( code "-" [text] CRLF ) code [ SP text ] CRLF     ; every line the same code
 *   code       = %x32-35 DIGIT DIGIT                                   ; 2xx-5xx
 *   enhanced   = class "." 1*3DIGIT "." 1*3DIGIT                       ; class = first digit of code
 * With ENHANCEDSTATUSCODES the enhanced code starts the text of every line (`250-2.1.5 OK`).
 * LMTP (RFC 2033) uses the same replies; after DATA the server sends one reply per accepted
 * recipient, which is just several replies in a row to this decoder.
 *
 * DATA (RFC 5321 §4.5.2): a line starting with "." gets another "." in front, lines end in CRLF,
 * and the body ends with CRLF "." CRLF.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { RecipientReply } from '../types.ts';

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;
const NUL = 0x00;

/** RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; 4 KiB leaves room for servers that exceed it. */
export const DEFAULT_MAX_LINE_BYTES = 4096;
/** Dovecot's longest reply is its LHLO capability list (~10 lines). */
export const DEFAULT_MAX_LINES = 100;

export interface SmtpReply {
  code: number;
  /** Enhanced status code from the first line, e.g. `5.2.2`, when the server sent one. */
  enhanced?: string;
  /** Text of each line with the code and enhanced code removed; at least one entry. */
  lines: string[];
}

export type ReplyErrorReason = 'line too long' | 'too many lines' | 'malformed line' | 'code changed mid-reply' | 'NUL byte';

/**
 * The peer does not speak SMTP replies. Sticky: the decoder throws it again on every later push.
 * The client maps it to a 4xx, so a confused peer defers mail instead of bouncing it.
 */
export class ReplyProtocolError extends Error {
  /** Whole replies decoded before the bad line in the same push. */
  repliesBefore: SmtpReply[] = [];

  constructor(
    readonly reason: ReplyErrorReason,
    detail?: string,
  ) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'ReplyProtocolError';
  }
}

export interface ReplyDecoderOptions {
  /** Longest line in bytes, not counting its LF (a CR before the LF counts). */
  maxLineBytes: number;
  /** Most lines in one (multi-line) reply. */
  maxLines: number;
}

/** Peer bytes in an error detail: short and quoted, so logs stay readable. */
const quote = (bytes: Buffer): string => JSON.stringify(bytes.subarray(0, 40).toString('latin1')) + (bytes.length > 40 ? '…' : '');

const ENHANCED_RE = /^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)/;

/**
 * Incremental reply decoder. Errors are raised where the stream stops being valid (the first byte
 * past the line cap, or the LF of a bad line), so the outcome never depends on how TCP cut it.
 */
export class ReplyDecoder {
  private readonly maxLineBytes: number;
  private readonly maxLines: number;
  /** Copies of the current unterminated line's pieces: a big socket chunk is not kept alive. */
  private line: Buffer[] = [];
  private lineBytes = 0;
  /** Lines of the multi-line reply in progress. */
  private current: { code: number; enhanced?: string; lines: string[] } | undefined;
  private failure: ReplyProtocolError | undefined;

  constructor(opts: Partial<ReplyDecoderOptions> = {}) {
    this.maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.maxLines = opts.maxLines ?? DEFAULT_MAX_LINES;
  }

  /** Bytes held while waiting for a line's LF: never more than maxLineBytes. */
  get pendingBytes(): number {
    return this.lineBytes;
  }

  /** True when a reply has started (a partial line or `-` lines) but not ended. */
  get midReply(): boolean {
    return this.lineBytes > 0 || this.current !== undefined;
  }

  /** Feed bytes; returns every reply they complete. Throws ReplyProtocolError on garbage. */
  push(chunk: Buffer): SmtpReply[] {
    if (this.failure) throw this.failure;
    const out: SmtpReply[] = [];
    try {
      let start = 0;
      while (start < chunk.length) {
        const lf = chunk.indexOf(LF, start);
        const end = lf === -1 ? chunk.length : lf;
        if (end - start > this.maxLineBytes - this.lineBytes) {
          throw new ReplyProtocolError('line too long', `over ${this.maxLineBytes} bytes without LF`);
        }
        if (lf === -1) {
          this.line.push(Buffer.from(chunk.subarray(start)));
          this.lineBytes += end - start;
          break;
        }
        let line = chunk.subarray(start, lf);
        if (this.lineBytes > 0) {
          line = Buffer.concat([...this.line, line]);
          this.line = [];
          this.lineBytes = 0;
        }
        start = lf + 1;
        const reply = this.onLine(line);
        if (reply) out.push(reply);
      }
    } catch (err) {
      if (err instanceof ReplyProtocolError) {
        err.repliesBefore = out;
        this.failure = err;
      }
      throw err;
    }
    return out;
  }

  private onLine(raw: Buffer): SmtpReply | undefined {
    // Servers end lines with CRLF; a bare LF is tolerated as Postfix's smtp client does.
    const line = raw.length > 0 && raw[raw.length - 1] === CR ? raw.subarray(0, raw.length - 1) : raw;
    if (line.includes(NUL)) throw new ReplyProtocolError('NUL byte', quote(line));
    const sep = line[3];
    const digits = line.length >= 3 && line[0]! >= 0x32 && line[0]! <= 0x35 && isDigit(line[1]) && isDigit(line[2]);
    if (!digits || (sep !== undefined && sep !== 0x20 && sep !== 0x2d)) throw new ReplyProtocolError('malformed line', quote(line));
    const code = Number(line.toString('latin1', 0, 3));
    // Malformed UTF-8 becomes U+FFFD: reply texts may echo addresses, which are not ours to judge.
    let text = line.length > 4 ? line.toString('utf8', 4) : '';
    const m = ENHANCED_RE.exec(text);
    let enhanced: string | undefined;
    // RFC 3463: the class must match the reply's first digit; otherwise it is just text.
    if (m && Number(m[1]) === Math.floor(code / 100)) {
      enhanced = `${m[1]}.${m[2]}.${m[3]}`;
      text = text.slice(m[0].length);
    }
    const cur = this.current ?? { code, enhanced, lines: [] };
    if (cur.code !== code) throw new ReplyProtocolError('code changed mid-reply', `${cur.code} then ${code}`);
    cur.lines.push(text);
    const last = sep !== 0x2d;
    if (!last && cur.lines.length >= this.maxLines) throw new ReplyProtocolError('too many lines', `more than ${this.maxLines} in one reply`);
    if (!last) {
      this.current = cur;
      return undefined;
    }
    this.current = undefined;
    return cur.enhanced === undefined ? { code: cur.code, lines: cur.lines } : cur;
  }
}

function isDigit(b: number | undefined): boolean {
  return b !== undefined && b >= 0x30 && b <= 0x39;
}

/** A reply as a server sends it (for tests and fake servers); refuses text that would inject lines. */
export function encodeReply(reply: SmtpReply): Buffer {
  if (!Number.isInteger(reply.code) || reply.code < 200 || reply.code > 599) throw new TypeError(`reply code out of range: ${reply.code}`);
  if (reply.enhanced !== undefined && !(ENHANCED_RE.test(reply.enhanced) && reply.enhanced[0] === String(reply.code)[0])) {
    throw new TypeError(`bad enhanced status code ${JSON.stringify(reply.enhanced)} for ${reply.code}`);
  }
  if (reply.lines.length === 0) throw new TypeError('a reply needs at least one line');
  const out = reply.lines.map((text, i) => {
    if (/[\r\n\0]/.test(text)) throw new TypeError(`reply text contains CR, LF or NUL: ${JSON.stringify(text.slice(0, 80))}`);
    const sep = i === reply.lines.length - 1 ? ' ' : '-';
    const body = [reply.enhanced, text].filter((s) => s !== undefined && s !== '').join(' ');
    return body === '' && sep === ' ' ? `${reply.code}\r\n` : `${reply.code}${sep}${body}\r\n`;
  });
  return Buffer.from(out.join(''), 'utf8');
}

/**
 * The per-recipient answer handed back to Postfix: one line, so control characters (a bare CR a
 * server left in its text) become spaces rather than breaking our own reply.
 */
export function toRecipientReply(reply: SmtpReply): RecipientReply {
  const message = reply.lines.join(' ').replace(/[\x00-\x1f\x7f]/g, ' ').trim();
  return reply.enhanced === undefined ? { code: reply.code, message } : { code: reply.code, enhanced: reply.enhanced, message };
}

const CRLF = Buffer.from('\r\n');
const EXTRA_DOT = Buffer.from('.');
const TERMINATOR = Buffer.from('.\r\n');

/**
 * DATA transparency as a Transform: doubles a `.` at the start of every line, turns a bare LF into
 * CRLF, and on end adds CRLF when the body did not end with a line break, then `.` CRLF. State
 * carries across chunks, so a CRLF split between two chunks, or a `.` that starts a chunk right
 * after a line break, is handled the same as in one chunk. A bare CR is passed through untouched
 * (it does not end a line), as Postfix's own smtp client does. One push per input chunk, so
 * backpressure from the socket reaches the body source.
 */
export class DotStuffer extends Transform {
  private atLineStart = true;
  private lastByte = -1;

  constructor(private readonly terminate = true) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const n = chunk.length;
    if (n === 0) return cb();
    const out: Buffer[] = [];
    let start = 0;
    let i = 0;
    while (i < n) {
      if (this.atLineStart) {
        this.atLineStart = false;
        if (chunk[i] === DOT) {
          out.push(chunk.subarray(start, i), EXTRA_DOT);
          start = i;
        }
      }
      const lf = chunk.indexOf(LF, i);
      if (lf === -1) break;
      const prev = lf > 0 ? chunk[lf - 1] : this.lastByte;
      if (prev !== CR) {
        out.push(chunk.subarray(start, lf), CRLF);
        start = lf + 1;
      }
      this.atLineStart = true;
      i = lf + 1;
    }
    if (n > 0) this.lastByte = chunk[n - 1]!;
    out.push(chunk.subarray(start));
    cb(null, out.length === 1 ? out[0] : Buffer.concat(out));
  }

  override _flush(cb: TransformCallback): void {
    const tail: Buffer[] = [];
    if (!this.atLineStart) tail.push(CRLF);
    if (this.terminate) tail.push(TERMINATOR);
    cb(null, tail.length > 0 ? Buffer.concat(tail) : undefined);
  }
}
