/**
 * One Postfix policy connection. The session owns the socket, the decoder and the idle timer; it
 * hands the handler one request at a time and never starts the next before this one's reply is
 * written, so replies leave in request order and a slow handler slows the reader (backpressure).
 */
import type { Socket } from 'node:net';
import type { Logger } from '../core/log.ts';
import { encodeReply, PolicyDecoder, PolicyProtocolError } from './protocol/codec.ts';
import type { PolicyAttributes, PolicyContext, PolicyHandler } from './types.ts';

/** What a session reports; the server turns it into Prometheus metrics (or nothing). */
export interface PolicySessionMetrics {
  sessionOpened(): void;
  sessionClosed(): void;
  /** answered; failed (the handler threw: no reply); abandoned (the peer left before the reply). */
  request(outcome: 'answered' | 'failed' | 'abandoned'): void;
  error(kind: 'protocol' | 'handler' | 'idle_timeout'): void;
}

export interface PolicySessionOptions {
  connId: string;
  maxLineBytes: number;
  maxAttributes: number;
  idleTimeoutMs: number;
  /** Already a child logger carrying `conn`. */
  log: Logger;
  metrics?: PolicySessionMetrics;
}

/**
 * Requests decoded but not yet answered before we stop reading. Postfix sends one request and
 * waits, so only a pipelining client (our benchmark) ever queues; the cap, plus what one socket
 * read can hold, bounds its memory.
 */
const MAX_QUEUED_REQUESTS = 32;

export class PolicySession {
  readonly connId: string;
  private readonly decoder: PolicyDecoder;
  /** Requests waiting for the handler, in order; a protocol error found while decoding goes last. */
  private readonly queue: Array<PolicyAttributes | PolicyProtocolError> = [];
  private readonly log: Logger;
  private running = false;
  private closed = false;
  /** Garbage seen: read nothing more, answer what came before it, then drop the connection. */
  private failed = false;
  private draining = false;
  /** Our reply is stuck behind ones the peer has not read. */
  private waitingForPeer = false;
  private requestNo = 0;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    private readonly socket: Socket,
    private readonly handler: PolicyHandler,
    private readonly opts: PolicySessionOptions,
  ) {
    this.connId = opts.connId;
    this.log = opts.log;
    this.decoder = new PolicyDecoder({ maxLineBytes: opts.maxLineBytes, maxAttributes: opts.maxAttributes });
    this.closedPromise = new Promise((r) => (this.resolveClosed = r));
    // Small request/reply pairs: Nagle would hold our reply for the ACK of the previous one.
    socket.setNoDelay(true);
    socket.setTimeout(opts.idleTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('timeout', () => this.onIdle());
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'policy socket error'));
    socket.on('close', () => this.finish());
    opts.metrics?.sessionOpened();
  }

  /** Resolves when the connection is gone. */
  get done(): Promise<void> {
    return this.closedPromise;
  }

  /** A request is with the handler or waiting for it. */
  get busy(): boolean {
    return this.running || this.queue.length > 0;
  }

  get requests(): number {
    return this.requestNo;
  }

  /** Graceful stop: read nothing new, answer what was already received, then close. */
  drain(): void {
    if (this.closed) return;
    this.draining = true;
    this.socket.pause();
    if (!this.running) this.close('shutdown');
  }

  /** Close after flushing our replies; nothing is owed to the peer. */
  close(reason: string): void {
    if (this.closed) return;
    this.log.debug({ reason, requests: this.requestNo }, 'closing policy connection');
    this.finish();
    this.socket.end();
    // Read (and drop) until the peer's FIN so the socket closes now, not when the timer fires.
    this.socket.resume();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  /**
   * Drop the connection at once, without a reply: SMTPD_POLICY_README's answer to trouble. Postfix
   * then retries on a new connection and, failing that, answers its client with a 4xx.
   */
  destroy(reason: string): void {
    if (this.closed) return;
    this.log.debug({ reason, requests: this.requestNo }, 'dropping policy connection');
    this.socket.destroy();
    this.finish();
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.failed) return;
    let requests: PolicyAttributes[];
    let failure: PolicyProtocolError | undefined;
    try {
      requests = this.decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof PolicyProtocolError)) throw err;
      requests = err.requestsBefore;
      failure = err;
    }
    for (const r of requests) this.queue.push(r);
    if (failure) {
      this.queue.push(failure);
      this.failed = true;
      this.socket.pause();
    } else if (this.queue.length >= MAX_QUEUED_REQUESTS) {
      this.socket.pause();
    }
    if (!this.running && this.queue.length > 0) void this.run();
  }

  private onIdle(): void {
    // A handler still working is not idle: Postfix is waiting for our answer. A peer that has
    // stopped reading our replies is, or it would hold this session forever.
    if (this.running && !this.waitingForPeer) return;
    this.log.info({ idleMs: this.opts.idleTimeoutMs, requests: this.requestNo }, 'idle policy connection timed out');
    this.opts.metrics?.error('idle_timeout');
    // Replies the peer will not read cannot be flushed: do not wait for them.
    if (this.waitingForPeer) this.destroy('idle timeout');
    else this.close('idle timeout');
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const item = this.queue.shift()!;
        if (item instanceof PolicyProtocolError) {
          this.protocolError(item);
          return;
        }
        if (!(await this.answer(item))) return;
        if (this.queue.length <= MAX_QUEUED_REQUESTS / 2 && !this.failed && !this.draining && this.socket.isPaused()) this.socket.resume();
      }
    } finally {
      this.running = false;
    }
    if (this.draining) this.close('shutdown');
  }

  /** Run the handler for one request and write its reply. False when the connection is gone. */
  private async answer(attrs: PolicyAttributes): Promise<boolean> {
    const requestNo = ++this.requestNo;
    let reply: Buffer;
    try {
      reply = encodeReply(await this.handler.request(attrs, this.context(requestNo)));
    } catch (err) {
      if (this.closed) return this.abandoned(requestNo);
      // Never a made-up answer: no reply makes Postfix apply its own default (a 4xx), and the
      // error stays in this one connection.
      this.log.error({ err, requestNo }, 'policy handler failed; closing without a reply');
      this.opts.metrics?.error('handler');
      this.opts.metrics?.request('failed');
      this.destroy('handler failed');
      return false;
    }
    if (this.closed) return this.abandoned(requestNo);
    this.opts.metrics?.request('answered');
    if (!this.socket.write(reply)) await this.writable();
    return !this.closed;
  }

  private abandoned(requestNo: number): false {
    this.log.debug({ requestNo }, 'peer gone before the policy reply');
    this.opts.metrics?.request('abandoned');
    return false;
  }

  /** A peer that does not read our replies stops us reading its requests. */
  private writable(): Promise<void> {
    this.waitingForPeer = true;
    return new Promise((resolve) => {
      const done = () => {
        this.waitingForPeer = false;
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** The handler's view; the per-request child logger is made only if the handler logs. */
  private context(requestNo: number): PolicyContext {
    const base = this.log;
    let child: Logger | undefined;
    return {
      conn: this.connId,
      requestNo,
      get log() {
        return (child ??= base.child({ requestNo }));
      },
    };
  }

  private protocolError(err: PolicyProtocolError): void {
    this.log.warn({ reason: err.reason, detail: err.message, requests: this.requestNo }, 'policy protocol error; closing without a reply');
    this.opts.metrics?.error('protocol');
    this.destroy('protocol error');
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.opts.metrics?.sessionClosed();
    this.resolveClosed();
  }
}
