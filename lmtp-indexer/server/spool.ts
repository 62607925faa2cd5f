/**
 * The body of a message in transit, hashed (SHA-256) while it arrives. Small messages (most mail)
 * stay in memory; one that grows past `memoryBytes` is written to a file in the spool directory
 * from then on, so a 50 MB message costs a few 64 KiB buffers, not 50 MB of heap, and memory is
 * bounded by `memoryBytes` × concurrent transactions. The body is read back (twice: Dovecot and
 * the parser) and dropped when the transaction is answered. No fsync: until we answer, Postfix
 * still holds the message and retries it after a crash.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface SpooledMessage {
  /** The spool file, or null while the message is held in memory. */
  path: string | null;
  size: number;
  /** Hex SHA-256 of the bytes exactly as received. */
  sha256: string;
  /** The first HEAD_BYTES of the message (the trace headers), for the log's queue id. */
  head: Buffer;
  /** A fresh stream over the whole message each call. */
  open(): Readable;
  remove(): Promise<void>;
}

/** Messages up to this size are kept in memory (Postfix's median message is a few tens of KB). */
export const DEFAULT_MEMORY_BYTES = 1024 * 1024;

/** Enough for the trace headers Postfix puts on top. */
export const HEAD_BYTES = 8 * 1024;

export async function prepareSpoolDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

/** Collects chunks in memory until the threshold, then spills everything to a file. */
class SpoolSink extends Writable {
  readonly hash = createHash('sha256');
  size = 0;
  chunks: Buffer[] = [];
  file: string | null = null;
  private out: WriteStream | null = null;

  constructor(
    private readonly dir: string,
    private readonly memoryBytes: number,
  ) {
    super({ highWaterMark: 64 * 1024 });
  }

  /** The first HEAD_BYTES, copied: the chunks themselves go to the file once it spills. */
  readonly head: Buffer[] = [];
  private headBytes = 0;

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.hash.update(chunk);
    if (this.headBytes < HEAD_BYTES) {
      const part = Buffer.from(chunk.subarray(0, HEAD_BYTES - this.headBytes));
      this.head.push(part);
      this.headBytes += part.length;
    }
    this.size += chunk.length;
    if (!this.out && this.size <= this.memoryBytes) {
      this.chunks.push(chunk);
      return done();
    }
    if (!this.out) {
      this.file = path.join(this.dir, `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}.eml`);
      this.out = createWriteStream(this.file, { mode: 0o600 });
      this.out.on('error', () => undefined);
      for (const c of this.chunks) this.out.write(c);
      this.chunks = [];
    }
    if (this.out.write(chunk)) done();
    else this.out.once('drain', () => done());
  }

  /** After a failed receive: close the file (its open may still be in flight), then delete it. */
  async discard(): Promise<void> {
    const out = this.out;
    if (out && !out.closed) await new Promise<void>((resolve) => out.destroy().once('close', () => resolve()));
    if (this.file) await rm(this.file, { force: true });
  }

  override _final(done: (err?: Error | null) => void): void {
    if (!this.out) return done();
    this.out.end((err?: Error | null) => done(err));
  }
}

export async function spoolMessage(input: Readable, dir: string, memoryBytes = DEFAULT_MEMORY_BYTES): Promise<SpooledMessage> {
  const sink = new SpoolSink(dir, memoryBytes);
  try {
    await pipeline(input, sink);
  } catch (err) {
    await sink.discard();
    throw err;
  }
  const file = sink.file;
  const chunks = sink.chunks;
  return {
    path: file,
    size: sink.size,
    sha256: sink.hash.digest('hex'),
    head: Buffer.concat(sink.head),
    open: () => (file ? createReadStream(file, { highWaterMark: 64 * 1024 }) : Readable.from(chunks, { objectMode: false })),
    remove: async () => {
      if (file) await rm(file, { force: true });
    },
  };
}
