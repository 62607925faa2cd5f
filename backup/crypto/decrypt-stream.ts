/**
 * Encrypted object in, plaintext out (format: stream-format.ts). A chunk's plaintext is pushed only
 * after its tag verifies, so a consumer never sees a byte the writer did not write; what it has seen
 * when an error arrives is a true prefix of the object.
 *
 * Why decryption stopped is worth more than "failed": a restore that reports "chunk 3 is chunk 5"
 * or "another backup's object" points at the copy that went wrong, not at the crypto. So a chunk
 * that fails is looked up (locate-chunk.ts) among nearby positions and as a shorter final chunk
 * before it is called tampered.
 */
import { createDecipheriv } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { StreamAuthError, type ObjectIdentity, type StreamErrorCode } from '../contracts.ts';
import { locateChunk } from './locate-chunk.ts';
import {
  ByteQueue,
  checkChunkBytes,
  checkDataKey,
  chunkNonce,
  deriveObjectKey,
  headerAad,
  MAX_CHUNK_BYTES,
  MAX_CHUNK_INDEX,
  MAX_HEADER_BYTES,
  objectLabel,
  readHeader,
  TAG_BYTES,
  type StreamHeader,
} from './stream-format.ts';

export interface DecryptOptions {
  /**
   * The largest chunk size a header may declare (default and ceiling 16 MiB): the decryptor holds
   * one whole chunk, so this bounds its memory against a hostile header.
   */
  maxChunkBytes?: number;
}

/** Throws at once on a key that is not 32 bytes; everything about the stream fails as an 'error' event. */
export function createDecryptStream(dataKey: Buffer, expected: ObjectIdentity, opts: DecryptOptions = {}): Transform {
  checkDataKey(dataKey);
  const maxChunkBytes = opts.maxChunkBytes ?? MAX_CHUNK_BYTES;
  checkChunkBytes(maxChunkBytes, 'maxChunkBytes');
  return new DecryptStream(Buffer.from(dataKey), expected, maxChunkBytes);
}

interface Keyed {
  header: StreamHeader;
  key: Buffer;
  aad: Buffer;
  /** Bytes of one full chunk on the wire: chunkBytes + tag. */
  full: number;
}

class DecryptStream extends Transform {
  private readonly queue = new ByteQueue();
  private readonly object: string;
  private keyed: Keyed | undefined;
  private index = 0;

  constructor(
    private readonly dataKey: Buffer,
    private readonly expected: ObjectIdentity,
    private readonly maxChunkBytes: number,
  ) {
    super();
    this.object = objectLabel(expected);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.queue.push(chunk);
      this.drain(false);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.drain(true);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.dataKey.fill(0);
    this.keyed?.key.fill(0);
    callback(err);
  }

  private drain(eof: boolean): void {
    const keyed = this.keyed ?? this.readHeader(eof);
    if (!keyed) return;
    // One byte past a full chunk proves it is not the last; until then it might be.
    while (this.queue.length > keyed.full) this.openChunk(keyed, keyed.full, false);
    if (!eof) return;
    const rest = this.queue.length;
    if (rest === 0) throw this.fail('truncated', `the stream ends with no chunk ${this.index}`, this.index);
    if (rest < TAG_BYTES) {
      throw this.fail('truncated', `the stream ends inside chunk ${this.index}: ${rest} bytes, less than its tag`, this.index);
    }
    this.openChunk(keyed, rest, true);
  }

  private readHeader(eof: boolean): Keyed | undefined {
    const bytes = this.queue.peek(Math.min(this.queue.length, MAX_HEADER_BYTES));
    const parsed = readHeader(bytes, this.object);
    if (!parsed) {
      if (eof) throw this.fail('bad-header', `bad header: the stream ends ${bytes.length} bytes into the header`);
      return undefined;
    }
    const { header, length } = parsed;
    if (header.backupId !== this.expected.backupId || header.name !== this.expected.name) {
      throw this.fail(
        'header-mismatch',
        `this is the object ${objectLabel(header)}, expected ${this.object}: an object from another backup or another name`,
      );
    }
    if (header.chunkBytes > this.maxChunkBytes) {
      throw this.fail('bad-header', `bad header: chunk size ${header.chunkBytes} over the limit ${this.maxChunkBytes}`);
    }
    const headerBytes = this.queue.takeJoined(length);
    this.keyed = {
      header,
      key: deriveObjectKey(this.dataKey, header),
      aad: headerAad(headerBytes),
      full: header.chunkBytes + TAG_BYTES,
    };
    return this.keyed;
  }

  /** Decrypts the next `length` queued bytes as chunk `this.index`; pushes only once verified. */
  private openChunk(keyed: Keyed, length: number, last: boolean): void {
    const i = this.index;
    if (i > MAX_CHUNK_INDEX) {
      throw this.fail('trailing-data', `more than ${MAX_CHUNK_INDEX + 1} chunks: no object this long has a final chunk here`, i);
    }
    const ciphertext = this.queue.take(length - TAG_BYTES);
    const tag = this.queue.takeJoined(TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', keyed.key, chunkNonce(keyed.header.noncePrefix, i, last), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(keyed.aad);
    decipher.setAuthTag(tag);
    const plaintext = ciphertext.map((piece) => decipher.update(piece));
    try {
      decipher.final();
    } catch {
      throw this.diagnose(keyed, Buffer.concat([...ciphertext, tag]), last);
    }
    for (const piece of plaintext) if (piece.length) this.push(piece);
    this.index++;
  }

  /**
   * Chunk `this.index` (`bytes`, read as final when `atEnd`) did not verify. Say why, as precisely
   * as the cryptography allows: only a match under this object's key and header counts as evidence.
   */
  private diagnose(keyed: Keyed, bytes: Buffer, atEnd: boolean): StreamAuthError {
    const i = this.index;
    const matches = locateChunk(keyed.key, keyed.aad, keyed.header.noncePrefix, bytes, i, keyed.full);
    // A chunk that verifies at its full observed length explains everything; a shorter match can
    // only be a final chunk (every other chunk is exactly full-size) with bytes after it.
    const whole = matches.find((m) => m.length === bytes.length);
    const final = matches.filter((m) => m.last && m.length < bytes.length).sort((a, b) => b.length - a.length)[0];
    if (whole?.index === i && !whole.last) {
      return this.fail('truncated', `the stream ends after chunk ${i}, which is not the final chunk (cut at a chunk boundary)`, i + 1);
    }
    if (whole?.index === i && whole.last) {
      return this.fail('trailing-data', `bytes follow the final chunk (chunk ${i})`, i);
    }
    if (whole) {
      return this.fail('reordered', `chunk ${i} is chunk ${whole.index}${whole.last ? ', the final chunk,' : ''} of this object`, i);
    }
    if (final?.index === i) {
      const after = atEnd ? `${bytes.length - final.length} bytes` : 'bytes';
      return this.fail('trailing-data', `${after} follow the final chunk (chunk ${i}, ${final.length} bytes)`, i);
    }
    if (final) {
      return this.fail('reordered', `chunk ${i} is chunk ${final.index}, the final chunk, of this object, with other bytes after it`, i);
    }
    const cause =
      i === 0
        ? 'wrong key or tampered (or another object spliced in)'
        : 'tampered, or spliced in from another object or backup';
    const cut = atEnd && bytes.length < keyed.full ? '; or the object was cut short inside its final chunk' : '';
    return this.fail('auth-failed', `chunk ${i} does not verify: ${cause}${cut}`, i);
  }

  private fail(code: StreamErrorCode, message: string, chunk?: number): StreamAuthError {
    return new StreamAuthError(code, this.object, message, chunk);
  }
}
