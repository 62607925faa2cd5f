/**
 * The Postfix policy delegation protocol (SMTPD_POLICY_README): `name=value` lines ending in LF,
 * a request ends with an empty line; the reply is `action=…` and an empty line. Pure: bytes in,
 * requests out, and actions to bytes; nothing here touches a socket. See README.md in this folder.
 */
import { isAscii } from 'node:buffer';
import type { PolicyAttributes } from '../types.ts';

const LF = 0x0a;
const CR = 0x0d;
const EQ = 0x3d;
const NUL = 0x00;

/** Defaults equal to the config's (core/config/policyd.ts), for callers without a config. */
export const DEFAULT_MAX_LINE_BYTES = 8192;
export const DEFAULT_MAX_ATTRIBUTES = 128;

/**
 * A peer broke the protocol. The session logs `reason` and closes that connection without a
 * reply, which SMTPD_POLICY_README prescribes for trouble: Postfix then retries later.
 */
export class PolicyProtocolError extends Error {
  /** Whole requests decoded before the bad line in the same input: the session still answers them. */
  requestsBefore: PolicyAttributes[] = [];

  constructor(
    readonly reason: string,
    detail?: string,
  ) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'PolicyProtocolError';
  }
}

/**
 * Postfix's own names are lower-case letters and `_`; the wider set still bounds what reaches logs,
 * metrics and Redis keys, and refuses anything that looks like another protocol (HTTP, SMTP).
 */
const NAME_BYTE = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-') NAME_BYTE[c.charCodeAt(0)] = 1;
const NAME_RE = /^[A-Za-z0-9_.-]+$/;

/** Attacker-supplied bytes in an error detail: short and quoted. */
const quote = (bytes: Buffer): string => JSON.stringify(bytes.subarray(0, 40).toString('latin1')) + (bytes.length > 40 ? '…' : '');

export interface PolicyDecoderOptions {
  /** Longest line in bytes, not counting its LF (a CR before the LF counts). */
  maxLineBytes: number;
  /** Most attribute lines in one request (repeated names count each time). */
  maxAttributes: number;
}

/**
 * Incremental request decoder. Errors are raised at the first byte where the stream stops being a
 * valid prefix (a NUL, the first byte past the line cap) or at the LF of a bad line, so the outcome
 * does not depend on how TCP cut the stream. After an error the decoder is dead: it throws again.
 */
export class PolicyDecoder {
  private readonly maxLineBytes: number;
  private readonly maxAttributes: number;
  /** Pieces of the current unterminated line: copies, so a big socket chunk is not kept alive. */
  private line: Buffer[] = [];
  private lineBytes = 0;
  private attrs: Record<string, string> = Object.create(null) as Record<string, string>;
  private count = 0;
  private failure: PolicyProtocolError | undefined;

  constructor(opts: Partial<PolicyDecoderOptions> = {}) {
    this.maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.maxAttributes = opts.maxAttributes ?? DEFAULT_MAX_ATTRIBUTES;
  }

  /** Bytes of the current line held while waiting for its LF: never more than maxLineBytes. */
  get pendingBytes(): number {
    return this.lineBytes;
  }

  /** Attribute lines of the request in progress. */
  get pendingAttributes(): number {
    return this.count;
  }

  /** Feed bytes; returns every request completed by them. Throws PolicyProtocolError on garbage. */
  push(chunk: Buffer): PolicyAttributes[] {
    if (this.failure) throw this.failure;
    const out: PolicyAttributes[] = [];
    try {
      if (this.lineBytes === 0 && isAscii(chunk)) {
        this.pushAscii(chunk, out);
        return out;
      }
      // One scan per chunk: the first NUL ends the connection, so later ones never matter.
      const nul = chunk.indexOf(NUL);
      let start = 0;
      while (start < chunk.length) {
        const lf = chunk.indexOf(LF, start);
        this.checkLine(start, lf === -1 ? chunk.length : lf, nul);
        if (lf === -1) {
          this.holdPartial(chunk, start);
          break;
        }
        let line = chunk.subarray(start, lf);
        if (this.lineBytes > 0) {
          line = Buffer.concat([...this.line, line]);
          this.line = [];
          this.lineBytes = 0;
        }
        start = lf + 1;
        this.onLine(line, out);
      }
    } catch (err) {
      if (err instanceof PolicyProtocolError) {
        err.requestsBefore = out;
        this.failure = err;
      }
      throw err;
    }
    return out;
  }

  /**
   * The same rules as the byte loop in push(), for a chunk that starts on a line boundary and is all
   * ASCII (what Postfix sends unless an address or HELO has 8-bit bytes): one string for the chunk,
   * and names and values sliced from it, instead of a Buffer view and two decodes per line. For
   * ASCII, latin1 and UTF-8 decode alike. A fuzz test holds both paths to the same results.
   */
  private pushAscii(chunk: Buffer, out: PolicyAttributes[]): void {
    const text = chunk.toString('latin1');
    const nul = text.indexOf('\0');
    let start = 0;
    while (start < text.length) {
      const lf = text.indexOf('\n', start);
      this.checkLine(start, lf === -1 ? text.length : lf, nul);
      if (lf === -1) {
        this.holdPartial(chunk, start);
        return;
      }
      this.onTextLine(text, start, lf, out);
      start = lf + 1;
    }
  }

  /**
   * The line (or line so far) from `start` to `end`, with the first NUL of the chunk at `nul`.
   * Whichever comes first in the stream decides the reason, as if fed a byte at a time.
   */
  private checkLine(start: number, end: number, nul: number): void {
    const room = this.maxLineBytes - this.lineBytes;
    const overAt = end - start > room ? start + room : Infinity;
    const nulAt = nul !== -1 && nul < end ? nul : Infinity;
    if (nulAt < overAt) throw new PolicyProtocolError('NUL byte', `at line byte ${this.lineBytes + nulAt - start}`);
    if (overAt !== Infinity) throw new PolicyProtocolError('line too long', `over ${this.maxLineBytes} bytes without LF`);
  }

  /** Keep the unterminated rest of the chunk until its LF arrives. */
  private holdPartial(chunk: Buffer, start: number): void {
    this.line.push(Buffer.from(chunk.subarray(start)));
    this.lineBytes += chunk.length - start;
  }

  private onTextLine(text: string, start: number, lf: number, out: PolicyAttributes[]): void {
    const end = lf > start && text.charCodeAt(lf - 1) === CR ? lf - 1 : lf;
    if (end === start) return this.endRequest(out);
    this.countAttribute();
    const eq = text.indexOf('=', start);
    if (eq === -1 || eq >= end) throw new PolicyProtocolError('line without =', quote(Buffer.from(text.slice(start, end), 'latin1')));
    if (eq === start) throw new PolicyProtocolError('empty attribute name');
    for (let i = start; i < eq; i++) {
      if (!NAME_BYTE[text.charCodeAt(i)]) throw new PolicyProtocolError('bad attribute name', quote(Buffer.from(text.slice(start, eq), 'latin1')));
    }
    this.attrs[text.slice(start, eq)] = text.slice(eq + 1, end);
  }

  private endRequest(out: PolicyAttributes[]): void {
    // Postfix always sends at least `request=`: an empty line with nothing before it is not Postfix.
    if (this.count === 0) throw new PolicyProtocolError('empty request');
    out.push(this.attrs);
    this.attrs = Object.create(null) as Record<string, string>;
    this.count = 0;
  }

  private countAttribute(): void {
    if (++this.count > this.maxAttributes) throw new PolicyProtocolError('too many attributes', `more than ${this.maxAttributes}`);
  }

  private onLine(raw: Buffer, out: PolicyAttributes[]): void {
    // CRLF is tolerated (people test with telnet); Postfix itself sends bare LF.
    const line = raw.length > 0 && raw[raw.length - 1] === CR ? raw.subarray(0, raw.length - 1) : raw;
    if (line.length === 0) return this.endRequest(out);
    this.countAttribute();
    const eq = line.indexOf(EQ);
    if (eq === -1) throw new PolicyProtocolError('line without =', quote(line));
    if (eq === 0) throw new PolicyProtocolError('empty attribute name');
    for (let i = 0; i < eq; i++) {
      if (!NAME_BYTE[line[i]!]) throw new PolicyProtocolError('bad attribute name', quote(line.subarray(0, eq)));
    }
    // Malformed UTF-8 becomes U+FFFD rather than an error: the bytes come from the SMTP client
    // (HELO, addresses), and closing the policy connection over them would 4xx the whole session.
    this.attrs[line.toString('latin1', 0, eq)] = line.toString('utf8', eq + 1);
  }
}

/** The answer to nearly every request, encoded once. */
const DUNNO_REPLY = Buffer.from('action=DUNNO\n\n');

/** `action=<action>\n\n`. An action with CR, LF or NUL would inject lines into Postfix's reply parser. */
export function encodeReply(action: string): Buffer {
  // Shared, so it must never be written to; socket.write only reads it.
  if (action === 'DUNNO') return DUNNO_REPLY;
  if (typeof action !== 'string' || action.length === 0) throw new TypeError(`policy action must be a non-empty string, got ${JSON.stringify(action)}`);
  if (/[\r\n\0]/.test(action)) throw new TypeError(`policy action contains CR, LF or NUL: ${JSON.stringify(action.slice(0, 80))}`);
  return Buffer.from(`action=${action}\n\n`, 'utf8');
}

/**
 * One request as Postfix sends it (for the client). Values may not contain CR either: a decoder
 * that tolerates CRLF would strip a trailing one, so the request would not arrive as sent.
 */
export function encodeRequest(attrs: Readonly<Record<string, string>>): Buffer {
  let text = '';
  for (const [name, value] of Object.entries(attrs)) {
    if (!NAME_RE.test(name)) throw new TypeError(`bad policy attribute name ${JSON.stringify(name)}`);
    if (typeof value !== 'string' || /[\r\n\0]/.test(value)) throw new TypeError(`policy attribute ${name} has CR, LF or NUL, or is not a string`);
    text += `${name}=${value}\n`;
  }
  if (text === '') throw new TypeError('a policy request needs at least one attribute');
  return Buffer.from(`${text}\n`, 'utf8');
}
