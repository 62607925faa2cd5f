/**
 * The body of a message in transit: streamed from the LMTP DATA stream to a file and hashed on
 * the way, so a 50 MB message costs a few 64 KiB buffers, not 50 MB. The file is read back for
 * Dovecot and for the parser, and removed when the transaction is answered. It needs no fsync:
 * until we answer, Postfix still holds the message and retries it after a crash.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface SpooledMessage {
  path: string;
  size: number;
  /** Hex SHA-256 of the bytes exactly as received. */
  sha256: string;
  /** A fresh stream over the whole message each call. */
  open(): Readable;
  remove(): Promise<void>;
}

export async function prepareSpoolDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

export async function spoolMessage(input: Readable, dir: string): Promise<SpooledMessage> {
  const file = path.join(dir, `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}.eml`);
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  try {
    await pipeline(input, tap, createWriteStream(file, { mode: 0o600 }));
  } catch (err) {
    await rm(file, { force: true });
    throw err;
  }
  return {
    path: file,
    size,
    sha256: hash.digest('hex'),
    open: () => createReadStream(file, { highWaterMark: 64 * 1024 }),
    remove: () => rm(file, { force: true }),
  };
}
