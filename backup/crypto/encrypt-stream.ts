/**
 * Plaintext in, encrypted object out (format: stream-format.ts). The header goes out with the first
 * write or at end; each chunk goes out once the chunk after it has begun, because a chunk's nonce
 * says whether it is the last and only the next byte (or the end) tells.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { ObjectIdentity } from '../contracts.ts';
import {
  ByteQueue,
  checkChunkBytes,
  checkDataKey,
  checkIdentity,
  chunkNonce,
  DEFAULT_CHUNK_BYTES,
  deriveObjectKey,
  encodeHeader,
  FORMAT_VERSION,
  headerAad,
  NONCE_PREFIX_BYTES,
  SALT_BYTES,
  TAG_BYTES,
  type StreamHeader,
} from './stream-format.ts';

export interface EncryptOptions {
  /** Plaintext bytes per chunk, 4 KiB..16 MiB (default 1 MiB). The decryptor buffers one chunk. */
  chunkBytes?: number;
  /** Source of the salt and nonce prefix (tests pass a seeded one); default crypto.randomBytes. */
  random?: (n: number) => Buffer;
}

/**
 * Throws before any byte is written when the key, the ids or the options are wrong, so a backup
 * never uploads the start of an object it cannot finish.
 */
export function createEncryptStream(dataKey: Buffer, id: ObjectIdentity, opts: EncryptOptions = {}): Transform {
  checkDataKey(dataKey);
  checkIdentity(id);
  const chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  checkChunkBytes(chunkBytes);
  const random = opts.random ?? randomBytes;
  const header: StreamHeader = {
    version: FORMAT_VERSION,
    chunkBytes,
    salt: Buffer.from(random(SALT_BYTES)),
    noncePrefix: Buffer.from(random(NONCE_PREFIX_BYTES)),
    backupId: id.backupId,
    name: id.name,
  };
  const headerBytes = encodeHeader(header);
  return new EncryptStream(deriveObjectKey(dataKey, header), header, headerBytes);
}

class EncryptStream extends Transform {
  private readonly pending = new ByteQueue();
  private readonly aad: Buffer;
  private headerSent = false;
  private index = 0;

  constructor(
    private readonly key: Buffer,
    private readonly header: StreamHeader,
    private readonly headerBytes: Buffer,
  ) {
    super();
    this.aad = headerAad(headerBytes);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.sendHeader();
      this.pending.push(chunk);
      // Strictly more than a chunk: a full chunk with nothing after it yet may still be the last.
      while (this.pending.length > this.header.chunkBytes) this.seal(this.header.chunkBytes, false);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.sendHeader();
      this.seal(this.pending.length, true);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.key.fill(0);
    callback(err);
  }

  private sendHeader(): void {
    if (this.headerSent) return;
    this.headerSent = true;
    this.push(this.headerBytes);
  }

  private seal(n: number, last: boolean): void {
    // chunkNonce throws past 2^32 chunks, before this chunk's first byte is pushed.
    const cipher = createCipheriv('aes-256-gcm', this.key, chunkNonce(this.header.noncePrefix, this.index, last), {
      authTagLength: TAG_BYTES,
    });
    cipher.setAAD(this.aad);
    for (const piece of this.pending.take(n)) {
      const out = cipher.update(piece);
      if (out.length) this.push(out);
    }
    cipher.final();
    this.push(cipher.getAuthTag());
    this.index++;
  }
}
