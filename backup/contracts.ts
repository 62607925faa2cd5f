/**
 * The seams of the backup runner, in one place: the object store (S3 or a fake), the key provider
 * (local keyring, AWS KMS, Vault transit) and the encrypted-object stream format. Each part lives in
 * its own folder (storage/, keys/, crypto/); the runner (run.ts) and the drill (drill/) only see
 * these types, so every external thing is injected and the tests can swap in their own.
 */
import type { Readable } from 'node:stream';

// ---------------------------------------------------------------------------------------------
// Object store (storage/)
// ---------------------------------------------------------------------------------------------

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
}

export interface PutOptions {
  /**
   * The caller's estimate of the object's size, when known (database size, maildir bytes). The S3
   * store picks a part size from it so that any object fits in 10,000 parts.
   */
  expectedBytes?: number;
  /** Called with the bytes uploaded so far (for a progress bar). */
  onProgress?(uploadedBytes: number): void;
  /** Aborts the upload (the store aborts the multipart upload where the server supports it). */
  signal?: AbortSignal;
}

export interface ObjectStore {
  /** For logs and errors, e.g. `s3://bucket/prefix at http://127.0.0.1:4568`. */
  readonly description: string;
  /** Streams `body` to `key`; resolves with the stored size once the object is complete. */
  put(key: string, body: Readable | Buffer, opts?: PutOptions): Promise<{ size: number }>;
  /** The object's bytes; rejects with ObjectNotFoundError when it does not exist. */
  get(key: string): Promise<Readable>;
  /** Size and time, or undefined when the object does not exist. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Every object under `prefix` (all pages), in key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Deletes the keys; a key that does not exist is not an error. */
  delete(keys: string[]): Promise<void>;
}

export class ObjectNotFoundError extends Error {
  constructor(readonly key: string, where: string) {
    super(`object ${key} not found in ${where}`);
    this.name = 'ObjectNotFoundError';
  }
}

// ---------------------------------------------------------------------------------------------
// Key providers (keys/)
// ---------------------------------------------------------------------------------------------

/**
 * What a data key is bound to: KMS's EncryptionContext, Vault's `context`, the local keyring's AAD.
 * Unwrapping under a different context fails.
 */
export interface KeyContext {
  backupId: string;
  /** The backup's object prefix, e.g. `backups/20261121T020000Z-3f9a1c/`. */
  object: string;
}

/** A data key as stored in the manifest: enough to ask the provider for the plaintext key back. */
export interface WrappedKey {
  provider: 'local' | 'aws-kms' | 'vault';
  /** Keyring id, KMS key ARN/alias, or Vault transit key name. */
  keyId: string;
  /** The key-encryption key's version (keyring version, Vault's N in `vault:vN:`, KMS: the key ARN's rotation is internal, so "kms"). */
  version: string;
  /** Base64 (keyring, KMS CiphertextBlob) or Vault's `vault:vN:…` string. */
  wrapped: string;
}

export interface KeyProvider {
  readonly name: WrappedKey['provider'];
  /** A fresh 32-byte data key and its wrapped form under the current key version. */
  generateDataKey(ctx: KeyContext): Promise<{ plaintext: Buffer; wrapped: WrappedKey }>;
  /** The 32-byte data key; rejects with KeyError (naming key id and version) when it cannot. */
  unwrap(wrapped: WrappedKey, ctx: KeyContext): Promise<Buffer>;
  /** The same data key wrapped under the current key version (KMS ReEncrypt, Vault rewrap, keyring unwrap+wrap). */
  rewrap(wrapped: WrappedKey, ctx: KeyContext): Promise<WrappedKey>;
  /** The version new backups are wrapped under (for `backup list` and the rewrap decision). */
  currentVersion(): Promise<string>;
}

export class KeyError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KeyError';
  }
}

// ---------------------------------------------------------------------------------------------
// Encrypted object stream (crypto/)
// ---------------------------------------------------------------------------------------------

/** Who an encrypted object belongs to; written into its header and checked on decryption. */
export interface ObjectIdentity {
  backupId: string;
  /** Object name inside the backup, e.g. `db.dump.zst`. */
  name: string;
}

/** Why decryption stopped. Every case names the object and, where it applies, the chunk. */
export type StreamErrorCode =
  | 'bad-header' // not our format, unknown version, or a header cut short
  | 'header-mismatch' // a valid header for another backup or another object (splicing whole objects)
  | 'auth-failed' // a chunk's tag does not verify: tampered, or spliced in from another object
  | 'reordered' // a chunk verifies, but at another position: chunks were swapped or moved
  | 'truncated' // the stream ends without the last-chunk flag
  | 'trailing-data'; // bytes after the last chunk

export class StreamAuthError extends Error {
  constructor(
    readonly code: StreamErrorCode,
    readonly object: string,
    message: string,
    readonly chunk?: number,
  ) {
    super(`${object}: ${message}`);
    this.name = 'StreamAuthError';
  }
}
