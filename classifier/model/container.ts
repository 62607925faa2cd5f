/**
 * The model container: one binary file holding a snapshot's named sections, so a model can be
 * stored as one bytea, exported, copied between installations and checked (`verifyModel`, the
 * equivalent of mox's `verifydata`) without knowing what the sections mean.
 *
 * Layout, all integers big-endian:
 *
 *   header   8  magic "CEERMODL"
 *            2  format version (1)
 *            2  flags, 0 (reserved: a reader must refuse what it does not understand)
 *            4  section count (at most MAX_SECTIONS)
 *            8  total length of the file, trailer included
 *   table    per section: 1 name length, name (ASCII, NAME rule), 8 byte length, 32 SHA-256
 *   data     the sections' bytes, back to back in table order
 *   trailer  32  SHA-256 of every byte before it
 *
 * Offsets are implied by the lengths rather than stored: a stored offset could disagree with its
 * neighbours, an implied one cannot, and it makes the encoding canonical (decode then encode gives
 * the same bytes). The total length catches truncation before any hashing; the whole-file hash
 * catches any flipped bit; the per-section hashes say which section a damaged file lost.
 */
import { createHash } from 'node:crypto';
import type { DecodedModel, ModelReport, ModelSections, SectionInfo } from './types.ts';

export const MAGIC = Buffer.from('CEERMODL', 'ascii');
export const FORMAT_VERSION = 1;
export const MAX_SECTIONS = 256;
/** Lower case, starts with a letter: never integer-like, so safe as an object key too. */
export const SECTION_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;

const HEADER_BYTES = 24;
const HASH_BYTES = 32;
/** Smallest table entry: 1-byte length, 1-byte name, length, hash. */
const MIN_ENTRY_BYTES = 1 + 1 + 8 + HASH_BYTES;

/** The input is not a valid container; `problems` lists every defect found, in file order. */
export class ModelFormatError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid model container: ${problems.join('; ')}`);
    this.name = 'ModelFormatError';
  }
}

const sha256 = (data: Uint8Array): Buffer => createHash('sha256').update(data).digest();

export function encodeModel(sections: ModelSections): Buffer {
  if (sections.size > MAX_SECTIONS) throw new RangeError(`a model holds at most ${MAX_SECTIONS} sections, got ${sections.size}`);
  const table: Buffer[] = [];
  const data: Buffer[] = [];
  for (const [name, bytes] of sections) {
    if (!SECTION_NAME.test(name)) throw new RangeError(`section name ${JSON.stringify(name)} does not match ${SECTION_NAME}`);
    if (!Buffer.isBuffer(bytes)) throw new TypeError(`section ${name} is not a Buffer`);
    const entry = Buffer.alloc(1 + name.length + 8 + HASH_BYTES);
    entry.writeUInt8(name.length, 0);
    entry.write(name, 1, 'ascii');
    entry.writeBigUInt64BE(BigInt(bytes.length), 1 + name.length);
    sha256(bytes).copy(entry, 1 + name.length + 8);
    table.push(entry);
    data.push(bytes);
  }
  const body = table.reduce((n, b) => n + b.length, 0) + data.reduce((n, b) => n + b.length, 0);
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt16BE(FORMAT_VERSION, 8);
  header.writeUInt16BE(0, 10);
  header.writeUInt32BE(sections.size, 12);
  header.writeBigUInt64BE(BigInt(HEADER_BYTES + body + HASH_BYTES), 16);
  const head = Buffer.concat([header, ...table, ...data]);
  return Buffer.concat([head, sha256(head)]);
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const short = (h: string): string => `${h.slice(0, 12)}…`;

/** Printable rendering of bytes that should have been the magic, for the message. */
function shownBytes(b: Buffer): string {
  return JSON.stringify(b.toString('latin1')).replace(/[^\x20-\x7e]/g, '?');
}

interface Parsed {
  report: ModelReport;
  decoded?: DecodedModel;
}

/**
 * Walk the file, collecting problems instead of stopping at the first, so a report says what
 * else is wrong. Structural damage that makes the rest unreadable (a table running past the end)
 * ends the walk. Never throws: every read is bounds-checked first.
 */
function parse(input: unknown): Parsed {
  if (!(input instanceof Uint8Array)) {
    return { report: { ok: false, bytes: 0, sections: [], problems: ['input is not a Buffer'] } };
  }
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const problems: string[] = [];
  const sections: SectionInfo[] = [];
  const report = (): Parsed => ({ report: { ok: problems.length === 0, bytes: buf.length, sections, problems, formatVersion } });
  let formatVersion: number | undefined;

  if (buf.length < HEADER_BYTES + HASH_BYTES) {
    if (buf.length >= MAGIC.length && !buf.subarray(0, MAGIC.length).equals(MAGIC)) problems.push(badMagic(buf));
    problems.push(`file is ${buf.length} bytes, shorter than the smallest container (${HEADER_BYTES + HASH_BYTES})`);
    return report();
  }
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) {
    // Not ours at all: the rest would only be noise.
    problems.push(badMagic(buf));
    return report();
  }
  formatVersion = buf.readUInt16BE(8);
  if (formatVersion !== FORMAT_VERSION) {
    problems.push(`format version ${formatVersion} is not supported (this build reads version ${FORMAT_VERSION})`);
    return report();
  }
  const flags = buf.readUInt16BE(10);
  if (flags !== 0) problems.push(`flags are 0x${flags.toString(16)}, expected 0 (written by a newer build?)`);
  const count = buf.readUInt32BE(12);
  const declared = buf.readBigUInt64BE(16);
  if (declared !== BigInt(buf.length)) {
    const why = declared > BigInt(buf.length) ? 'truncated' : 'extra bytes after the end';
    problems.push(`file is ${buf.length} bytes but its header says ${declared} (${why})`);
  }
  const end = buf.length - HASH_BYTES;
  const stored = buf.subarray(end);
  const computed = sha256(buf.subarray(0, end));
  if (!computed.equals(stored)) {
    problems.push(`whole-file SHA-256 mismatch (stored ${short(hex(stored))}, computed ${short(hex(computed))})`);
  }
  if (count > MAX_SECTIONS || count * MIN_ENTRY_BYTES > end - HEADER_BYTES) {
    problems.push(`section count ${count} is impossible (at most ${MAX_SECTIONS}, and the table must fit in the file)`);
    return report();
  }

  // Section table.
  const entries: Array<{ name: string; length: number; hash: Buffer }> = [];
  let at = HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    const nameLength = buf.readUInt8(at);
    if (at + 1 + nameLength + 8 + HASH_BYTES > end) {
      problems.push(`section table entry ${i} runs past the end of the file`);
      return report();
    }
    const name = buf.toString('latin1', at + 1, at + 1 + nameLength);
    if (!SECTION_NAME.test(name)) problems.push(`section ${i} has an invalid name ${JSON.stringify(name)}`);
    else if (entries.some((e) => e.name === name)) problems.push(`section name ${JSON.stringify(name)} appears twice`);
    const length = buf.readBigUInt64BE(at + 1 + nameLength);
    const hash = buf.subarray(at + 1 + nameLength + 8, at + 1 + nameLength + 8 + HASH_BYTES);
    at += 1 + nameLength + 8 + HASH_BYTES;
    if (length > BigInt(end)) {
      problems.push(`section ${JSON.stringify(name)} claims ${length} bytes, more than the whole file`);
      return report();
    }
    entries.push({ name, length: Number(length), hash });
  }

  // Data: the sections must exactly fill the space between the table and the trailer.
  const dataBytes = entries.reduce((n, e) => n + e.length, 0);
  if (at + dataBytes !== end) {
    problems.push(`sections hold ${dataBytes} bytes but the file has ${end - at} bytes of section data`);
    return report();
  }
  const map: ModelSections = new Map();
  for (const e of entries) {
    const bytes = buf.subarray(at, at + e.length);
    at += e.length;
    const digest = hex(sha256(bytes));
    sections.push({ name: e.name, bytes: e.length, sha256: hex(e.hash) });
    if (digest !== hex(e.hash)) {
      problems.push(`section ${JSON.stringify(e.name)}: SHA-256 mismatch (stored ${short(hex(e.hash))}, computed ${short(digest)})`);
    }
    map.set(e.name, bytes);
  }
  const parsed = report();
  if (parsed.report.ok) parsed.decoded = { formatVersion, sections: map, info: sections, sha256: hex(stored) };
  return parsed;
}

function badMagic(buf: Buffer): string {
  return `bad magic ${shownBytes(buf.subarray(0, MAGIC.length))}, expected "CEERMODL" (not a CEERION model file)`;
}

/** Check a container without trusting it; never throws. */
export function verifyModel(buf: unknown): ModelReport {
  return parse(buf).report;
}

/** Decode a container, or throw ModelFormatError listing every problem. */
export function decodeModel(buf: Buffer): DecodedModel {
  const { report, decoded } = parse(buf);
  if (!decoded) throw new ModelFormatError(report.problems);
  return decoded;
}

