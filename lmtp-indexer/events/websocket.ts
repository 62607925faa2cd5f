/**
 * `GET /events` (WebSocket): the authenticated account's mail events, live, with a resume cursor.
 *
 * Protocol (server → client only; every frame is one JSON text message):
 * - Auth before the upgrade: `Authorization: Bearer <token>` or `?access_token=<token>` (browsers
 *   cannot set headers on a WebSocket). Missing or bad token: HTTP 401; bad `since`: 400; too many
 *   connections for the account: 429; PostgreSQL unreachable or shutting down: 503.
 * - First frame, always: `{"type":"hello","seq":N}`, N being the account's newest event as of the
 *   subscription. Keep it as the cursor when nothing follows.
 * - Then events `{seq, kind, messageRow, payload, createdAt}`, strictly seq+1 after seq+1.
 * - `?since=S` (a seq the client received before): the events after S up to N are replayed from
 *   mail_events first, then live ones follow, with no gap and no duplicate. Resuming is a URL
 *   parameter rather than a first client message so the replay needs no extra round trip, and a
 *   browser's plain `new WebSocket(url)` can do it.
 * - The client sends nothing: a data message is answered with close 1003. Incoming frames are capped
 *   at maxPayloadBytes (ws closes with 1009 above it).
 * - Close codes: 4001 fell too far behind (reconnect with since=<last seq received>); 4410 the
 *   cursor is unusable (ahead of the server, or the events after it were deleted: reload state,
 *   reconnect without since); 1001 server shutting down; 1013 events unavailable, retry later.
 * - The server pings every pingIntervalMs and terminates a peer that missed a whole interval.
 *
 * Exact switch-over: the hub's subscription starts at N and delivers every event after N. The replay
 * reads the table up to N. Live events arriving meanwhile wait in a buffer, and are sent after it.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type pg from 'pg';
import { WebSocketServer, type ServerOptions, type WebSocket } from 'ws';
import type { Logger } from '../../core/log.ts';
import { tokenFromRequest, verifyToken } from '../auth/tokens.ts';
import type { RouteContext, UpgradeHandler } from '../http/route.ts';
import type { MailEvent } from '../types.ts';
import type { EventHub, Subscription } from './hub.ts';
import { eventsAfter } from './store.ts';

export const EVENTS_PATH = '/events';

/** Application close codes (4000–4999 are ours under RFC 6455). */
export const CLOSE_RESUME = 4001;
export const CLOSE_CURSOR_UNUSABLE = 4410;

export interface EventsEndpointOptions {
  /** Token lookups and replays. */
  pool: pg.Pool;
  hub: EventHub;
  /** Keepalive ping interval; a peer that has not answered the previous ping is terminated (default 30 s). */
  pingIntervalMs?: number;
  /** A client whose unsent data exceeds this is closed with 4001 (default 1 MiB). */
  maxBufferedBytes?: number;
  /** Live events held while a replay runs; beyond this the client is closed with 4001 (default 10,000). */
  maxPendingEvents?: number;
  /** Largest incoming frame (default 1 KiB: clients have nothing to say). */
  maxPayloadBytes?: number;
  /** Events read per replay query (default 500). */
  replayBatch?: number;
  /** Connections per account (default 50). */
  maxConnectionsPerAccount?: number;
  /** A close handshake the peer does not finish within this ends in a terminate (default 5 s). */
  closeTimeoutMs?: number;
}

export type EventsRequest = { ok: true; token: string; since: number | undefined } | { ok: false; status: 400 | 401; error: string };

const SEQ = /^(0|[1-9][0-9]{0,15})$/;

/** Pure: what the upgrade request asks for. Never throws, whatever the client sent. */
export function parseEventsRequest(headers: { authorization?: string }, url: URL): EventsRequest {
  const token = tokenFromRequest(headers, url);
  if (!token) return { ok: false, status: 401, error: 'missing token (Authorization: Bearer, or ?access_token=)' };
  const values = url.searchParams.getAll('since');
  if (values.length === 0) return { ok: true, token, since: undefined };
  const raw = values[0]!;
  if (values.length > 1 || !SEQ.test(raw) || !Number.isSafeInteger(Number(raw))) {
    return { ok: false, status: 400, error: 'since must be one non-negative integer (the last seq received)' };
  }
  return { ok: true, token, since: Number(raw) };
}

/** The frame a client receives for an event: the row without the account it already knows. */
export function eventFrame(e: MailEvent): string {
  return JSON.stringify({ seq: e.seq, kind: e.kind, messageRow: e.messageRow, payload: e.payload, createdAt: e.createdAt });
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 429: 'Too Many Requests', 503: 'Service Unavailable' };

/** An HTTP answer on the raw socket: the request never became a WebSocket. */
function refuse(socket: Duplex, status: number, error: string): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error });
  const auth = status === 401 ? 'WWW-Authenticate: Bearer\r\n' : '';
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Cache-Control: no-store\r\n${auth}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/**
 * The `/events` upgrade handler. Keep it: close() must run before the HTTP server's stop, which
 * otherwise waits for open WebSockets forever, and before hub.stop().
 */
export function eventsUpgrade(opts: EventsEndpointOptions): EventsEndpoint {
  return new EventsEndpoint(opts);
}

export class EventsEndpoint implements UpgradeHandler {
  readonly path = EVENTS_PATH;
  private readonly wss: WebSocketServer;
  private readonly sessions = new Set<EventSession>();
  private readonly perAccount = new Map<string, number>();
  private readonly pingTimer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;
  /** Frames serialised once per event, however many clients of the account are connected. */
  private readonly frames = new WeakMap<MailEvent, string>();
  /** Counters for tests and diagnostics. */
  readonly stats = { opened: 0, refused: 0, resumeClosed: 0, deadPeers: 0, replayed: 0, heldDuringReplay: 0 };

  constructor(readonly opts: EventsEndpointOptions) {
    // closeTimeout is a ws 8 server option its type definitions lack.
    const options: ServerOptions & { closeTimeout: number } = {
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: opts.maxPayloadBytes ?? 1024,
      closeTimeout: opts.closeTimeoutMs ?? 5_000,
    };
    this.wss = new WebSocketServer(options);
    this.pingTimer = setInterval(() => this.keepalive(), opts.pingIntervalMs ?? 30_000);
    this.pingTimer.unref();
  }

  get connections(): number {
    return this.sessions.size;
  }

  frame(e: MailEvent): string {
    let f = this.frames.get(e);
    if (f === undefined) this.frames.set(e, (f = eventFrame(e)));
    return f;
  }

  handle(req: IncomingMessage, socket: Duplex, head: Buffer, ctx: RouteContext): void {
    const conn = randomBytes(5).toString('hex');
    const log = ctx.log.child({ conn });
    // Until ws owns the socket, a reset while we look the token up must not become an uncaught error.
    const early = (err: Error): void => log.debug({ err: err.message }, 'events: socket error before the upgrade');
    socket.on('error', early);
    const no = (status: number, error: string, account?: string): void => {
      this.stats.refused++;
      log.info({ status, account, error }, 'events: connection refused');
      refuse(socket, status, error);
    };
    if (this.closing) return no(503, 'shutting down');
    const request = parseEventsRequest(req.headers, ctx.url);
    if (!request.ok) return no(request.status, request.error);
    verifyToken(this.opts.pool, request.token).then(
      (account) => {
        if (!account) return no(401, 'invalid or revoked token');
        if (this.closing) return no(503, 'shutting down');
        if ((this.perAccount.get(account) ?? 0) >= (this.opts.maxConnectionsPerAccount ?? 50)) return no(429, 'too many event connections for this account', account);
        if (socket.destroyed) return;
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          socket.off('error', early);
          this.open(ws, account, request.since, log.child({ account }));
        });
      },
      (err: Error) => {
        log.warn({ err: err.message }, 'events: token lookup failed');
        no(503, 'cannot check the token now; retry later');
      },
    );
  }

  private open(ws: WebSocket, account: string, since: number | undefined, log: Logger): void {
    this.stats.opened++;
    this.perAccount.set(account, (this.perAccount.get(account) ?? 0) + 1);
    const session = new EventSession(ws, account, since, this, log);
    this.sessions.add(session);
    ws.once('close', (code, reason) => {
      this.sessions.delete(session);
      const left = (this.perAccount.get(account) ?? 1) - 1;
      if (left > 0) this.perAccount.set(account, left);
      else this.perAccount.delete(account);
      log.info({ code, reason: reason.toString(), lastSeq: session.lastSent }, 'events: client disconnected');
    });
    void session.run();
  }

  private keepalive(): void {
    for (const s of this.sessions) {
      if (!s.alive) {
        this.stats.deadPeers++;
        s.log.info({ lastSeq: s.lastSent }, 'events: no pong to the last ping; terminating');
        s.ws.terminate();
        continue;
      }
      s.alive = false;
      s.ws.ping();
    }
  }

  /** Refuse new clients, close the open ones with 1001, terminate those that don't finish closing. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.pingTimer);
      const gone = [...this.sessions].map((s) => {
        const closed = new Promise<void>((resolve) => s.ws.once('close', () => resolve()));
        s.close(1001, 'server shutting down; reconnect with since');
        return closed;
      });
      // A peer that never answers the close frame is terminated by ws after closeTimeoutMs.
      await Promise.all(gone);
      this.wss.close();
    })();
    return this.closing;
  }
}

class EventSession {
  alive = true;
  /** The last seq sent (the cursor the client will hold once it has read everything). */
  lastSent = 0;
  private phase: 'starting' | 'replaying' | 'live' | 'closed' = 'starting';
  private pending: MailEvent[] = [];
  private sub: Subscription | undefined;
  private readonly closed: Promise<void>;

  constructor(
    readonly ws: WebSocket,
    private readonly account: string,
    private readonly since: number | undefined,
    private readonly endpoint: EventsEndpoint,
    readonly log: Logger,
  ) {
    this.closed = new Promise((resolve) => ws.once('close', () => resolve()));
    ws.once('close', () => this.finish());
    ws.on('error', (err) => log.debug({ err: err.message }, 'events: socket error'));
    ws.on('pong', () => (this.alive = true));
    ws.on('message', () => this.close(1003, 'this endpoint only sends; resume with ?since='));
  }

  async run(): Promise<void> {
    const { hub, pool } = this.endpoint.opts;
    try {
      this.sub = await hub.subscribe(this.account, (e) => this.live(e));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'events: cannot subscribe');
      return this.close(1013, 'events unavailable; retry later');
    }
    if (this.phase === 'closed') return this.sub.unsubscribe();
    const now = this.sub.seq;
    this.ws.send(JSON.stringify({ type: 'hello', seq: now }));
    this.log.info({ since: this.since, seq: now }, 'events: client connected');
    if (this.since !== undefined && this.since > now) {
      return this.close(CLOSE_CURSOR_UNUSABLE, `since=${this.since} is ahead of the newest event (${now}); reconnect without since`);
    }
    this.lastSent = this.since ?? now;
    this.phase = 'replaying';
    try {
      await this.replay(now, pool);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, lastSeq: this.lastSent }, 'events: replay failed');
      return this.close(1013, 'replay failed; retry later with since');
    }
    if (this.phase !== 'replaying') return;
    this.phase = 'live';
    // Everything here is past `now` and in order: the hub delivers after its cursor only.
    const held = this.pending;
    this.pending = [];
    this.endpoint.stats.heldDuringReplay += held.length;
    for (const e of held) if (this.phase === 'live') this.send(e);
  }

  /**
   * Table reads up to `until`, a batch at a time; the next batch is read only once the previous one
   * reached the kernel, so a replay is paced by the client instead of piling up in memory.
   */
  private async replay(until: number, pool: pg.Pool): Promise<void> {
    const batch = this.endpoint.opts.replayBatch ?? 500;
    while (this.lastSent < until && this.phase === 'replaying') {
      const before = this.lastSent;
      const events = await eventsAfter(pool, this.account, before, batch);
      let written: Promise<void> | undefined;
      for (const e of events) {
        if (this.phase !== 'replaying' || e.seq > until || e.seq !== this.lastSent + 1) break;
        written = new Promise((resolve) => this.ws.send(this.endpoint.frame(e), () => resolve()));
        this.lastSent = e.seq;
        this.endpoint.stats.replayed++;
      }
      if (this.phase !== 'replaying') return;
      // Seqs are gap-free: no progress before `until` means the rows after the cursor were deleted.
      if (this.lastSent === before) {
        return this.close(CLOSE_CURSOR_UNUSABLE, `events after ${before} are no longer kept; reload and reconnect without since`);
      }
      await Promise.race([written, this.closed]);
    }
  }

  private live(e: MailEvent): void {
    if (this.phase === 'live') return this.send(e);
    if (this.phase === 'closed') return;
    this.pending.push(e);
    if (this.pending.length > (this.endpoint.opts.maxPendingEvents ?? 10_000)) this.tooSlow();
  }

  private send(e: MailEvent): void {
    this.ws.send(this.endpoint.frame(e));
    this.lastSent = e.seq;
    if (this.ws.bufferedAmount > (this.endpoint.opts.maxBufferedBytes ?? 1024 * 1024)) this.tooSlow();
  }

  private tooSlow(): void {
    this.endpoint.stats.resumeClosed++;
    this.log.info({ buffered: this.ws.bufferedAmount, pending: this.pending.length, lastSeq: this.lastSent }, 'events: client too far behind; closing');
    this.close(CLOSE_RESUME, 'too far behind; reconnect with since=<last seq received>');
  }

  close(code: number, reason: string): void {
    if (this.phase === 'closed') return;
    this.finish();
    this.ws.close(code, reason);
  }

  /** Stop sending and let go of the subscription and held events at once, not after the handshake. */
  private finish(): void {
    this.phase = 'closed';
    this.pending = [];
    this.sub?.unsubscribe();
  }
}
