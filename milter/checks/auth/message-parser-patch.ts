/**
 * mailauth's DKIM verifier (and signer) split header from body in `MessageParser`. Its two scans are
 * byte loops that allocate per byte: `processChunk` pushes every header byte into an array and
 * slices it to the last four, and `ensureLinebreaks` walks the whole message looking for bare LFs.
 * Under load through Postfix that was ~8% of the milter's CPU plus much of its garbage collection
 * (bench/README.md). These replacements find the same positions with `Buffer.indexOf` and yield
 * exactly the same chunks, in the same order, with the same state carried between writes: a
 * property test (test/milter/checks/auth/message-parser-patch.test.ts) runs the original and the
 * replacement side by side over random messages split at random points.
 *
 * The patch is on the shared prototype, so load order does not matter; it is applied once.
 */
import { createRequire } from 'node:module';

const LF = 0x0a;
const CR = 0x0d;
const CRLF = Buffer.from('\r\n');

/** The instance state the original methods use (mailauth 4.x `lib/dkim/message-parser.js`). */
export interface ParserState {
  state: 'header' | 'body';
  stateBytes: number[];
  headers: unknown;
  headerChunks: Buffer[];
  lastByte?: number;
  messageHeaders(headers: unknown): Promise<void>;
  nextChunk(chunk: Buffer): Promise<void>;
}

interface ParserPrototype {
  processChunk(this: ParserState, chunk: Buffer): Promise<void>;
  ensureLinebreaks(this: ParserState, input: Buffer): Generator<Buffer>;
  fastScan?: boolean;
}

const require = createRequire(import.meta.url);
const { MessageParser } = require('mailauth/lib/dkim/message-parser.js') as { MessageParser: { prototype: ParserPrototype } };
const { parseHeaders } = require('mailauth/lib/tools.js') as { parseHeaders(buf: Buffer): unknown };

/** The originals, for the equivalence test. */
export const original = { processChunk: MessageParser.prototype.processChunk, ensureLinebreaks: MessageParser.prototype.ensureLinebreaks };

/**
 * Index of the LF that ends the header block in `chunk` (an LF preceded by LF, or by CR LF), with
 * `tail` the bytes seen before this chunk (most recent last), or -1.
 */
function headerEnd(chunk: Buffer, tail: number[]): number {
  const before = (k: number): number | undefined => (k >= 0 ? chunk[k] : tail[tail.length + k]);
  for (let i = chunk.indexOf(LF); i !== -1; i = chunk.indexOf(LF, i + 1)) {
    const b1 = before(i - 1);
    if (b1 === LF || (b1 === CR && before(i - 2) === LF)) return i;
  }
  return -1;
}

/** The last four bytes of `tail` followed by `chunk`, as the original keeps them. */
function lastFour(tail: number[], chunk: Buffer): number[] {
  const take = Math.min(4, chunk.length);
  return [...tail, ...chunk.subarray(chunk.length - take)].slice(-4);
}

async function processChunk(this: ParserState, chunk: Buffer): Promise<void> {
  if (!chunk || !chunk.length) return;
  if (this.state === 'header') {
    const i = headerEnd(chunk, this.stateBytes);
    if (i === -1) {
      this.stateBytes = lastFour(this.stateBytes, chunk);
      this.headerChunks.push(chunk);
      return;
    }
    this.stateBytes = lastFour(this.stateBytes, chunk.subarray(0, i + 1));
    this.state = 'body';
    if (i === chunk.length - 1) {
      this.headerChunks.push(chunk);
      this.headers = parseHeaders(Buffer.concat(this.headerChunks));
      await this.messageHeaders(this.headers);
      return;
    }
    this.headerChunks.push(chunk.subarray(0, i + 1));
    this.headers = parseHeaders(Buffer.concat(this.headerChunks));
    await this.messageHeaders(this.headers);
    chunk = chunk.subarray(i + 1);
  }
  await this.nextChunk(chunk);
}

/** Yields `input` with every LF not preceded (ignoring other LFs) by CR turned into CR LF. */
function* ensureLinebreaks(this: ParserState, input: Buffer): Generator<Buffer> {
  let pos = 0;
  let last = this.lastByte;
  let prevLf = -1;
  for (let i = input.indexOf(LF); i !== -1; i = input.indexOf(LF, i + 1)) {
    // The original's lastByte is the last byte that was not an LF.
    if (i > prevLf + 1) last = input[i - 1];
    prevLf = i;
    if (last === CR) continue;
    yield i === 0 || pos === i ? Buffer.from(CRLF) : Buffer.concat([input.subarray(pos, i), CRLF]);
    pos = i + 1;
  }
  if (input.length > prevLf + 1) last = input[input.length - 1];
  this.lastByte = last;
  if (pos === 0) yield input;
  else if (pos < input.length) yield input.subarray(pos);
}

if (!MessageParser.prototype.fastScan) {
  MessageParser.prototype.processChunk = processChunk;
  MessageParser.prototype.ensureLinebreaks = ensureLinebreaks;
  MessageParser.prototype.fastScan = true;
}

export const messageParserPatched = MessageParser.prototype.fastScan === true;
