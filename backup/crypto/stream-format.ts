/**
 * The encrypted-object wire format: header codec, per-object key, chunk nonces, and a byte queue.
 * Pure: bytes in, values out; the streams in encrypt-stream.ts / decrypt-stream.ts own the I/O.
 *
 * AES-256-GCM in the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015), as in age
 * and Tink's AES-GCM-HKDF streaming AEAD:
 *
 *   header  = "CEERBAK1" | version u8 (1) | chunkBytes u32 BE | salt[32] | noncePrefix[7]
 *             | u16 BE length | backupId (UTF-8) | u16 BE length | name (UTF-8)
 *   key     = HKDF-SHA256(dataKey, salt, "ceerion-backup/v1\0" backupId "\0" name, 32 bytes)
 *   aad     = SHA-256(header)                                 (the same for every chunk)
 *   nonce_i = noncePrefix | i u32 BE | last u8                (last = 1 on the final chunk only)
 *   chunk_i = AES-256-GCM(key, nonce_i, aad, plaintext_i) | tag[16]
 *
 * Every chunk but the last holds exactly chunkBytes of plaintext; the last holds 0..chunkBytes, so
 * an empty object is a header and one 16-byte chunk. Why each part is there:
 * - The random salt gives every object its own key, so one data key can encrypt a whole backup
 *   without nonce reuse, and a chunk moved in from another object (or backup) cannot verify here.
 * - The counter in the nonce pins each chunk to its position (swaps fail); the last flag marks the
 *   end (a stream cut at a chunk boundary fails); hashing the header into the AAD binds every chunk
 *   to chunkBytes and the ids.
 * - The ids travel in clear so that a decryptor handed the wrong object can say whose it is.
 */
import { createHash, hkdfSync } from 'node:crypto';
import { StreamAuthError, type ObjectIdentity } from '../contracts.ts';

export const MAGIC = Buffer.from('CEERBAK1', 'latin1');
export const FORMAT_VERSION = 1;
export const MIN_CHUNK_BYTES = 4 * 1024;
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024;
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
export const DATA_KEY_BYTES = 32;
export const TAG_BYTES = 16;
export const SALT_BYTES = 32;
export const NONCE_PREFIX_BYTES = 7;
export const MAX_ID_BYTES = 255;
/** The counter is a u32 in the nonce; one more chunk would repeat a nonce. */
export const MAX_CHUNK_INDEX = 0xffff_ffff;

const FIXED_HEADER_BYTES = MAGIC.length + 1 + 4 + SALT_BYTES + NONCE_PREFIX_BYTES;
export const MAX_HEADER_BYTES = FIXED_HEADER_BYTES + 2 * (2 + MAX_ID_BYTES);
const KEY_INFO_PREFIX = 'ceerion-backup/v1\0';
// fatal: a header is ours byte for byte or not at all; ignoreBOM: a leading U+FEFF is part of the id.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export interface StreamHeader {
  version: typeof FORMAT_VERSION;
  chunkBytes: number;
  salt: Buffer;
  noncePrefix: Buffer;
  backupId: string;
  name: string;
}

/** How errors name an object: `${backupId}/${name}`. */
export function objectLabel(id: ObjectIdentity): string {
  return `${id.backupId}/${id.name}`;
}

export function checkDataKey(dataKey: Buffer): void {
  const length = dataKey?.length;
  if (!(dataKey instanceof Uint8Array) || length !== DATA_KEY_BYTES) {
    throw new Error(`data key must be ${DATA_KEY_BYTES} bytes, got ${length ?? typeof dataKey}`);
  }
}

export function checkChunkBytes(n: number, what = 'chunkBytes'): void {
  if (!Number.isInteger(n) || n < MIN_CHUNK_BYTES || n > MAX_CHUNK_BYTES) {
    throw new Error(`${what} must be an integer in ${MIN_CHUNK_BYTES}..${MAX_CHUNK_BYTES}, got ${n}`);
  }
}

/** What an id may be, so that it encodes to exactly one header and one HKDF info. */
function idProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'is not a string';
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length === 0) return 'is empty';
  if (bytes.length > MAX_ID_BYTES) return `is ${bytes.length} bytes of UTF-8, over ${MAX_ID_BYTES}`;
  // NUL separates the ids in the HKDF info; ("a\0b","c") and ("a","b\0c") must not share a key.
  if (value.includes('\0')) return 'contains NUL';
  // A lone surrogate would be written as U+FFFD and never match the id it came from.
  if (bytes.toString('utf8') !== value) return 'is not well-formed Unicode';
  return undefined;
}

export function checkIdentity(id: ObjectIdentity): void {
  for (const field of ['backupId', 'name'] as const) {
    const problem = idProblem(id?.[field]);
    if (problem) throw new Error(`object ${field} ${JSON.stringify(id?.[field])} ${problem}`);
  }
}

export function encodeHeader(h: StreamHeader): Buffer {
  checkChunkBytes(h.chunkBytes);
  checkIdentity(h);
  if (h.salt.length !== SALT_BYTES) throw new Error(`salt must be ${SALT_BYTES} bytes, got ${h.salt.length}`);
  if (h.noncePrefix.length !== NONCE_PREFIX_BYTES) {
    throw new Error(`nonce prefix must be ${NONCE_PREFIX_BYTES} bytes, got ${h.noncePrefix.length}`);
  }
  const id = Buffer.from(h.backupId, 'utf8');
  const name = Buffer.from(h.name, 'utf8');
  const out = Buffer.allocUnsafe(FIXED_HEADER_BYTES + 2 + id.length + 2 + name.length);
  let at = MAGIC.copy(out, 0);
  at = out.writeUInt8(h.version, at);
  at = out.writeUInt32BE(h.chunkBytes, at);
  at += h.salt.copy(out, at);
  at += h.noncePrefix.copy(out, at);
  at = out.writeUInt16BE(id.length, at);
  at += id.copy(out, at);
  at = out.writeUInt16BE(name.length, at);
  name.copy(out, at);
  return out;
}

/**
 * Parses the header at the start of `buf`. Returns undefined while more bytes are needed, and
 * throws StreamAuthError('bad-header') as soon as the bytes so far cannot start a valid header, so a
 * stream of garbage fails on its first write. `object` names the stream in that error.
 */
export function readHeader(buf: Buffer, object = 'unknown object'): { header: StreamHeader; length: number } | undefined {
  const bad = (why: string) => new StreamAuthError('bad-header', object, `bad header: ${why}`);
  const seen = Math.min(buf.length, MAGIC.length);
  if (!buf.subarray(0, seen).equals(MAGIC.subarray(0, seen))) throw bad('not a ceerion backup object (wrong magic)');
  if (buf.length <= MAGIC.length) return undefined;
  const version = buf[MAGIC.length]!;
  if (version !== FORMAT_VERSION) throw bad(`unknown format version ${version}`);
  if (buf.length < MAGIC.length + 5) return undefined;
  const chunkBytes = buf.readUInt32BE(MAGIC.length + 1);
  if (chunkBytes < MIN_CHUNK_BYTES || chunkBytes > MAX_CHUNK_BYTES) {
    throw bad(`chunk size ${chunkBytes} outside ${MIN_CHUNK_BYTES}..${MAX_CHUNK_BYTES}`);
  }
  const backupId = readId(buf, FIXED_HEADER_BYTES, 'backup id', bad);
  if (!backupId) return undefined;
  const name = readId(buf, backupId.end, 'object name', bad);
  if (!name) return undefined;
  const saltAt = MAGIC.length + 5;
  const header: StreamHeader = {
    version: FORMAT_VERSION,
    chunkBytes,
    salt: Buffer.from(buf.subarray(saltAt, saltAt + SALT_BYTES)),
    noncePrefix: Buffer.from(buf.subarray(saltAt + SALT_BYTES, FIXED_HEADER_BYTES)),
    backupId: backupId.value,
    name: name.value,
  };
  return { header, length: name.end };
}

function readId(
  buf: Buffer,
  at: number,
  what: string,
  bad: (why: string) => StreamAuthError,
): { value: string; end: number } | undefined {
  if (buf.length < at + 2) return undefined;
  const length = buf.readUInt16BE(at);
  if (length === 0 || length > MAX_ID_BYTES) throw bad(`${what} length ${length} outside 1..${MAX_ID_BYTES}`);
  const end = at + 2 + length;
  if (buf.length < end) return undefined;
  let value: string;
  try {
    value = UTF8.decode(buf.subarray(at + 2, end));
  } catch {
    throw bad(`${what} is not valid UTF-8`);
  }
  if (value.includes('\0')) throw bad(`${what} contains NUL`);
  return { value, end };
}

export function deriveObjectKey(dataKey: Buffer, id: ObjectIdentity & { salt: Buffer }): Buffer {
  checkDataKey(dataKey);
  const info = Buffer.from(`${KEY_INFO_PREFIX}${id.backupId}\0${id.name}`, 'utf8');
  return Buffer.from(hkdfSync('sha256', dataKey, id.salt, info, 32));
}

export function headerAad(headerBytes: Buffer): Buffer {
  return createHash('sha256').update(headerBytes).digest();
}

export function chunkNonce(noncePrefix: Buffer, index: number, last: boolean): Buffer {
  if (!Number.isInteger(index) || index < 0 || index > MAX_CHUNK_INDEX) {
    throw new RangeError(`chunk index ${index} outside 0..${MAX_CHUNK_INDEX}: too many chunks for one object`);
  }
  const nonce = Buffer.allocUnsafe(12);
  noncePrefix.copy(nonce, 0, 0, NONCE_PREFIX_BYTES);
  nonce.writeUInt32BE(index, NONCE_PREFIX_BYTES);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

/**
 * Incoming writes, held as a list and handed out by slicing, so that many small writes cost O(n)
 * and not the O(n²) of concatenating on every write.
 */
export class ByteQueue {
  private bufs: Buffer[] = [];
  private head = 0;
  private offset = 0;
  length = 0;

  push(buf: Buffer): void {
    if (buf.length === 0) return;
    this.bufs.push(buf);
    this.length += buf.length;
  }

  /**
   * The next n bytes, consumed: views into the written buffers when they are large, or one copy
   * when they average under 16 KiB, so a cipher is not fed one tiny piece per update call.
   */
  take(n: number): Buffer[] {
    const pieces = this.views(n);
    if (pieces.length > 1 && n / pieces.length < 16 * 1024) return [Buffer.concat(pieces, n)];
    return pieces;
  }

  /** The next n bytes as one buffer, consumed. */
  takeJoined(n: number): Buffer {
    const pieces = this.views(n);
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, n);
  }

  /** The first n bytes as one buffer (a copy when they span writes), not consumed. */
  peek(n: number): Buffer {
    if (n > this.length) throw new RangeError(`peek(${n}) with ${this.length} bytes queued`);
    const first = this.bufs[this.head];
    if (first && first.length - this.offset >= n) return first.subarray(this.offset, this.offset + n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (let i = this.head, off = this.offset; filled < n; i++, off = 0) {
      filled += this.bufs[i]!.copy(out, filled, off, Math.min(this.bufs[i]!.length, off + n - filled));
    }
    return out;
  }

  private views(n: number): Buffer[] {
    if (n > this.length) throw new RangeError(`take(${n}) with ${this.length} bytes queued`);
    const out: Buffer[] = [];
    let want = n;
    while (want > 0) {
      const buf = this.bufs[this.head]!;
      const available = buf.length - this.offset;
      const part = Math.min(available, want);
      out.push(buf.subarray(this.offset, this.offset + part));
      want -= part;
      if (part === available) {
        this.bufs[this.head++] = EMPTY;
        this.offset = 0;
      } else {
        this.offset += part;
      }
    }
    this.length -= n;
    // Drop consumed slots now and then instead of shift()ing on every buffer (O(n) each).
    if (this.head > 64 && this.head * 2 > this.bufs.length) {
      this.bufs = this.bufs.slice(this.head);
      this.head = 0;
    }
    return out;
  }
}

const EMPTY = Buffer.alloc(0);
