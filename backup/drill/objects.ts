/**
 * Getting a backup's objects back: download with the ciphertext check, then decrypt + decompress
 * with the plaintext check. Two phases on purpose: the drill reports their timings separately, and
 * a ciphertext that does not match the signed manifest is refused before a single byte of it is
 * decrypted. Errors are DrillCheckErrors naming the object and the check that failed.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDecompressor } from '../compression.ts';
import { ObjectNotFoundError, StreamAuthError, type ObjectStore } from '../contracts.ts';
import { createDecryptStream } from '../crypto/index.ts';
import { HashingStream } from '../hash-stream.ts';
import type { ManifestObject } from '../manifest.ts';

export type DrillCheck =
  | 'manifest'
  | 'object-missing'
  | 'ciphertext-size'
  | 'ciphertext-hash'
  | 'decrypt'
  | 'plaintext-hash'
  | 'archive-list'
  | 'restore'
  | 'row-counts'
  | 'migrations'
  | 'newest-message'
  | 'foreign-keys'
  | 'maildir-sample'
  | 'rpo'
  | 'rto';

export class DrillCheckError extends Error {
  constructor(
    readonly check: DrillCheck,
    readonly object: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${object ? `${object}: ` : ''}${check}: ${message}`, options);
    this.name = 'DrillCheckError';
  }
}

/** Streams the object to `file`, then compares its size and SHA-256 with the manifest. */
export async function downloadObject(store: ObjectStore, obj: ManifestObject, file: string): Promise<void> {
  let body;
  try {
    body = await store.get(obj.key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) throw new DrillCheckError('object-missing', obj.key, 'the manifest lists it but the bucket does not have it', { cause: err });
    throw err;
  }
  const hash = new HashingStream();
  await pipeline(body, hash, createWriteStream(file));
  if (hash.bytes !== obj.size) throw new DrillCheckError('ciphertext-size', obj.key, `${hash.bytes} bytes downloaded, the manifest says ${obj.size}`);
  const got = hash.digest();
  if (got !== obj.ciphertextSha256) {
    throw new DrillCheckError('ciphertext-hash', obj.key, `SHA-256 ${got.slice(0, 16)}… does not match the manifest's ${obj.ciphertextSha256.slice(0, 16)}… (altered or replaced)`);
  }
}

/**
 * Decrypts and decompresses `file` into `sink`, checking the plaintext's size and SHA-256 at the
 * end. The decryptor only releases plaintext whose chunk tag verified; the plaintext hash then
 * proves the whole is what was backed up.
 */
export async function decryptObject(file: string, obj: ManifestObject, dataKey: Buffer, backupId: string, sink: Writable): Promise<void> {
  const hash = new HashingStream();
  try {
    await pipeline(
      createReadStream(file, { highWaterMark: 1024 * 1024 }),
      createDecryptStream(dataKey, { backupId, name: obj.name }),
      createDecompressor(obj.codec),
      hash,
      sink,
    );
  } catch (err) {
    if (err instanceof StreamAuthError) throw new DrillCheckError('decrypt', obj.key, `${err.code}: ${err.message}`, { cause: err });
    throw new DrillCheckError('decrypt', obj.key, (err as Error).message, { cause: err });
  }
  if (hash.bytes !== obj.plaintextBytes || hash.digest() !== obj.plaintextSha256) {
    throw new DrillCheckError('plaintext-hash', obj.key, `decrypted ${hash.bytes} bytes with SHA-256 ${hash.digest().slice(0, 16)}…, the manifest says ${obj.plaintextBytes} bytes, ${obj.plaintextSha256.slice(0, 16)}…`);
  }
}
