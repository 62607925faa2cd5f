/**
 * Fans each account's mail events out to this process's subscribers (its WebSocket clients).
 *
 * - One LISTEN connection per process (core/db/listener.ts) on MAIL_EVENTS_CHANNEL. Any process may
 *   commit an event; every process hears of it, so a client may connect to any of them.
 * - A notification is only a hint: it makes the hub read the account's events after the highest
 *   seq it delivered (eventsAfter), and those rows are what subscribers get, in seq order. Seqs are
 *   gap-free and commit in order (see store.ts), so "after my cursor" never skips a late commit.
 * - Reads are single-flight per account and coalesce: a notification for a seq already delivered
 *   is ignored, one arriving during a read asks for one more read only if the read did not already
 *   cover it. A transaction that commits 100 events costs one read.
 * - Notifications are lost while the LISTEN connection is down, so on reconnect one query finds the
 *   subscribed accounts whose counter moved past our cursor, and those are read.
 * - A failed read (pool exhausted, PostgreSQL restarting) is retried after retryMs, so an event whose
 *   notification arrived is never left undelivered until the next one.
 * - The channel is database-wide: installations in other schemas of the same database only cause
 *   extra, empty reads.
 *
 * subscribe() resolves with the cursor the subscription starts at: the subscriber receives exactly
 * the events after it, in order, each once. The WebSocket endpoint replays up to that cursor from the
 * table, which is what makes its switch-over from replay to live exact.
 */
import type pg from 'pg';
import type { DatabaseConfig } from '../../core/config/policyd.ts';
import { PgListener, realTimers, type Timers } from '../../core/db/listener.ts';
import type { Logger } from '../../core/log.ts';
import type { MailEvent } from '../types.ts';
import { eventsAfter, MAIL_EVENTS_CHANNEL } from './store.ts';

export interface EventHubOptions {
  /** Serves the reads. */
  pool: pg.Pool;
  /** Where to open the LISTEN connection. */
  database: DatabaseConfig;
  log: Logger;
  /** Events read per query (default 500). */
  batchSize?: number;
  /** Delay before a failed read is retried (default 1 s). */
  retryMs?: number;
  /** Passed to the listener (reconnect backoff, liveness probe) and used for read retries. */
  listener?: { retryMinMs?: number; retryMaxMs?: number; pingIntervalMs?: number; pingTimeoutMs?: number };
  timers?: Timers;
}

export interface Subscription {
  readonly account: string;
  /** The subscription delivers exactly the events with seq greater than this, in order. */
  readonly seq: number;
  unsubscribe(): void;
}

type Deliver = (event: MailEvent) => void;

interface AccountState {
  account: string;
  subscribers: Set<Deliver>;
  /** Highest seq delivered; undefined until the first read of the counter. */
  cursor: number | undefined;
  ready: Promise<void>;
  reading: Promise<void> | undefined;
  /** A notification (or a reconnect) asked for a read since the last one started. */
  pending: boolean;
  /** Highest seq notified and not known delivered (Infinity: unknown, read anyway). */
  notified: number;
}

export class EventHub {
  private readonly accounts = new Map<string, AccountState>();
  private listener: PgListener | undefined;
  private stopped = false;
  private readonly timers: Timers;
  private retryTimer: unknown;
  private readonly retryAccounts = new Set<AccountState>();
  /** Counters for tests and diagnostics. */
  readonly stats = { reads: 0, readErrors: 0, delivered: 0, catchUps: 0 };

  private constructor(private readonly opts: EventHubOptions) {
    this.timers = opts.timers ?? realTimers;
  }

  /** Resolves after the first LISTEN attempt, listening or not (the indexer starts with PostgreSQL down). */
  static async start(opts: EventHubOptions): Promise<EventHub> {
    const hub = new EventHub(opts);
    hub.listener = await PgListener.start({
      ...opts.listener,
      database: opts.database,
      channels: [MAIL_EVENTS_CHANNEL],
      log: opts.log,
      timers: opts.timers,
      onNotification: (_channel, payload) => hub.notified(payload),
      onReconnect: () => hub.catchUp(),
    });
    return hub;
  }

  /** True while the LISTEN connection is up and caught up. */
  get listening(): boolean {
    return this.listener?.connected ?? false;
  }

  /** The LISTEN connection's server pid (tests terminate it). */
  get listenerPid(): number | undefined {
    return this.listener?.pid;
  }

  /** Accounts with at least one subscriber. */
  get accountCount(): number {
    return this.accounts.size;
  }

  /**
   * Delivers every event of `account` after the returned `seq`, in order, each once, until
   * unsubscribe(). `deliver` runs synchronously inside the hub's delivery loop: it must not block,
   * and a throw is logged and does not affect other subscribers. Rejects when the account's current
   * seq cannot be read (PostgreSQL down).
   */
  async subscribe(account: string, deliver: Deliver): Promise<Subscription> {
    if (this.stopped) throw new Error('event hub stopped');
    let state = this.accounts.get(account);
    if (!state) {
      state = this.newState(account);
      this.accounts.set(account, state);
    }
    try {
      await state.ready;
    } catch (err) {
      if (this.accounts.get(account) === state && state.subscribers.size === 0) this.accounts.delete(account);
      throw err;
    }
    if (this.stopped) throw new Error('event hub stopped');
    // The state may have been dropped (last subscriber left) while we waited: start over.
    if (this.accounts.get(account) !== state) return this.subscribe(account, deliver);
    // Synchronous from here: the delivery loop is synchronous too, so `seq` is exact.
    const subscribers = state.subscribers;
    const entry: Deliver = (e) => deliver(e);
    subscribers.add(entry);
    const seq = state.cursor!;
    let active = true;
    return {
      account,
      seq,
      unsubscribe: () => {
        if (!active) return;
        active = false;
        subscribers.delete(entry);
        if (subscribers.size === 0 && this.accounts.get(account) === state) {
          this.accounts.delete(account);
          this.retryAccounts.delete(state);
        }
      },
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timers.clearTimeout(this.retryTimer);
    await this.listener?.stop();
    await Promise.allSettled([...this.accounts.values()].map((s) => s.reading));
    this.accounts.clear();
  }

  private newState(account: string): AccountState {
    const state: AccountState = { account, subscribers: new Set(), cursor: undefined, ready: Promise.resolve(), reading: undefined, pending: false, notified: 0 };
    // The counter row commits with each event, so its value is the newest committed seq.
    state.ready = this.opts.pool
      .query<{ seq: string }>('SELECT seq FROM mail_event_counters WHERE account = $1', [account])
      .then(({ rows }) => {
        state.cursor = Number(rows[0]?.seq ?? 0);
        // A notification or a reconnect while we read the counter: it may be past the cursor.
        if (state.pending) this.kick(state);
      });
    // Callers await `ready`; this only keeps a rejection nobody waits for from being "unhandled".
    state.ready.catch(() => {});
    return state;
  }

  private notified(payload: string | undefined): void {
    let account: string | undefined;
    let seq = Infinity;
    try {
      const p = JSON.parse(payload ?? '') as { account?: unknown; seq?: unknown };
      if (typeof p.account === 'string') account = p.account;
      if (typeof p.seq === 'number' && Number.isSafeInteger(p.seq)) seq = p.seq;
    } catch {
      // Unreadable payload: nothing to go by, so every account reads.
    }
    if (account === undefined) {
      for (const state of this.accounts.values()) this.want(state, Infinity);
      return;
    }
    const state = this.accounts.get(account);
    if (state) this.want(state, seq);
  }

  private want(state: AccountState, seq: number): void {
    if (state.cursor !== undefined && seq <= state.cursor) return; // already delivered
    state.notified = Math.max(state.notified, seq);
    state.pending = true;
    this.kick(state);
  }

  private kick(state: AccountState): void {
    if (this.stopped || state.cursor === undefined || state.reading) return;
    state.reading = this.drain(state).finally(() => (state.reading = undefined));
  }

  /** Reads until no notification that arrived meanwhile points past what was delivered. */
  private async drain(state: AccountState): Promise<void> {
    try {
      while (state.pending && state.notified > state.cursor! && !this.stopped && this.accounts.get(state.account) === state) {
        state.pending = false;
        await this.readAll(state);
      }
      state.pending = false;
      state.notified = 0;
    } catch (err) {
      this.stats.readErrors++;
      this.opts.log.warn({ err: (err as Error).message, account: state.account, seq: state.cursor }, 'reading mail events failed; retrying');
      state.pending = true;
      state.notified = Infinity;
      this.retryLater(state);
    }
  }

  private async readAll(state: AccountState): Promise<void> {
    const batch = this.opts.batchSize ?? 500;
    for (;;) {
      this.stats.reads++;
      const events = await eventsAfter(this.opts.pool, state.account, state.cursor!, batch);
      for (const event of events) {
        // Defensive: a read overlapping one from before a retry must never deliver twice.
        if (event.seq <= state.cursor!) continue;
        // Move the cursor first: a subscriber added during this event's delivery starts after it.
        state.cursor = event.seq;
        for (const deliver of [...state.subscribers]) {
          try {
            deliver(event);
            this.stats.delivered++;
          } catch (err) {
            this.opts.log.error({ err: (err as Error).message, account: state.account, seq: event.seq }, 'mail event subscriber threw');
          }
        }
      }
      if (events.length < batch || this.stopped) return;
    }
  }

  private retryLater(state: AccountState): void {
    this.retryAccounts.add(state);
    if (this.retryTimer !== undefined || this.stopped) return;
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = undefined;
      const states = [...this.retryAccounts];
      this.retryAccounts.clear();
      for (const s of states) if (this.accounts.get(s.account) === s) this.kick(s);
    }, this.opts.retryMs ?? 1_000);
  }

  /** After a reconnect: one query tells which subscribed accounts moved while we were deaf. */
  private async catchUp(): Promise<void> {
    this.stats.catchUps++;
    const states = [...this.accounts.values()];
    const known = states.filter((s) => s.cursor !== undefined);
    // Accounts still reading their counter will read after it anyway.
    for (const s of states) {
      if (s.cursor !== undefined) continue;
      s.pending = true;
      s.notified = Infinity;
    }
    if (known.length === 0) return;
    const { rows } = await this.opts.pool.query<{ account: string; seq: string }>(
      'SELECT account, seq FROM mail_event_counters WHERE account = ANY($1::text[])',
      [known.map((s) => s.account)],
    );
    const moved = new Map(rows.map((r) => [r.account, Number(r.seq)]));
    let accounts = 0;
    for (const s of known) {
      const seq = moved.get(s.account);
      if (seq !== undefined && seq > s.cursor!) {
        accounts++;
        this.want(s, seq);
      }
    }
    this.opts.log.info({ subscribed: known.length, behind: accounts }, 'mail events: caught up after reconnecting');
  }
}
