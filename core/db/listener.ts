/**
 * One dedicated PostgreSQL connection that LISTENs on a few channels and keeps doing so:
 * the reconnect loop that the policy source and the classifier subscriber each grew, in one place.
 *
 * - LISTEN only works on the session that issued it, so the connection is our own (connectDedicated),
 *   never a pooled one.
 * - Notifications sent while we are disconnected are lost for good. After every reconnect the
 *   consumer's `onReconnect` runs (after LISTEN is in place, so nothing committed during it is
 *   missed either) to read what it may have missed. If it fails, the connection is dropped and
 *   retried, so a catch-up is never silently skipped.
 * - A dropped connection (server restart, pg_terminate_backend, network) is noticed through the
 *   client's `error`/`end` events. A black-holed one is silent: TCP keepalive would take minutes,
 *   so a `SELECT 1` every pingIntervalMs with a deadline declares it dead sooner.
 * - Reconnect delays double from retryMinMs to retryMaxMs and reset after a good connection. The
 *   first failure of an outage is a warning, the rest are debug: one outage, one log line.
 * - Timers are injected so tests can drive the backoff without waiting for it.
 */
import type pg from 'pg';
import type { DatabaseConfig } from '../config/policyd.ts';
import type { Logger } from '../log.ts';
import { connectDedicated, redactUrl } from './pool.ts';

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface PgListenerOptions {
  database: DatabaseConfig;
  /** Channel names; they go into SQL unquoted, so plain lower-case identifiers only. */
  channels: string[];
  log: Logger;
  onNotification(channel: string, payload: string | undefined): void;
  /**
   * Runs after LISTEN is in place on every connection except the one start() waited for
   * (including a first success after start() found the server down). Read what was missed here.
   * A throw or rejection drops the connection and retries it, and this runs again.
   */
  onReconnect?(): void | Promise<void>;
  /** Reconnect delays: doubling from the first to the most (defaults 250 ms, 10 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Liveness probe interval on an idle connection (default 30 s; 0: none) and its deadline (default 10 s). */
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  connectTimeoutMs?: number;
  timers?: Timers;
}

const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/;
/** How long a goodbye to a dead server may take before the socket is simply destroyed. */
const END_TIMEOUT_MS = 1_000;

export class PgListener {
  private client: pg.Client | undefined;
  private backendPid: number | undefined;
  /** LISTEN in place and, after a reconnect, caught up. */
  private ready = false;
  private started = false;
  private stopped = false;
  private down = false;
  private retryMs: number;
  private retryTimer: unknown;
  private pingTimer: unknown;
  private connecting: Promise<void> | undefined;
  private readonly timers: Timers;
  /** Counters for tests and diagnostics. */
  readonly stats = { connects: 0, failures: 0, reconnects: 0, notifications: 0 };

  private constructor(private readonly opts: PgListenerOptions) {
    for (const c of opts.channels) if (!CHANNEL.test(c)) throw new Error(`channel ${JSON.stringify(c)} is not a lower-case SQL identifier`);
    this.timers = opts.timers ?? realTimers;
    this.retryMs = this.retryMin;
  }

  /** Resolves after the first attempt, listening or not: a service must start with PostgreSQL down. */
  static async start(opts: PgListenerOptions): Promise<PgListener> {
    const listener = new PgListener(opts);
    await listener.connect();
    listener.started = true;
    return listener;
  }

  private get retryMin(): number {
    return this.opts.retryMinMs ?? 250;
  }

  /** True while LISTEN is in place (and, after a reconnect, onReconnect has finished). */
  get connected(): boolean {
    return this.ready;
  }

  /** The server process behind the current connection (tests terminate it to simulate a drop). */
  get pid(): number | undefined {
    return this.connected ? this.backendPid : undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timers.clearTimeout(this.retryTimer);
    this.timers.clearTimeout(this.pingTimer);
    await this.connecting?.catch(() => {});
    await this.drop();
  }

  private connect(): Promise<void> {
    this.connecting ??= this.attempt().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async attempt(): Promise<void> {
    if (this.stopped || this.client) return;
    const opts = this.opts;
    let client: pg.Client | undefined;
    try {
      client = await connectDedicated(opts.database, { connectTimeoutMs: opts.connectTimeoutMs });
      const mine = client;
      this.client = mine;
      mine.on('notification', (msg) => {
        this.stats.notifications++;
        try {
          opts.onNotification(msg.channel, msg.payload);
        } catch (err) {
          // Thrown inside pg's message handling it would take the connection, or the process, down.
          opts.log.error({ err: (err as Error).message, channel: msg.channel }, 'notification handler threw');
        }
      });
      mine.on('error', (err) => this.lost(mine, err));
      mine.on('end', () => this.lost(mine, new Error('connection ended')));
      if (this.stopped) return void (await this.drop());
      // One round trip: every LISTEN plus the pid, in a single simple-query message.
      const sql = [...opts.channels.map((c) => `LISTEN ${c}`), 'SELECT pg_backend_pid() AS pid'].join('; ');
      const results = (await mine.query(sql)) as unknown as pg.QueryResult<{ pid: number }> | Array<pg.QueryResult<{ pid: number }>>;
      const last = Array.isArray(results) ? results[results.length - 1] : results;
      this.backendPid = last?.rows[0]?.pid;
      this.stats.connects++;
      if (this.started) {
        this.stats.reconnects++;
        await opts.onReconnect?.();
      }
      if (mine !== this.client) return; // lost while catching up: lost() has rescheduled already
      if (this.down) opts.log.info({ channels: opts.channels, pid: this.backendPid }, 'PostgreSQL LISTEN connection is back');
      else opts.log.debug({ channels: opts.channels, pid: this.backendPid }, 'PostgreSQL LISTEN connection ready');
      this.down = false;
      this.ready = true;
      this.retryMs = this.retryMin;
      this.schedulePing(mine);
    } catch (err) {
      // A connection that died mid-attempt was handled by lost(); don't count the outage twice.
      if (client === undefined || client === this.client) await this.failed(err as Error);
    }
  }

  private schedulePing(client: pg.Client): void {
    const every = this.opts.pingIntervalMs ?? 30_000;
    if (every <= 0 || this.stopped) return;
    this.pingTimer = this.timers.setTimeout(() => void this.ping(client), every);
  }

  private async ping(client: pg.Client): Promise<void> {
    if (client !== this.client || this.stopped) return;
    let deadline: unknown;
    const timedOut = new Promise<never>((_, reject) => {
      deadline = this.timers.setTimeout(() => reject(new Error('no answer to a liveness probe')), this.opts.pingTimeoutMs ?? 10_000);
    });
    try {
      await Promise.race([client.query('SELECT 1'), timedOut]);
    } catch (err) {
      this.lost(client, err as Error);
      return;
    } finally {
      this.timers.clearTimeout(deadline);
    }
    this.schedulePing(client);
  }

  private lost(client: pg.Client, err: Error): void {
    if (client !== this.client) return;
    void this.failed(err);
  }

  private async failed(err: Error): Promise<void> {
    if (this.stopped) return;
    this.stats.failures++;
    this.ready = false;
    this.timers.clearTimeout(this.pingTimer);
    await this.drop();
    const fields = { err: err.message, channels: this.opts.channels, database: redactUrl(this.opts.database.url), retryMs: this.retryMs };
    if (!this.down) this.opts.log.warn(fields, 'PostgreSQL LISTEN connection lost; reconnecting');
    else this.opts.log.debug(fields, 'PostgreSQL LISTEN connection: still unavailable');
    this.down = true;
    if (this.retryTimer !== undefined || this.stopped) return;
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect();
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, this.opts.retryMaxMs ?? 10_000);
  }

  private async drop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.ready = false;
    if (!client) return;
    client.removeAllListeners('notification');
    // Keep an error listener: a late socket error on a dropped client must not crash the process.
    client.removeAllListeners('error').on('error', () => {});
    client.removeAllListeners('end');
    // end() waits for the server to close its side, which a black-holed server never does. A real
    // timer on purpose: this bounds a socket, not a policy, and must not wait for a test's clock.
    let timer: NodeJS.Timeout | undefined;
    const slow = new Promise<'slow'>((resolve) => (timer = setTimeout(() => resolve('slow'), END_TIMEOUT_MS)));
    const outcome = await Promise.race([client.end().then(() => 'ended' as const, () => 'ended' as const), slow]);
    clearTimeout(timer);
    if (outcome === 'slow') (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  }
}
