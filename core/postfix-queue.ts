/**
 * Postfix queue backlog as Prometheus gauges, read straight from the queue directory (no `postqueue`,
 * so it works from a container that only has the queue volume mounted read-only):
 *   ceerion_postfix_queue_messages{queue}        messages in incoming, active, deferred, hold
 *   ceerion_postfix_queue_oldest_seconds{queue}  age of the oldest one (0 when the queue is empty)
 *
 * Layout (Postfix qmgr(8), hash_queue_names / hash_queue_depth): every message is one file named by
 * its queue id, either directly in the queue's directory or, for the hashed queues (deferred by
 * default), in one-character subdirectories up to hash_queue_depth levels deep. So each queue is a
 * small tree walk counting regular files.
 *
 * Age: Postfix sets a deferred message's mtime to its next delivery attempt (in the future), so
 * mtime says nothing about how long mail has waited. The arrival time is the queue file's own
 * `T` record (REC_TYPE_TIME, "seconds microseconds", written by cleanup(8) right after the
 * size record); when a file has none yet (cleanup still writing it), its birth time stands in.
 *
 * A scrape walks the queue at most once per `cacheMs`; concurrent scrapes share one walk. A queue
 * directory that is missing or unreadable gives no sample for that queue (an alert on the series
 * being absent notices) and a warning in the log, once per change of state, never an exception.
 */
import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from './log.ts';

export const POSTFIX_QUEUES = ['incoming', 'active', 'deferred', 'hold'] as const;
export type PostfixQueue = (typeof POSTFIX_QUEUES)[number];

/** hash_queue_depth is at most a few levels; deeper directories are not Postfix's. */
const MAX_DEPTH = 4;
/** Enough for the size record (type, length, ~95 bytes) and the time record after it. */
const HEAD_BYTES = 512;
/** Files read at once while looking for arrival times. */
const READ_CONCURRENCY = 32;
/** Postfix record types (global/rec_type.h). */
const REC_TYPE_TIME = 0x54; // 'T'
const REC_TYPE_SIZE = 0x43; // 'C'

export interface QueueSample {
  messages: number;
  /** Seconds since the oldest message arrived; 0 for an empty queue. */
  oldestSeconds: number;
}

export interface QueueSnapshot {
  /** Only the queues that could be read. */
  queues: Partial<Record<PostfixQueue, QueueSample>>;
  /** Queue → why it could not be read. */
  errors: Partial<Record<PostfixQueue, string>>;
}

export interface PostfixQueueOptions {
  log: Logger;
  /** How long one walk answers scrapes. Default 5000 ms. */
  cacheMs?: number;
  /** Which queues to report; default all four. */
  queues?: readonly PostfixQueue[];
  /** Clock in ms (tests). */
  now?: () => number;
}

/**
 * The arrival time (ms since the epoch) from a queue file's leading records, or undefined when the
 * head holds no time record. Records are: type byte, length as base-128 digits (low 7 bits first,
 * high bit = more follow: global/record.c), then the data.
 */
export function arrivalFromHead(head: Buffer): number | undefined {
  let pos = 0;
  // The time record comes within the first few records; stop at anything unexpected.
  for (let records = 0; records < 8 && pos < head.length; records++) {
    const type = head[pos++]!;
    let len = 0;
    let shift = 0;
    for (;;) {
      if (pos >= head.length || shift > 28) return undefined;
      const b = head[pos++]!;
      len |= (b & 0x7f) << shift;
      shift += 7;
      if (!(b & 0x80)) break;
    }
    if (pos + len > head.length) return undefined;
    if (type === REC_TYPE_TIME) {
      const m = /^(\d+)(?: (\d+))?/.exec(head.subarray(pos, pos + len).toString('latin1'));
      if (!m) return undefined;
      return Number(m[1]) * 1000 + Math.floor(Number(m[2] ?? 0) / 1000);
    }
    if (records === 0 && type !== REC_TYPE_SIZE) return undefined;
    pos += len;
  }
  return undefined;
}

async function arrivalOf(file: string): Promise<number | undefined> {
  let fh;
  try {
    fh = await open(file, 'r');
    const buf = Buffer.alloc(HEAD_BYTES);
    const { bytesRead } = await fh.read(buf, 0, HEAD_BYTES, 0);
    const t = arrivalFromHead(buf.subarray(0, bytesRead));
    if (t !== undefined) return t;
    const st = await fh.stat();
    return st.birthtimeMs > 0 ? st.birthtimeMs : st.mtimeMs;
  } catch {
    // Delivered and removed between readdir and open: no longer in the queue.
    return undefined;
  } finally {
    await fh?.close();
  }
}

/** Every message file under a queue directory (hashed subdirectories included). */
async function queueFiles(dir: string, depth = 0, out: string[] = []): Promise<string[]> {
  // The top level must be readable (its error is the caller's); a subdirectory that vanishes
  // meanwhile (Postfix removes empty hash dirs only on request, but still) is skipped.
  const entries = depth === 0 ? await readdir(dir, { withFileTypes: true }) : await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (e.isFile()) out.push(path.join(dir, e.name));
    else if (e.isDirectory() && depth < MAX_DEPTH) await queueFiles(path.join(dir, e.name), depth + 1, out);
  }
  return out;
}

/** Counts and ages one queue directory. Throws when the directory itself cannot be read. */
export async function sampleQueue(dir: string, nowMs: number): Promise<QueueSample> {
  const st = await stat(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  const files = await queueFiles(dir);
  let oldest = Infinity;
  let present = 0;
  for (let i = 0; i < files.length; i += READ_CONCURRENCY) {
    const times = await Promise.all(files.slice(i, i + READ_CONCURRENCY).map(arrivalOf));
    for (const t of times) {
      if (t === undefined) continue;
      present++;
      if (t < oldest) oldest = t;
    }
  }
  return { messages: present, oldestSeconds: present ? Math.max(0, (nowMs - oldest) / 1000) : 0 };
}

/** One walk of every queue; errors are collected per queue, never thrown. */
export async function snapshotQueues(queueDir: string, queues: readonly PostfixQueue[], nowMs: number): Promise<QueueSnapshot> {
  const snap: QueueSnapshot = { queues: {}, errors: {} };
  for (const q of queues) {
    try {
      snap.queues[q] = await sampleQueue(path.join(queueDir, q), nowMs);
    } catch (err) {
      snap.errors[q] = (err as Error).message;
    }
  }
  return snap;
}

/**
 * Registers the two gauges on `registry`; their values are computed when scraped. Returns a
 * function giving the current (cached) snapshot, for status pages and tests.
 */
export function registerPostfixQueueMetrics(registry: Registry, queueDir: string, opts: PostfixQueueOptions): () => Promise<QueueSnapshot> {
  const cacheMs = opts.cacheMs ?? 5_000;
  const queues = opts.queues ?? POSTFIX_QUEUES;
  const now = opts.now ?? Date.now;
  let cached: { at: number; snap: Promise<QueueSnapshot> } | undefined;
  /** Per queue, the error last logged: a broken queue is reported once, and again when it recovers. */
  const reported = new Map<PostfixQueue, string>();

  const snapshot = (): Promise<QueueSnapshot> => {
    const t = now();
    if (cached && t - cached.at < cacheMs) return cached.snap;
    const snap = snapshotQueues(queueDir, queues, t).then((s) => {
      for (const q of queues) {
        const err = s.errors[q];
        if (err && reported.get(q) !== err) opts.log.warn({ queue: q, queueDir, err }, 'postfix queue: cannot read the queue directory; no sample for it');
        if (!err && reported.has(q)) opts.log.info({ queue: q, queueDir }, 'postfix queue: readable again');
        if (err) reported.set(q, err);
        else reported.delete(q);
      }
      return s;
    });
    cached = { at: t, snap };
    return snap;
  };

  const registers = [registry];
  new Gauge({
    name: 'ceerion_postfix_queue_messages',
    help: 'Messages in the Postfix queue directory, by queue (incoming, active, deferred, hold)',
    labelNames: ['queue'],
    registers,
    async collect() {
      const s = await snapshot();
      this.reset();
      for (const [q, v] of Object.entries(s.queues)) this.set({ queue: q }, v.messages);
    },
  });
  new Gauge({
    name: 'ceerion_postfix_queue_oldest_seconds',
    help: 'Seconds since the oldest message of each Postfix queue arrived (0 when empty)',
    labelNames: ['queue'],
    registers,
    async collect() {
      const s = await snapshot();
      this.reset();
      for (const [q, v] of Object.entries(s.queues)) this.set({ queue: q }, Math.round(v.oldestSeconds * 1000) / 1000);
    },
  });
  return snapshot;
}
