/**
 * Keeps one process's in-memory classifier in step with PostgreSQL: the active snapshot, plus
 * every learn event after it, applied in id order and exactly once (per model: when another
 * version becomes active, the events it lacks are replayed onto it).
 *
 * - One dedicated connection LISTENs on `ceerion_classifier`; a notification only triggers a
 *   catch-up read (`readUpdates`: a newer model if any, then events after the last one applied).
 *   The payload is a hint, never trusted: the read decides. LISTEN is issued before the first read,
 *   so nothing committed in between is missed.
 * - A poll every `pollMs` runs the same catch-up, so a lost notification (or an insert whose
 *   trigger was disabled) still arrives within pollMs plus a query.
 * - Reads are single-flight: a notification during a read schedules one more read, never a
 *   concurrent one, and the cursor only moves after the callback returned. That, plus event ids
 *   drawn in commit order (see the migration), is what makes "in order, exactly once" hold.
 * - PostgreSQL down: the model in memory stays, the outage is logged once, the connection is
 *   retried with backoff; on reconnect the catch-up reads everything missed meanwhile.
 * - A callback that throws is logged. For onEvents the cursor still advances (applying part of a
 *   batch twice would double-count it); a model onModel refuses is skipped until another version is
 *   activated, and events keep applying to the model in memory.
 */
import type pg from 'pg';
import type { DatabaseConfig } from '../../core/config/policyd.ts';
import { connectDedicated, redactUrl } from '../../core/db/pool.ts';
import type { Logger } from '../../core/log.ts';
import { CLASSIFIER_CHANNEL, migrateClassifier, type PgModelStore } from './store.ts';
import type { LearnEvent } from './types.ts';

export interface ModelSubscriberOptions {
  store: PgModelStore;
  /** Where to open the LISTEN connection (the store's pool serves the reads). */
  database: DatabaseConfig;
  log: Logger;
  onModel(version: number, blob: Buffer, lastEventId: bigint): void | Promise<void>;
  onEvents(events: LearnEvent[]): void | Promise<void>;
  /** Safety-net catch-up interval (default 2000 ms). */
  pollMs?: number;
  /** Reconnect delays: doubling from the first to the most (defaults 250 ms, 5 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Events read per query (default 1000). */
  batchSize?: number;
  /** Run the classifier migrations with this pool on each (re)connect (default: don't). */
  migratePool?: pg.Pool;
}

export class ModelSubscriber {
  private listener: pg.Client | undefined;
  private closed = false;
  private down = false;
  private retryMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private connecting: Promise<void> | undefined;
  private syncing: Promise<void> | undefined;
  private syncWanted = false;
  private currentVersion: number | null = null;
  private cursor = 0n;
  /** A version onModel refused: not downloaded again until another one is activated. */
  private skipVersion: number | undefined;
  /** Counters for tests and diagnostics. */
  readonly stats = { syncs: 0, failures: 0, models: 0, events: 0 };

  private constructor(private readonly opts: ModelSubscriberOptions) {
    this.retryMs = this.retryMin;
  }

  /** Resolves after the first attempt, loaded or not: a milter must start with PostgreSQL down. */
  static async start(opts: ModelSubscriberOptions): Promise<ModelSubscriber> {
    const sub = new ModelSubscriber(opts);
    await sub.connect();
    sub.schedulePoll();
    return sub;
  }

  private get retryMin(): number {
    return this.opts.retryMinMs ?? 250;
  }

  /** True while listening and caught up as of the last read. */
  get connected(): boolean {
    return this.listener !== undefined && !this.down;
  }

  /** The model version in memory (null: none loaded yet). */
  get version(): number | null {
    return this.currentVersion;
  }

  /** The last event applied, or the loaded model's lastEventId. */
  get lastEventId(): bigint {
    return this.cursor;
  }

  /** Catch up now; resolves when a read that started after this call has finished. */
  sync(): Promise<void> {
    this.syncWanted = true;
    this.syncing ??= this.syncLoop().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.pollTimer);
    await this.connecting?.catch(() => {});
    await this.syncing?.catch(() => {});
    await this.dropListener();
  }

  private schedulePoll(): void {
    if (this.closed) return;
    this.pollTimer = setTimeout(() => {
      // While down, the reconnect timer owns recovery; a poll would only fail again.
      if (this.connected) this.sync().catch((err: Error) => this.failed(err));
      this.schedulePoll();
    }, this.opts.pollMs ?? 2000);
    // A forgotten close() must not keep the process alive.
    this.pollTimer.unref();
  }

  private connect(): Promise<void> {
    this.connecting ??= this.attempt().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async attempt(): Promise<void> {
    if (this.closed) return;
    try {
      const client = await connectDedicated(this.opts.database);
      this.listener = client;
      client.on('notification', (msg) => {
        if (msg.channel === CLASSIFIER_CHANNEL && this.wants(msg.payload)) this.sync().catch((err: Error) => this.failed(err));
      });
      client.on('error', (err) => this.lost(client, err));
      client.on('end', () => this.lost(client, new Error('connection ended')));
      if (this.closed) return void (await this.dropListener());
      await client.query(`LISTEN ${CLASSIFIER_CHANNEL}`);
      if (this.opts.migratePool) await migrateClassifier(this.opts.migratePool);
      await this.sync();
      if (this.down) this.opts.log.info({ version: this.currentVersion, lastEventId: String(this.cursor) }, 'PostgreSQL is back: classifier caught up');
      this.down = false;
      this.retryMs = this.retryMin;
    } catch (err) {
      await this.failed(err as Error);
    }
  }

  /** An event id we already hold needs no read (ids of other schemas on the channel land here too). */
  private wants(payload: string | undefined): boolean {
    if (payload && /^\d{1,19}$/.test(payload)) return BigInt(payload) > this.cursor;
    return true;
  }

  private async syncLoop(): Promise<void> {
    while (this.syncWanted && !this.closed) {
      this.syncWanted = false;
      await this.catchUp();
    }
  }

  /** Read and apply until a batch comes back short. Store errors propagate; callback errors don't. */
  private async catchUp(): Promise<void> {
    const batch = this.opts.batchSize ?? 1000;
    this.stats.syncs++;
    for (;;) {
      if (this.closed) return;
      const known = { version: this.currentVersion, afterId: this.cursor, skipVersion: this.skipVersion };
      const u = await this.opts.store.readUpdates(known, batch);
      if (u.model) {
        const { version, blob, lastEventId } = u.model;
        try {
          await this.opts.onModel(version, blob, lastEventId);
        } catch (err) {
          this.opts.log.error({ err: (err as Error).message, version }, 'classifier model refused by onModel; keeping the current one');
          this.skipVersion = version;
          continue; // the events read belong to the refused model: read again after our own cursor
        }
        this.currentVersion = version;
        this.cursor = lastEventId;
        this.skipVersion = undefined;
        this.stats.models++;
        this.opts.log.info({ version, lastEventId: String(lastEventId), bytes: blob.length }, 'classifier model loaded');
      }
      // Defensive: the read is after the cursor already, so this never drops anything real.
      const events = u.events.filter((e) => e.id > this.cursor);
      if (events.length > 0) {
        try {
          await this.opts.onEvents(events);
        } catch (err) {
          this.opts.log.error(
            { err: (err as Error).message, first: String(events[0]!.id), count: events.length },
            'applying learn events failed; skipping them',
          );
        }
        this.cursor = events[events.length - 1]!.id;
        this.stats.events += events.length;
      }
      if (u.events.length < batch) return;
    }
  }

  private lost(client: pg.Client, err: Error): void {
    if (client !== this.listener) return;
    void this.failed(err);
  }

  /** Keep the model in memory, log the first failure of an outage only, and retry later. */
  private async failed(err: Error): Promise<void> {
    if (this.closed) return;
    this.stats.failures++;
    await this.dropListener();
    if (!this.down) {
      this.opts.log.warn(
        { err: err.message, database: redactUrl(this.opts.database.url), version: this.currentVersion },
        'classifier: PostgreSQL unavailable, keeping the model in memory and retrying',
      );
    } else {
      this.opts.log.debug({ err: err.message, retryMs: this.retryMs }, 'classifier: PostgreSQL still unavailable');
    }
    this.down = true;
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect();
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, this.opts.retryMaxMs ?? 5_000);
  }

  private async dropListener(): Promise<void> {
    const client = this.listener;
    this.listener = undefined;
    if (!client) return;
    client.removeAllListeners('notification');
    // Keep an error listener: a late socket error on a dropped client must not crash the process.
    client.removeAllListeners('error').on('error', () => {});
    client.removeAllListeners('end');
    await client.end().catch(() => {});
  }
}
