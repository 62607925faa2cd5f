/**
 * Runs each POST of push events through applyPushEvents, one at a time per account (a MOVE's
 * append must be applied before a later POST's flag change on the moved message), and keeps what
 * cannot be applied yet in memory, retrying it:
 *
 * - Deliveries whose row is not there yet. Dovecot posts MessageNew while it delivers, before its
 *   250 reaches the LMTP indexer, and the indexer writes the row after that 250: the first try
 *   usually finds nothing. Those events, and later events about the same message, wait here and
 *   are retried after 50 ms, 100 ms, … up to every 5 s; retryNow(account) (e.g. when the indexer
 *   has written rows) retries at once.
 * - Whole POSTs while PostgreSQL is unreachable. The account is then "blocked": every new event of
 *   it waits too, so order is kept, until a retry succeeds. Dovecot is answered 202 at once.
 *
 * Weak spots: this memory is per process and lost on restart (the index then keeps the row without
 * a mailbox, or with the state before the lost events, until the next event about the message);
 * events wait at most maxWaitMs and at most maxWaitingEvents in all, beyond which they are dropped
 * with a warning. Permanent errors (a bug, a constraint) drop the POST's events with an error log
 * rather than block the account.
 */
import type pg from 'pg';
import { silentLogger, type Logger } from '../../core/log.ts';
import { applyPushEvents, eventKeys, renameEvent, type ApplyResult } from './apply.ts';
import type { PushBatch, PushEvent } from './events.ts';

export interface PushReceiverOptions {
  pool: pg.Pool;
  log?: Logger;
  /** Delays between retries of waiting events; the last one repeats. */
  retryDelaysMs?: number[];
  /** Waiting events older than this are dropped. Default 10 minutes. */
  maxWaitMs?: number;
  /** Most events waiting over all accounts. Default 100,000. */
  maxWaitingEvents?: number;
  now?: () => number;
}

export interface ReceiveResult extends Omit<ApplyResult, 'waiting'> {
  /** Events of this account now waiting (this POST's and earlier ones). */
  waiting: number;
  /** PostgreSQL was unreachable: the whole POST waits for a retry. */
  held: boolean;
}

interface Entry {
  event: PushEvent;
  since: number;
}

interface Backlog {
  entries: Entry[];
  separator: string;
  blocked: boolean;
  attempt: number;
  timer?: NodeJS.Timeout;
}

const TRANSIENT_SQLSTATE = /^(08|40|53|57|58)/;

/** Whether a failure is PostgreSQL being unreachable or busy (retry) rather than a bad statement (don't). */
export function isTransientDbError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  // Server-side errors carry a 5-character SQLSTATE; socket and pool errors carry none or an errno name.
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return TRANSIENT_SQLSTATE.test(code);
  return true;
}

export class PushReceiver {
  private readonly backlogs = new Map<string, Backlog>();
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly retryDelaysMs: number[];
  private readonly maxWaitMs: number;
  private readonly maxWaitingEvents: number;
  private readonly now: () => number;
  private log: Logger;
  private total = 0;
  /** The last apply failed for PostgreSQL being unreachable (any account); cleared by the next success. */
  private databaseDown = false;
  private closed = false;

  constructor(private readonly opts: PushReceiverOptions) {
    this.retryDelaysMs = opts.retryDelaysMs?.length ? opts.retryDelaysMs : [50, 100, 250, 500, 1_000, 2_000, 5_000];
    this.maxWaitMs = opts.maxWaitMs ?? 10 * 60_000;
    this.maxWaitingEvents = opts.maxWaitingEvents ?? 100_000;
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? silentLogger;
  }

  /** Applies one validated POST. Never rejects for PostgreSQL being down (the events wait instead). */
  receive(batch: PushBatch, log?: Logger): Promise<ReceiveResult> {
    if (log && !this.opts.log) this.log = log;
    // While PostgreSQL is down, answer at once instead of trying (a black-holed server costs a
    // whole connect timeout, longer than Dovecot waits): appending keeps the order, and the retry
    // timers find out when it is back.
    if (this.databaseDown || this.backlogs.get(batch.user)?.blocked) return Promise.resolve(this.holdBlocked(batch));
    return this.serial(batch.user, () => this.receiveNow(batch, log ?? this.log));
  }

  private holdBlocked(batch: PushBatch): ReceiveResult {
    this.hold(batch.user, batch.separator, batch.events, true);
    return { placed: 0, moved: 0, flagged: 0, expunged: 0, renamed: 0, unmatched: 0, waiting: this.waitingCount(batch.user), held: true };
  }

  /** Retries the account's waiting events now (the row they wait for may just have been written). */
  retryNow(account: string): Promise<void> {
    const key = account.toLowerCase();
    const b = this.backlogs.get(key);
    if (!b) return Promise.resolve();
    clearTimeout(b.timer);
    b.timer = undefined;
    return this.serial(key, () => this.retry(key));
  }

  /** Events waiting for `account`, or for every account. */
  waitingCount(account?: string): number {
    return account === undefined ? this.total : (this.backlogs.get(account.toLowerCase())?.entries.length ?? 0);
  }

  /** Stops retrying; whatever still waits is dropped (and counted in the log). */
  close(): void {
    this.closed = true;
    for (const b of this.backlogs.values()) clearTimeout(b.timer);
    if (this.total > 0) this.log.warn({ events: this.total, accounts: this.backlogs.size }, 'push: waiting events dropped at shutdown');
    this.backlogs.clear();
    this.total = 0;
  }

  private serial<T>(account: string, work: () => Promise<T>): Promise<T> {
    const run = (this.chains.get(account) ?? Promise.resolve()).then(work, work);
    const tail = run.catch(() => undefined);
    this.chains.set(account, tail);
    void tail.then(() => {
      if (this.chains.get(account) === tail) this.chains.delete(account);
    });
    return run;
  }

  private async receiveNow(batch: PushBatch, log: Logger): Promise<ReceiveResult> {
    const { user, separator, events } = batch;
    let b = this.backlogs.get(user);
    if (b?.blocked) return this.holdBlocked(batch);
    let result: ApplyResult;
    try {
      result = await applyPushEvents(this.opts.pool, user, events, { separator, ...(b ? { waitingKeys: keysOf(b.entries) } : {}) });
    } catch (err) {
      if (!isTransientDbError(err)) {
        log.error({ err, user, events: events.length }, 'push: events could not be applied and are dropped');
        throw err;
      }
      log.warn({ err: (err as Error).message, user, events: events.length }, 'push: PostgreSQL unavailable, events wait for a retry');
      this.databaseDown = true;
      return this.holdBlocked(batch);
    }
    this.databaseDown = false;
    b = this.backlogs.get(user);
    // Renames in this POST apply to what waited from earlier POSTs too.
    if (b) for (const e of events) if (e.name === 'MailboxRename') b.entries = b.entries.map((w) => ({ ...w, event: renameEvent(w.event, e.oldMailbox, e.mailbox, separator) }));
    if (result.waiting.length > 0) this.hold(user, separator, result.waiting, false);
    const { waiting: _, ...counts } = result;
    return { ...counts, waiting: this.waitingCount(user), held: false };
  }

  private hold(account: string, separator: string, events: readonly PushEvent[], blocked: boolean): void {
    if (this.closed || events.length === 0) return;
    const room = this.maxWaitingEvents - this.total;
    if (room < events.length) this.log.warn({ user: account, dropped: events.length - Math.max(room, 0) }, 'push: too many waiting events, dropping the newest');
    const kept = events.slice(0, Math.max(room, 0));
    let b = this.backlogs.get(account);
    if (!b) {
      b = { entries: [], separator, blocked, attempt: 0 };
      this.backlogs.set(account, b);
    }
    const since = this.now();
    b.entries.push(...kept.map((event) => ({ event, since })));
    this.total += kept.length;
    b.separator = separator;
    if (b.blocked) {
      // PostgreSQL is down, not a row away: keep the back-off that is running.
      if (!b.timer) this.schedule(account, b);
      return;
    }
    b.blocked = blocked;
    // New work starts the back-off again: the row it waits for is most likely a moment away.
    b.attempt = 0;
    this.schedule(account, b);
  }

  private schedule(account: string, b: Backlog): void {
    clearTimeout(b.timer);
    if (this.closed) return;
    const delay = this.retryDelaysMs[Math.min(b.attempt, this.retryDelaysMs.length - 1)]!;
    b.timer = setTimeout(() => {
      b.timer = undefined;
      void this.serial(account, () => this.retry(account));
    }, delay);
    // Waiting events must not keep a stopping process alive.
    b.timer.unref();
  }

  private async retry(account: string): Promise<void> {
    const b = this.backlogs.get(account);
    if (!b || this.closed) return;
    const oldest = this.now() - this.maxWaitMs;
    const expired = b.entries.filter((e) => e.since < oldest).length;
    if (expired > 0) {
      this.log.warn({ user: account, events: expired }, 'push: events waited too long for their message and are dropped');
      b.entries = b.entries.filter((e) => e.since >= oldest);
      this.total -= expired;
    }
    // Events held while this runs (a blocked account) are appended behind these and kept.
    const tried = b.entries.slice();
    const since = new Map(tried.map((e) => [e.event, e.since]));
    let left: PushEvent[] = [];
    try {
      if (tried.length > 0) left = (await applyPushEvents(this.opts.pool, account, tried.map((e) => e.event), { separator: b.separator })).waiting;
      if (b.blocked) this.log.info({ user: account, events: tried.length }, 'push: PostgreSQL is back, waiting events applied');
      this.databaseDown = false;
    } catch (err) {
      if (isTransientDbError(err)) {
        this.databaseDown = true;
        b.blocked = true;
        b.attempt++;
        this.schedule(account, b);
        return;
      }
      this.log.error({ err, user: account, events: tried.length }, 'push: waiting events could not be applied and are dropped');
    }
    const first = tried[0]?.since ?? this.now();
    // Events renamed on the way are new objects: they keep the age of the oldest.
    const kept = left.map((event) => ({ event, since: since.get(event) ?? first }));
    b.entries = [...kept, ...b.entries.slice(tried.length)];
    this.total -= tried.length - kept.length;
    b.blocked = false;
    if (b.entries.length === 0) {
      this.backlogs.delete(account);
      return;
    }
    b.attempt++;
    this.schedule(account, b);
  }
}

function keysOf(entries: readonly Entry[]): Set<string> {
  return new Set(entries.flatMap((e) => eventKeys(e.event)));
}
