/**
 * The learn queue: a Redis stream with one consumer group, so any number of learner processes on
 * any machine share the work and an entry a crashed worker had read is taken over by another.
 *
 * - add() is one XADD with an approximate MAXLEN: when workers are stopped for long, the oldest
 *   training is dropped rather than Redis filling up.
 * - Entries stay pending until ack() (XACK + XDEL): a worker that dies mid-learn loses nothing.
 * - Learning is idempotent (the classifier's content hash), so an entry processed twice after a
 *   takeover does not count twice.
 */
import type { Redis } from 'ioredis';
import { decodeEntry, encodeEntry, LearnJobError, type LearnJob } from './job.ts';

export interface QueueEntry {
  id: string;
  /** Undefined when the entry could not be decoded; `error` says why. */
  job?: LearnJob;
  error?: string;
  /** How often it has been handed to a worker (1 on the first read). */
  deliveries: number;
}

export interface QueueNames {
  stream: string;
  deadStream: string;
  group: string;
  maxLength: number;
}

type RawEntry = [Buffer, Buffer[]];

function toEntries(raw: RawEntry[] | null | undefined, deliveries: Map<string, number> | number): QueueEntry[] {
  const out: QueueEntry[] = [];
  for (const item of raw ?? []) {
    if (!item) continue;
    const [idBuf, fields] = item;
    const id = idBuf.toString();
    const count = typeof deliveries === 'number' ? deliveries : (deliveries.get(id) ?? 1);
    if (!fields) {
      out.push({ id, error: 'entry was deleted', deliveries: count });
      continue;
    }
    try {
      out.push({ id, job: decodeEntry(fields), deliveries: count });
    } catch (err) {
      out.push({ id, error: err instanceof LearnJobError ? err.message : String(err), deliveries: count });
    }
  }
  return out;
}

/**
 * The entries of the one stream an XREADGROUP reply holds: RESP2 gives [[name, entries]], a RESP3
 * map arrives flattened as [name, entries].
 */
function firstStreamEntries(reply: unknown[] | null): RawEntry[] | undefined {
  if (!reply?.length) return undefined;
  const first = reply[0];
  if (Buffer.isBuffer(first) || typeof first === 'string') return reply[1] as RawEntry[];
  return (first as [unknown, RawEntry[]])[1];
}

export class LearnQueue {
  constructor(
    private readonly redis: Redis,
    readonly names: QueueNames,
  ) {}

  /** Creates the stream and the group if they do not exist (id 0: entries added before are included). */
  async ensureGroup(): Promise<void> {
    try {
      await this.redis.call('XGROUP', 'CREATE', this.names.stream, this.names.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!/BUSYGROUP/.test((err as Error).message)) throw err;
    }
  }

  /** Appends a job; resolves with its entry id. */
  async add(job: LearnJob): Promise<string> {
    const id = await this.redis.call('XADD', this.names.stream, 'MAXLEN', '~', String(this.names.maxLength), '*', ...encodeEntry(job));
    return String(id);
  }

  /** New entries for `consumer`, waiting up to blockMs when there are none. */
  async readNew(consumer: string, count: number, blockMs: number): Promise<QueueEntry[]> {
    const reply = (await this.redis.callBuffer(
      'XREADGROUP', 'GROUP', this.names.group, consumer, 'COUNT', String(count), 'BLOCK', String(blockMs), 'STREAMS', this.names.stream, '>',
    )) as unknown[] | null;
    return toEntries(firstStreamEntries(reply), 1);
  }

  /**
   * Entries pending (read but not acknowledged) for at least minIdleMs, by any consumer: failed
   * learns waiting for their retry and entries of a worker that died. Claims them for `consumer`.
   */
  async claimStale(consumer: string, minIdleMs: number, count: number): Promise<QueueEntry[]> {
    const pending = (await this.redis.call('XPENDING', this.names.stream, this.names.group, 'IDLE', String(minIdleMs), '-', '+', String(count))) as [
      string,
      string,
      number,
      number,
    ][];
    if (!pending.length) return [];
    const deliveries = new Map(pending.map(([id, , , n]) => [String(id), Number(n) + 1]));
    const ids = pending.map(([id]) => String(id));
    const claimed = (await this.redis.callBuffer('XCLAIM', this.names.stream, this.names.group, consumer, String(minIdleMs), ...ids)) as RawEntry[];
    const entries = toEntries(claimed, deliveries);
    // An id XCLAIM did not return was deleted meanwhile (trimmed by MAXLEN): nothing to learn.
    const returned = new Set(entries.map((e) => e.id));
    const gone = ids.filter((id) => !returned.has(id));
    if (gone.length) await this.ack(gone);
    return entries;
  }

  /** Done with these entries: acknowledge and delete (the stream holds only work still to do). */
  async ack(ids: string[]): Promise<void> {
    if (!ids.length) return;
    await this.redis.multi().call('XACK', this.names.stream, this.names.group, ...ids).call('XDEL', this.names.stream, ...ids).exec();
  }

  /** Moves an entry that cannot be learned to the dead stream with the reason, then acks it. */
  async bury(entry: QueueEntry, reason: string): Promise<void> {
    const fields: (string | Buffer)[] = ['reason', reason, 'id', entry.id, 'deliveries', String(entry.deliveries)];
    if (entry.job) fields.push('user', entry.job.user, 'cls', entry.job.cls, 'bytes', String(entry.job.message.length));
    await this.redis.call('XADD', this.names.deadStream, 'MAXLEN', '~', '10000', '*', ...fields);
    await this.ack([entry.id]);
  }

  /** Entries waiting (not yet acknowledged), pending (read, not done) and dead. */
  async counts(): Promise<{ queued: number; pending: number; dead: number }> {
    const [queued, dead] = await Promise.all([this.redis.call('XLEN', this.names.stream), this.redis.call('XLEN', this.names.deadStream)]);
    let pending = 0;
    try {
      const summary = (await this.redis.call('XPENDING', this.names.stream, this.names.group)) as [number, ...unknown[]];
      pending = Number(summary[0]);
    } catch (err) {
      if (!/NOGROUP/.test((err as Error).message)) throw err;
    }
    return { queued: Number(queued), pending, dead: Number(dead) };
  }
}
