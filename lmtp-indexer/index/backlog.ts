/**
 * The durable local backlog: index entries that could not be written to PostgreSQL wait here
 * until the replay writes them. Dovecot already has these messages (the index is written after
 * Dovecot's 250), so an entry lost here is a message that is never searchable.
 *
 * On disk (backlogDir):
 * - `segment-NNNNNNNNNNNN.jsonl`: append-only, one JSON line per entry (the IndexRecord[] of one
 *   message). An append is fsync'd (and the directory too when the file is new) before it
 *   returns. Each process appends to a segment of its own, created on its first append: it never
 *   appends after a torn line a crashed predecessor left behind.
 * - The replay reads the sealed segments oldest first, then seals the active one (the next
 *   append starts a new one) and reads it too. A segment is deleted once every entry in it is
 *   committed, so a crash mid-segment replays that segment again: the insert is idempotent,
 *   nothing doubles.
 * - A torn last line (a crash mid-append; its write never returned, so nobody was told it was
 *   stored) is skipped with a warning. So is any line that is not a valid entry.
 * - `rejected.jsonl`: entries PostgreSQL refused for their content (a check violation…), moved
 *   aside so the entries behind them are not blocked. Kept forever and logged as errors; to
 *   retry them after a fix, rename the file to `segment-000000000000.jsonl`.
 *
 * Size: at most maxBytes of segments (default 1 GiB, some 100,000 ordinary messages). When full,
 * append() throws BacklogFullError and logs an error naming the message: the entry is not
 * stored, loudly. The LMTP server can avoid that case by checking isFull() before relaying a
 * message to Dovecot and answering 4xx instead, so Postfix keeps the mail until there is room.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../core/log.ts';
import type { IndexRecord } from '../types.ts';

export const DEFAULT_BACKLOG_MAX_BYTES = 1024 * 1024 * 1024;
/** A segment is rotated past this size, so a replayed segment's file can be deleted sooner. */
const DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024;
const SEGMENT = /^segment-(\d{12})\.jsonl$/;
const REJECTED = 'rejected.jsonl';

export class BacklogFullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BacklogFullError';
  }
}

export interface BacklogOptions {
  dir: string;
  log: Logger;
  maxBytes?: number;
  segmentBytes?: number;
}

/** What the replay callback decides for one entry. */
export type ReplayOutcome = 'committed' | 'rejected' | 'stop';

const key = (account: string, sha256hex: string): string => `${account.toLowerCase()}\n${sha256hex.toLowerCase()}`;

function isEntry(value: unknown): value is IndexRecord[] {
  return (
    Array.isArray(value) &&
    value.length > 0 &&
    value.every((r) => typeof r === 'object' && r !== null && typeof r.account === 'string' && typeof r.contentSha256 === 'string')
  );
}

/** Lines of a file; a last line without its newline is reported as torn, not returned. */
async function* lines(file: string, onTorn: (bytes: number) => void): AsyncGenerator<string> {
  const stream = createReadStream(file);
  let rest: Buffer[] = [];
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let pos = 0;
      for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, pos)) {
        rest.push(chunk.subarray(pos, nl));
        yield Buffer.concat(rest).toString('utf8');
        rest = [];
        pos = nl + 1;
      }
      if (pos < chunk.length) rest.push(chunk.subarray(pos));
    }
  } finally {
    stream.destroy();
  }
  const torn = rest.reduce((n, b) => n + b.length, 0);
  if (torn > 0) onTorn(torn);
}

export class Backlog {
  private readonly dir: string;
  private readonly log: Logger;
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  /** Entries per account+hash, pending or rejected: what has() answers from. */
  private readonly pending = new Map<string, number>();
  private readonly rejected = new Set<string>();
  /** Bytes per segment file on disk. */
  private readonly segments = new Map<string, number>();
  /**
   * Leading entries of a segment already committed by a pass that then stopped. In memory only:
   * after a restart they are applied again, which the idempotent insert makes harmless.
   */
  private readonly progress = new Map<string, number>();
  private nextSeq = 1;
  private active: { name: string; handle: Promise<FileHandle> } | null = null;
  /** Appends (and rejects) run one at a time: lines must not interleave, and the size check must see the last write. */
  private queue: Promise<unknown> = Promise.resolve();
  private entries = 0;

  private constructor(opts: BacklogOptions) {
    this.dir = opts.dir;
    this.log = opts.log;
    this.maxBytes = opts.maxBytes ?? DEFAULT_BACKLOG_MAX_BYTES;
    this.segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  }

  /** Opens (creating) the directory and reads what a previous run left, to answer has() and size. */
  static async open(opts: BacklogOptions): Promise<Backlog> {
    const backlog = new Backlog(opts);
    await mkdir(opts.dir, { recursive: true });
    await backlog.scan();
    return backlog;
  }

  private async scan(): Promise<void> {
    for (const name of await this.segmentNames()) {
      this.segments.set(name, (await stat(path.join(this.dir, name))).size);
      this.nextSeq = Math.max(this.nextSeq, Number(SEGMENT.exec(name)![1]) + 1);
      for await (const records of this.read(name)) this.count(records, +1);
    }
    for await (const records of this.read(REJECTED)) for (const r of records) this.rejected.add(key(r.account, r.contentSha256));
    if (this.entries > 0) this.log.warn({ entries: this.entries, bytes: this.bytes, dir: this.dir }, 'index backlog waiting to be replayed');
  }

  /** Pending entries (messages) not yet written to PostgreSQL. */
  get size(): number {
    return this.entries;
  }

  /** Bytes of segment files on disk. */
  get bytes(): number {
    let total = 0;
    for (const n of this.segments.values()) total += n;
    return total;
  }

  /** True while there is anything on disk to replay (even only skipped lines, so their file gets removed). */
  get nonEmpty(): boolean {
    return this.segments.size > 0;
  }

  isFull(): boolean {
    return this.bytes >= this.maxBytes;
  }

  /** Whether a pending or rejected entry holds this recipient + content hash. */
  has(account: string, sha256hex: string): boolean {
    const k = key(account, sha256hex);
    return this.pending.has(k) || this.rejected.has(k);
  }

  /** Stores one message's records durably (fsync'd) before resolving. */
  append(records: IndexRecord[]): Promise<void> {
    const line = Buffer.from(`${JSON.stringify(records)}\n`);
    return this.serial(async () => {
      if (this.bytes + line.length > this.maxBytes) {
        const first = records[0];
        this.log.error(
          { account: records.map((r) => r.account), sha256: first?.contentSha256, messageId: first?.messageId, queueId: first?.queueId, bytes: this.bytes, maxBytes: this.maxBytes },
          'index backlog is full: this message is delivered but will not be indexed',
        );
        throw new BacklogFullError(`index backlog is full (${this.bytes} of ${this.maxBytes} bytes)`);
      }
      const name = await this.activeSegment(line.length);
      try {
        const handle = await this.active!.handle;
        // write() may write less than asked (a signal, a nearly full disk): loop until all of it is down.
        for (let done = 0; done < line.length; ) done += (await handle.write(line, done, line.length - done)).bytesWritten;
        await handle.sync();
      } catch (err) {
        // A partial line may be on disk (a full disk): no later entry may be appended behind it.
        // Sealed, it is that segment's torn last line, skipped at replay.
        this.segments.set(name, (await stat(path.join(this.dir, name)).catch(() => ({ size: 0 }))).size);
        await this.seal().catch(() => {});
        throw err;
      }
      this.segments.set(name, (this.segments.get(name) ?? 0) + line.length);
      this.count(records, +1);
    });
  }

  /**
   * Replays sealed segments oldest first through `apply`, which must only return 'committed'
   * after its transaction committed. Stops at the first 'stop' (PostgreSQL went away again).
   */
  async replay(apply: (records: IndexRecord[]) => Promise<ReplayOutcome>): Promise<{ committed: number; rejected: number; stopped: boolean }> {
    const result = { committed: 0, rejected: 0, stopped: false };
    // Sealed segments first; the active one is sealed (the next append starts a new one) only once
    // they are all done, so a pass that stops at once while PostgreSQL is down leaves files alone.
    for (let sealedActive = false; ; ) {
      const sealed = (await this.segmentNames()).filter((n) => n !== this.active?.name);
      if (sealed.length === 0) {
        if (sealedActive || !this.active) return result;
        await this.serial(() => this.seal());
        sealedActive = true;
        continue;
      }
      if (await this.replaySegments(sealed, apply, result)) return result;
    }
  }

  /** Applies the entries of `names` in order; true when `apply` said stop. */
  private async replaySegments(names: string[], apply: (records: IndexRecord[]) => Promise<ReplayOutcome>, result: { committed: number; rejected: number; stopped: boolean }): Promise<boolean> {
    for (const name of names) {
      let index = 0;
      for await (const records of this.read(name)) {
        // Entries a stopped pass already committed: not applied (or counted) twice by this process.
        if (index < (this.progress.get(name) ?? 0)) {
          index++;
          continue;
        }
        const outcome = await apply(records);
        if (outcome === 'stop') {
          result.stopped = true;
          return true;
        }
        if (outcome === 'rejected') {
          await this.serial(() => this.reject(records));
          result.rejected++;
        } else result.committed++;
        this.count(records, -1);
        this.progress.set(name, ++index);
      }
      await unlink(path.join(this.dir, name));
      await this.syncDir();
      this.segments.delete(name);
      this.progress.delete(name);
    }
    return false;
  }

  async close(): Promise<void> {
    await this.serial(() => this.seal());
  }

  private async reject(records: IndexRecord[]): Promise<void> {
    const file = path.join(this.dir, REJECTED);
    const handle = await open(file, 'a');
    try {
      await handle.write(`${JSON.stringify(records)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await this.syncDir();
    for (const r of records) this.rejected.add(key(r.account, r.contentSha256));
    this.log.error({ account: records.map((r) => r.account), sha256: records[0]?.contentSha256, file }, 'index entry rejected by PostgreSQL; kept aside');
  }

  private async *read(name: string): AsyncGenerator<IndexRecord[]> {
    const file = path.join(this.dir, name);
    try {
      await stat(file);
    } catch {
      return;
    }
    let lineNo = 0;
    for await (const line of lines(file, (bytes) => this.log.warn({ file, bytes }, 'index backlog: torn last line (a crash mid-append) skipped'))) {
      lineNo++;
      if (!line.trim()) continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        value = undefined;
      }
      if (isEntry(value)) yield value;
      else this.log.warn({ file, line: lineNo }, 'index backlog: unreadable line skipped');
    }
  }

  private count(records: IndexRecord[], delta: 1 | -1): void {
    this.entries += delta;
    for (const r of records) {
      const k = key(r.account, r.contentSha256);
      const n = (this.pending.get(k) ?? 0) + delta;
      if (n > 0) this.pending.set(k, n);
      else this.pending.delete(k);
    }
  }

  /** The segment to append to, rotating it past segmentBytes. */
  private async activeSegment(adding: number): Promise<string> {
    if (this.active && (this.segments.get(this.active.name) ?? 0) + adding > this.segmentBytes) await this.seal();
    if (!this.active) {
      const name = `segment-${String(this.nextSeq++).padStart(12, '0')}.jsonl`;
      // 'wx': a name is never reused; finding one means another process appends to this
      // backlogDir (unsupported: one directory per indexer process).
      const handle = open(path.join(this.dir, name), 'wx');
      this.active = { name, handle };
      try {
        await handle;
      } catch (err) {
        this.active = null;
        throw err;
      }
      this.segments.set(name, 0);
      // The new directory entry must be durable too, or a crash could lose the whole file.
      await this.syncDir();
    }
    return this.active.name;
  }

  private async seal(): Promise<void> {
    const active = this.active;
    this.active = null;
    if (active) await (await active.handle).close();
  }

  private async syncDir(): Promise<void> {
    const handle = await open(this.dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  private async segmentNames(): Promise<string[]> {
    return (await readdir(this.dir)).filter((n) => SEGMENT.test(n)).sort();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }
}
