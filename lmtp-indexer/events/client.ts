/**
 * A small client for `/events` (see websocket.ts for the protocol), for tests and `pnpm mail:test`:
 * connect, collect events, wait for a seq, resume from the cursor after a disconnect.
 */
import WebSocket, { type ClientOptions } from 'ws';
import type { MailEventKind } from '../types.ts';

export interface EventFrame {
  seq: number;
  kind: MailEventKind;
  messageRow: number | null;
  payload: Record<string, unknown>;
  createdAt: string;
}

export interface EventsClientOptions {
  /** The indexer's HTTP API, e.g. `http://127.0.0.1:10043` (ws:// works too). */
  url: string;
  token: string;
  /** Replay the events after this seq first. */
  since?: number;
  /** Send the token as `?access_token=`, as a browser must, instead of a header. */
  tokenInQuery?: boolean;
  /** Give up on the handshake and the hello frame after this long (default 5 s). */
  timeoutMs?: number;
  /** Passed to ws, e.g. `{ autoPong: false }` to play a dead peer. */
  ws?: ClientOptions;
}

/** The server refused the upgrade (401, 400, 429, 503) or the handshake failed. */
export class EventsClientError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'EventsClientError';
  }
}

export interface CloseInfo {
  code: number;
  reason: string;
}

export class EventsClient {
  /** Every event received, in arrival order. */
  readonly events: EventFrame[] = [];
  /** The seq of the hello frame: the account's newest event when the server subscribed us. */
  helloSeq = -1;
  /** Frames that were neither hello nor an event (protocol errors, for tests to assert on). */
  readonly unexpected: string[] = [];
  readonly closed: Promise<CloseInfo>;
  private last: number;
  private waiters: Array<() => void> = [];

  private constructor(
    readonly socket: WebSocket,
    private readonly opts: EventsClientOptions,
  ) {
    this.last = opts.since ?? -1;
    this.closed = new Promise((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    void this.closed.then(() => this.wake());
    socket.on('message', (data, isBinary) => this.receive(isBinary ? '' : data.toString()));
  }

  /** Connects and resolves once the hello frame arrived. */
  static connect(opts: EventsClientOptions): Promise<EventsClient> {
    const url = new URL('/events', opts.url.replace(/^http/, 'ws'));
    if (opts.since !== undefined) url.searchParams.set('since', String(opts.since));
    if (opts.tokenInQuery) url.searchParams.set('access_token', opts.token);
    const headers: Record<string, string> = opts.tokenInQuery ? {} : { authorization: `Bearer ${opts.token}` };
    const socket = new WebSocket(url, { ...opts.ws, headers: { ...opts.ws?.headers, ...headers }, perMessageDeflate: false });
    const client = new EventsClient(socket, opts);
    const timeoutMs = opts.timeoutMs ?? 5_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.terminate();
        reject(new EventsClientError(`no hello within ${timeoutMs} ms`));
      }, timeoutMs);
      const fail = (err: EventsClientError): void => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('unexpected-response', (_req, res) => {
        const status = res.statusCode ?? 0;
        res.resume();
        socket.terminate();
        fail(new EventsClientError(`server refused the connection: HTTP ${status}`, status));
      });
      socket.once('error', (err) => fail(new EventsClientError(err.message)));
      client.closed.then((c) => fail(new EventsClientError(`closed before hello: ${c.code} ${c.reason}`)));
      client.onHello = () => {
        clearTimeout(timer);
        socket.on('error', () => {}); // after hello, failures show as `closed`
        resolve(client);
      };
    });
  }

  private onHello: (() => void) | undefined;

  /** The resume cursor: the last seq received (the hello seq before any event, or `since`). */
  get cursor(): number {
    return this.last;
  }

  /** Resolves when an event with seq ≥ `seq` has arrived; rejects on close or timeout. */
  waitForSeq(seq: number, timeoutMs = 10_000): Promise<void> {
    return this.waitUntil(() => this.last >= seq, `seq ${seq}`, timeoutMs);
  }

  /** Resolves when `count` events have arrived in all. */
  waitForCount(count: number, timeoutMs = 10_000): Promise<void> {
    return this.waitUntil(() => this.events.length >= count, `${count} events`, timeoutMs);
  }

  /** A new connection replaying from this one's cursor (close this one first, or let the server). */
  resume(overrides: Partial<EventsClientOptions> = {}): Promise<EventsClient> {
    return EventsClient.connect({ ...this.opts, since: this.cursor, ...overrides });
  }

  async close(): Promise<CloseInfo> {
    if (this.socket.readyState === WebSocket.OPEN || this.socket.readyState === WebSocket.CONNECTING) this.socket.close(1000);
    return this.closed;
  }

  private receive(text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      this.unexpected.push(text);
      return;
    }
    const m = msg as Partial<EventFrame> & { type?: unknown };
    if (m.type === 'hello' && typeof m.seq === 'number') {
      this.helloSeq = m.seq;
      if (this.last < 0) this.last = m.seq;
      this.onHello?.();
      this.onHello = undefined;
    } else if (m.type === undefined && typeof m.seq === 'number' && typeof m.kind === 'string') {
      this.events.push(m as EventFrame);
      this.last = Math.max(this.last, m.seq);
    } else {
      this.unexpected.push(text);
    }
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private waitUntil(done: () => boolean, what: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new EventsClientError(`waited ${timeoutMs} ms for ${what}; cursor ${this.last}, ${this.events.length} events`)), timeoutMs);
      const check = (): void => {
        if (done()) {
          clearTimeout(timer);
          resolve();
        } else if (this.socket.readyState === WebSocket.CLOSED) {
          clearTimeout(timer);
          reject(new EventsClientError(`closed while waiting for ${what}; cursor ${this.last}`));
        } else {
          this.waiters.push(check);
        }
      };
      check();
    });
  }
}
