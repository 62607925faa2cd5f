/**
 * Keeps mail_events from growing forever: events older than `retentionDays` are deleted, in
 * batches so a big backlog never holds long locks. A client resuming from a deleted cursor is told
 * so (close code 4410) and reloads, which is what it would have to do after weeks offline anyway.
 * Every indexer process may run this; concurrent deletes of the same rows are harmless.
 */
import type pg from 'pg';
import type { Logger } from '../../core/log.ts';

const BATCH = 10_000;

/** Deletes events older than `days`; returns how many. */
export async function pruneEvents(pool: pg.Pool, days: number): Promise<number> {
  let total = 0;
  for (;;) {
    const { rowCount } = await pool.query(
      `DELETE FROM mail_events WHERE ctid IN (
         SELECT ctid FROM mail_events WHERE created_at < now() - make_interval(days => $1) LIMIT ${BATCH})`,
      [days],
    );
    total += rowCount ?? 0;
    if ((rowCount ?? 0) < BATCH) return total;
  }
}

/** Prunes now and then every `intervalMs`; stop() cancels. Failures are logged and retried next time. */
export function startEventRetention(opts: { pool: pg.Pool; days: number; intervalMs: number; log: Logger }): { stop(): void } {
  const run = () =>
    pruneEvents(opts.pool, opts.days).then(
      (n) => n > 0 && opts.log.info({ deleted: n, days: opts.days }, 'old mail events pruned'),
      (err: Error) => opts.log.warn({ err: err.message }, 'pruning mail events failed; retrying later'),
    );
  void run();
  const timer = setInterval(() => void run(), opts.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
