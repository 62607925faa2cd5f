/**
 * The object store on S3 or an S3-compatible server (MinIO, Ceph, Garage, s3rver …), with the AWS
 * SDK v3. Keys are used as given: the runner builds them from `backup.s3.prefix` itself, and the
 * prefix here only goes into `description`.
 *
 * What differs from the SDK's defaults, and why:
 * - Checksums WHEN_REQUIRED: since 3.729 the SDK sends a CRC32 with every upload, for a stream as an
 *   aws-chunked body with a trailer. Servers that do not know the encoding reject it, or (s3rver)
 *   store the chunk framing as the object's bytes. Integrity is the encryption layer's job anyway
 *   (every chunk carries an AES-GCM tag).
 * - list() pages with ListObjects (v1) and Marker, not ListObjectsV2 (see list()).
 * - Failed multipart uploads are aborted here, not by lib-storage (see put()).
 */
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { addAbortSignal, Readable } from 'node:stream';
import type { BackupConfig } from '../../core/config/backup.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import { ObjectNotFoundError, type ObjectInfo, type ObjectStore, type PutOptions } from '../contracts.ts';
import { MiB, partSizeFor, queueSizeFor } from './part-size.ts';

export type S3Config = BackupConfig['s3'];

/** S3's largest ListObjects page and DeleteObjects batch. */
const S3_PAGE_LIMIT = 1000;
/** Keys deleted at once when the server lacks DeleteObjects. */
const SINGLE_DELETE_CONCURRENCY = 8;
/**
 * A server without (a usable) DeleteObjects. The SDK sends x-amz-checksum-crc32 with it and no
 * Content-MD5 since 3.729; MinIO before 2025 answers MissingContentMD5, others InvalidRequest
 * "requires one valid Content-MD5 header" (aws-sdk-js-v3#6920). Anything else is a real failure.
 */
function refusesBatchDelete(err: unknown): boolean {
  const name = (err as Error | undefined)?.name ?? '';
  if (['NotImplemented', 'MethodNotAllowed', 'MissingContentMD5'].includes(name)) return true;
  return name === 'InvalidRequest' && /content-md5/i.test((err as Error).message);
}

export interface S3StoreDeps {
  /** A client of the caller's; otherwise one is built from the config (and close() destroys it). */
  client?: S3Client;
  log?: Logger;
  /** Keys per list page (MaxKeys), at most 1000; tests set it small to cross page boundaries. */
  pageSize?: number;
}

/** An S3 request that failed; the message names the operation, the object and the server. */
export class S3StoreError extends Error {
  constructor(
    readonly operation: string,
    readonly bucket: string,
    readonly key: string,
    where: string,
    cause: unknown,
  ) {
    super(`S3 ${operation} of s3://${bucket}/${key} at ${where} failed: ${describeError(cause)}`, { cause });
    this.name = 'S3StoreError';
  }
}

/** `NoSuchBucket (HTTP 404): The specified bucket does not exist`, from an SDK error. */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const name = err.name === 'Error' ? '' : err.name;
  // A HEAD error has no body, so the SDK's message is just "UnknownError".
  const message = err.message && err.message !== 'UnknownError' ? err.message : '';
  return [name && status ? `${name} (HTTP ${status})` : name || (status ? `HTTP ${status}` : ''), message].filter(Boolean).join(': ') || 'unknown error';
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** The error a put rejects with when its signal fires; the signal's reason is the cause. */
export function abortError(message: string, signal: AbortSignal): Error {
  const err = new Error(message, { cause: signal.reason });
  err.name = 'AbortError';
  return err;
}

/**
 * Ends a body the store will not read to its end. A pipeline feeding it gets the error (it listens
 * for one); a stream nobody listens to is destroyed without one, as an 'error' event without a
 * listener would crash the process.
 */
export function discardBody(body: Readable | Buffer, err: Error): void {
  if (Buffer.isBuffer(body) || body.destroyed) return;
  if (body.listenerCount('error') > 0) body.destroy(err);
  else body.destroy();
}

/** S3 orders keys by their UTF-8 bytes; JavaScript's `<` compares UTF-16 units, which differs above U+FFFF. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A client that works with S3 and with S3-compatible servers. */
export function createS3Client(config: S3Config): S3Client {
  if (Boolean(config.accessKeyId) !== Boolean(config.secretAccessKey)) {
    throw new Error('backup.s3: set both accessKeyId and secretAccessKey, or neither (the SDK then reads AWS_ACCESS_KEY_ID … itself)');
  }
  return new S3Client({
    region: config.region,
    endpoint: config.endpoint || undefined,
    forcePathStyle: config.forcePathStyle,
    // Undefined: the SDK's default chain (environment, shared config, instance role …).
    credentials: config.accessKeyId ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey } : undefined,
    maxAttempts: config.maxAttempts,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export class S3Store implements ObjectStore {
  readonly description: string;
  readonly client: S3Client;
  private readonly ownsClient: boolean;
  private readonly log: Logger;
  private readonly pageSize: number;
  /** Cleared once the server has refused DeleteObjects; later deletes go key by key. */
  private batchDelete = true;

  constructor(
    private readonly config: S3Config,
    deps: S3StoreDeps = {},
  ) {
    this.ownsClient = !deps.client;
    this.client = deps.client ?? createS3Client(config);
    this.log = deps.log ?? silentLogger;
    this.pageSize = deps.pageSize ?? S3_PAGE_LIMIT;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1 || this.pageSize > S3_PAGE_LIMIT) {
      throw new RangeError(`list page size ${this.pageSize} is outside 1..${S3_PAGE_LIMIT}`);
    }
    this.description = `s3://${config.bucket}/${config.prefix} at ${config.endpoint || `AWS ${config.region}`}`;
  }

  private get where(): string {
    return this.config.endpoint || `AWS ${this.config.region}`;
  }

  private fail(operation: string, key: string, err: unknown): S3StoreError {
    return new S3StoreError(operation, this.config.bucket, key, this.where, err);
  }

  /**
   * Streams the body as a multipart upload (one PutObject when it fits in a part), with parts sized
   * by partSizeFor(). The returned size is the bytes read from the body.
   *
   * lib-storage runs with leavePartsOnError, and the upload is aborted here instead: lib-storage
   * awaits AbortMultipartUpload before rethrowing, so when that call fails too (s3rver answers
   * 405) its error replaces the one that matters. Here the abort's failure is logged and the
   * original error thrown. Upload.abort() is not used for the signal either: it rejects done() at
   * once while parts are still in flight, and runs the abort unobserved in the background. Instead
   * the signal ends the body, the upload fails like on any read error, and put() settles only when
   * no request is left running.
   *
   * On failure the body stream is destroyed (see discardBody()), so a pipeline feeding it stops too.
   */
  async put(key: string, body: Readable | Buffer, opts: PutOptions = {}): Promise<{ size: number }> {
    const { signal } = opts;
    const aborted = () => abortError(`S3 upload of s3://${this.config.bucket}/${key} aborted`, signal!);
    if (signal?.aborted) {
      discardBody(body, aborted());
      throw aborted();
    }
    const partSize = partSizeFor(opts.expectedBytes, this.config.partBytes);
    let read = 0;
    // A signal destroys a stream body at once, even while it waits for data; a Buffer body is
    // cut into slices so that the signal is checked between them.
    const source: AsyncIterable<Buffer | Uint8Array | string> | Iterable<Buffer> = Buffer.isBuffer(body)
      ? slices(body, MiB)
      : signal
        ? addAbortSignal(signal, body)
        : body;
    async function* counted(): AsyncGenerator<Buffer> {
      for await (const chunk of source) {
        signal?.throwIfAborted();
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        if (buf.length === 0) continue;
        read += buf.length;
        yield buf;
      }
    }
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.config.bucket, Key: key, Body: Readable.from(counted(), { objectMode: false }) },
      partSize,
      queueSize: queueSizeFor(partSize, this.config.partBytes, this.config.queueSize),
      leavePartsOnError: true,
    });
    // Upload counts a part's bytes once the server has them, so this never runs ahead of S3.
    if (opts.onProgress) {
      const onProgress = opts.onProgress;
      upload.on('httpUploadProgress', (p) => p.loaded !== undefined && onProgress(p.loaded));
    }
    try {
      await upload.done();
    } catch (err) {
      const failure = signal?.aborted ? aborted() : this.fail('upload', key, err);
      discardBody(body, failure);
      if (upload.uploadId) await this.abortUpload(key, upload.uploadId, failure);
      throw failure;
    }
    return { size: read };
  }

  /** Drops an unfinished multipart upload's parts; a failure is logged, never thrown. */
  private async abortUpload(key: string, uploadId: string, reason: Error): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.config.bucket, Key: key, UploadId: uploadId }));
    } catch (err) {
      this.log.warn(
        { bucket: this.config.bucket, key, uploadId, reason: reason.message, err: describeError(err) },
        'backup storage: could not abort the failed multipart upload; its parts stay until a lifecycle rule removes them',
      );
    }
  }

  async get(key: string): Promise<Readable> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.config.bucket, Key: key }));
      // In Node the SDK's body is an http.IncomingMessage (with the SDK's mixins).
      return res.Body as Readable;
    } catch (err) {
      const name = (err as Error).name;
      // A missing bucket is a 404 too, but a configuration error, not a missing object.
      if (name === 'NoSuchKey' || (httpStatus(err) === 404 && name !== 'NoSuchBucket')) {
        throw new ObjectNotFoundError(key, this.description);
      }
      throw this.fail('GetObject', key, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: key }));
      return { key, size: res.ContentLength ?? 0, lastModified: res.LastModified ?? new Date(0) };
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw this.fail('HeadObject', key, err);
    }
  }

  /**
   * Pages with ListObjects (v1) and Marker = the last key seen, which AWS documents for listings
   * without a delimiter (it sends no NextMarker then). ListObjectsV2 is not used because s3rver
   * 3.7.1 cannot page it: it builds NextContinuationToken with DES, which OpenSSL 3 (Node ≥ 17)
   * no longer offers, so every truncated V2 page is a 500 InternalError, with StartAfter too.
   *
   * Keys must arrive in strictly increasing order. That catches a server that ignores Marker (the
   * same page again, forever) and one that does not list in key order. s3rver lists in the order
   * of its directory walk: `p/a/b` before `p/a-b` before `p/a`, because `a/` is a folder on disk.
   * Across pages that order can also drop a key without a visible inversion, so on s3rver avoid
   * keys where one is a folder and a sibling extends the same name with a byte below '/'
   * (`x/…` next to `x-y` or `x.tar`); our layout (`<prefix><id>/<name>`) has none.
   */
  async *list(prefix: string): AsyncGenerator<ObjectInfo> {
    let marker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsCommand({ Bucket: this.config.bucket, Prefix: prefix, Marker: marker, MaxKeys: this.pageSize }),
        );
      } catch (err) {
        throw this.fail('ListObjects', prefix, err);
      }
      const contents = page.Contents ?? [];
      for (const o of contents) {
        const key = o.Key ?? '';
        if (marker !== undefined && compareKeys(key, marker) <= 0) {
          throw this.fail('ListObjects', prefix, new Error(`no progress: after ${marker} the server listed ${key} (it ignores Marker or does not list in key order)`));
        }
        if (!key.startsWith(prefix)) throw this.fail('ListObjects', prefix, new Error(`the server listed ${key}, outside the prefix`));
        marker = key;
        yield { key, size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) };
      }
      if (!page.IsTruncated) return;
      if (contents.length === 0) throw this.fail('ListObjects', prefix, new Error('no progress: an empty page marked truncated'));
    }
  }

  /**
   * DeleteObjects in batches of 1000. s3rver supports it: it ignores the x-amz-checksum-crc32 the
   * SDK sends (the operation requires a checksum). A server that refuses the operation, or that
   * insists on Content-MD5, gets one DeleteObject per key from then on.
   */
  async delete(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += S3_PAGE_LIMIT) {
      const batch = keys.slice(i, i + S3_PAGE_LIMIT);
      if (this.batchDelete) {
        try {
          await this.deleteBatch(batch);
          continue;
        } catch (err) {
          const cause = (err as S3StoreError).cause;
          if (!refusesBatchDelete(cause)) throw err;
          this.batchDelete = false;
          this.log.info({ bucket: this.config.bucket, err: describeError(cause) }, 'backup storage: the server refused DeleteObjects; deleting key by key');
        }
      }
      for (let j = 0; j < batch.length; j += SINGLE_DELETE_CONCURRENCY) {
        await Promise.all(batch.slice(j, j + SINGLE_DELETE_CONCURRENCY).map((key) => this.deleteOne(key)));
      }
    }
  }

  private async deleteBatch(keys: string[]): Promise<void> {
    let res;
    try {
      res = await this.client.send(
        new DeleteObjectsCommand({ Bucket: this.config.bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
      );
    } catch (err) {
      throw this.fail('DeleteObjects', keys[0] ?? '', err);
    }
    const failed = res.Errors ?? [];
    if (failed.length > 0) {
      const first = failed[0]!;
      const more = failed.length > 1 ? ` (and ${failed.length - 1} more keys)` : '';
      throw this.fail('DeleteObjects', first.Key ?? '', Object.assign(new Error(`${first.Message ?? 'not deleted'}${more}`), { name: first.Code ?? 'Error' }));
    }
  }

  private async deleteOne(key: string): Promise<void> {
    try {
      // S3 answers 204 for a missing key too.
      await this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: key }));
    } catch (err) {
      if (httpStatus(err) === 404) return;
      throw this.fail('DeleteObject', key, err);
    }
  }

  /** Destroys the client's sockets if this store built the client. */
  close(): void {
    if (this.ownsClient) this.client.destroy();
  }
}

function* slices(buf: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < buf.length; at += size) yield buf.subarray(at, at + size);
}
