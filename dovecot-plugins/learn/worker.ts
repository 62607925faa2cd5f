/**
 * The learn worker: drains the queue into the classifier's learning entry point (the same
 * Learner `ceerion learn` and the learn HTTP endpoint use). Runs until stop().
 *
 * - A learn that fails (PostgreSQL down, the classifier failing) is not acknowledged: the entry
 *   stays pending and is retried after retryDelayMs, as often as maxAttempts allows, then moved
 *   to the dead stream. Input the classifier refuses (LearnInputError) is buried at once.
 * - Entries another worker read and never finished (it died) are claimed the same way.
 * - Idempotency is the classifier's: the same message moved into Junk twice is one learn
 *   (`duplicate`), moved back out it is a relearn that reverses the first.
 */
import os from 'node:os';
import { silentLogger, type Logger } from '../../core/log.ts';
import { LearnInputError } from '../../classifier/model/store.ts';
import type { Learner, LearnOutcome } from '../../classifier/learn/learner.ts';
import type { LearnQueue, QueueEntry } from './queue.ts';

export interface WorkerOptions {
  queue: LearnQueue;
  learner: Learner;
  /** `global`: every user's moves train the site-wide model; `user`: that user's scope. */
  scope: 'global' | 'user';
  batchSize: number;
  retryDelayMs: number;
  maxAttempts: number;
  /** How long one read waits for new entries (keeps stop() prompt). */
  blockMs?: number;
  consumer?: string;
  log?: Logger;
  onLearned?: (entry: QueueEntry, outcome: LearnOutcome) => void;
  /**
   * True while a user's move is being served in this process (the gateway had a request within
   * the last few ms). Learning is CPU work on the same event loop; it waits, at most
   * maxYieldMs per entry, so a MOVE of many messages is not slowed by training them.
   */
  busy?: () => boolean;
  maxYieldMs?: number;
}

export interface WorkerStats {
  learned: number;
  relearned: number;
  duplicate: number;
  failed: number;
  buried: number;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

export class LearnWorker {
  readonly consumer: string;
  readonly stats: WorkerStats = { learned: 0, relearned: 0, duplicate: 0, failed: 0, buried: 0 };
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly opts: WorkerOptions) {
    this.consumer = opts.consumer ?? `${os.hostname()}-${process.pid}`;
    this.log = opts.log ?? silentLogger;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  /** One round: retries and takeovers first, then new entries. Returns how many were handled. */
  async runOnce(blockMs = this.opts.blockMs ?? 1_000): Promise<number> {
    const stale = await this.opts.queue.claimStale(this.consumer, this.opts.retryDelayMs, this.opts.batchSize);
    const fresh = stale.length ? [] : await this.opts.queue.readNew(this.consumer, this.opts.batchSize, blockMs);
    const done: string[] = [];
    for (const entry of [...stale, ...fresh]) {
      if (await this.handle(entry)) done.push(entry.id);
    }
    await this.opts.queue.ack(done);
    return stale.length + fresh.length;
  }

  private async run(): Promise<void> {
    await this.opts.queue.ensureGroup().catch(() => undefined);
    let backoff = 0;
    while (!this.abort.signal.aborted) {
      try {
        await this.opts.queue.ensureGroup();
        await this.runOnce();
        backoff = 0;
      } catch (err) {
        // Redis down: wait and try again; nothing is lost (entries stay in the stream).
        backoff = Math.min(backoff ? backoff * 2 : 250, 5_000);
        this.log.warn({ err: (err as Error).message, retryInMs: backoff }, 'learn queue unavailable');
        await sleep(backoff, this.abort.signal);
      }
    }
  }

  /** True when the entry is finished (learned, duplicate or buried); false to retry it later. */
  private async handle(entry: QueueEntry): Promise<boolean> {
    if (!entry.job) {
      await this.opts.queue.bury(entry, entry.error ?? 'undecodable entry');
      this.stats.buried++;
      this.log.warn({ id: entry.id, err: entry.error }, 'learn queue entry buried');
      return false; // bury() acknowledged it
    }
    const { job } = entry;
    if (this.opts.busy) {
      const until = Date.now() + (this.opts.maxYieldMs ?? 2_000);
      while (this.opts.busy() && Date.now() < until && !this.abort.signal.aborted) await sleep(10, this.abort.signal);
    }
    const fields = { id: entry.id, user: job.user, cls: job.cls, source: job.source, bytes: job.message.length, attempt: entry.deliveries };
    try {
      const outcome = await this.opts.learner.learn(job.message, job.cls, this.opts.scope === 'user' ? { user: job.user } : {});
      this.stats[outcome.status]++;
      this.log.info({ ...fields, status: outcome.status, eventId: outcome.eventId, waitedMs: Date.now() - job.receivedAt }, 'learned from a user move');
      this.opts.onLearned?.(entry, outcome);
      return true;
    } catch (err) {
      if (err instanceof LearnInputError || entry.deliveries >= this.opts.maxAttempts) {
        const reason = err instanceof LearnInputError ? err.message : `gave up after ${entry.deliveries} attempts: ${(err as Error).message}`;
        await this.opts.queue.bury(entry, reason);
        this.stats.buried++;
        this.log.error({ ...fields, err: (err as Error).message }, 'learn failed for good; entry moved to the dead stream');
        return false;
      }
      this.stats.failed++;
      this.log.warn({ ...fields, err: (err as Error).message, retryInMs: this.opts.retryDelayMs }, 'learn failed; will retry');
      return false;
    }
  }
}
