/**
 * An in-process ObjectStore for unit tests of the runner, retention and the drill. It behaves like
 * S3Store (the contract tests run the same cases on both): an object appears only once its upload
 * has completed, an aborted or failed upload leaves nothing, lists come in pages in S3's key order,
 * and deleting a missing key is not an error. Faults are injected with failNextPut().
 */
import { addAbortSignal, Readable } from 'node:stream';
import { ObjectNotFoundError, type ObjectInfo, type ObjectStore, type PutOptions } from '../contracts.ts';
import { abortError, compareKeys, discardBody } from './s3-store.ts';

export interface MemoryStoreOptions {
  /** Shown in `description` (`memory://NAME`). */
  name?: string;
  /** Keys per list page, as S3's MaxKeys (default 1000). */
  pageSize?: number;
}

export type MemoryStoreCall = { op: 'put' | 'get' | 'head' | 'delete'; key: string } | { op: 'list-page'; key: string; marker: string | undefined };

interface Stored {
  data: Buffer;
  lastModified: Date;
}

export class MemoryStore implements ObjectStore {
  readonly description: string;
  /** Every request, in order (a list is one `list-page` per page, as S3 sees it). */
  readonly calls: MemoryStoreCall[] = [];
  /** Uploads that started and then failed or were aborted, leaving nothing behind. */
  abortedUploads = 0;
  private readonly objects = new Map<string, Stored>();
  private readonly pageSize: number;
  private readonly putFaults: { error: Error; afterBytes: number }[] = [];

  constructor(opts: MemoryStoreOptions = {}) {
    this.description = `memory://${opts.name ?? 'store'}`;
    this.pageSize = opts.pageSize ?? 1000;
  }

  /**
   * The next put() fails with `error` once it has read `afterBytes` of the body (0: before reading,
   * a shorter body: at its end); the body is destroyed, as S3Store does (discardBody()).
   */
  failNextPut(error: Error, afterBytes = 0): void {
    this.putFaults.push({ error, afterBytes });
  }

  /** The stored bytes (a copy), or undefined: for assertions without a stream. */
  bytes(key: string): Buffer | undefined {
    const o = this.objects.get(key);
    return o && Buffer.from(o.data);
  }

  /** Every stored key, in key order. */
  keys(): string[] {
    return [...this.objects.keys()].sort(compareKeys);
  }

  async put(key: string, body: Readable | Buffer, opts: PutOptions = {}): Promise<{ size: number }> {
    this.calls.push({ op: 'put', key });
    const { signal } = opts;
    const fault = this.putFaults.shift();
    const aborted = () => abortError(`upload of ${key} to ${this.description} aborted`, signal!);
    const fail = (err: Error): never => {
      this.abortedUploads++;
      discardBody(body, err);
      throw err;
    };
    if (signal?.aborted) fail(aborted());
    const chunks: Buffer[] = [];
    let read = 0;
    const source: AsyncIterable<Buffer | Uint8Array | string> | Iterable<Buffer> = Buffer.isBuffer(body)
      ? [body]
      : signal
        ? addAbortSignal(signal, body)
        : body;
    try {
      if (fault && fault.afterBytes === 0) throw fault.error;
      for await (const chunk of source) {
        signal?.throwIfAborted();
        const buf = Buffer.from(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
        chunks.push(buf);
        read += buf.length;
        if (fault && read >= fault.afterBytes) throw fault.error;
        opts.onProgress?.(read);
      }
      // A body shorter than afterBytes fails at its end.
      if (fault) throw fault.error;
    } catch (err) {
      fail(signal?.aborted ? aborted() : (err as Error));
    }
    this.objects.set(key, { data: Buffer.concat(chunks), lastModified: new Date() });
    return { size: read };
  }

  async get(key: string): Promise<Readable> {
    this.calls.push({ op: 'get', key });
    const o = this.objects.get(key);
    if (!o) throw new ObjectNotFoundError(key, this.description);
    return Readable.from([Buffer.from(o.data)], { objectMode: false });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    this.calls.push({ op: 'head', key });
    const o = this.objects.get(key);
    return o && { key, size: o.data.length, lastModified: o.lastModified };
  }

  /** Page by page like S3Store: each page is read when the previous one is used up, after the last key seen. */
  async *list(prefix: string): AsyncGenerator<ObjectInfo> {
    let marker: string | undefined;
    for (;;) {
      this.calls.push({ op: 'list-page', key: prefix, marker });
      const after = marker;
      const matching = [...this.objects.keys()]
        .filter((k) => k.startsWith(prefix) && (after === undefined || compareKeys(k, after) > 0))
        .sort(compareKeys);
      const page = matching.slice(0, this.pageSize).map((key) => ({ key, o: this.objects.get(key)! }));
      for (const { key, o } of page) {
        marker = key;
        yield { key, size: o.data.length, lastModified: o.lastModified };
      }
      if (matching.length <= this.pageSize) return;
    }
  }

  async delete(keys: string[]): Promise<void> {
    for (const key of keys) {
      this.calls.push({ op: 'delete', key });
      this.objects.delete(key);
    }
  }
}
