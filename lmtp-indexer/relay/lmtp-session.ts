/**
 * One LMTP connection to Dovecot: owns the socket, the reply decoder and the one timer (the codec
 * never writes), and turns every way the conversation can end early into a RelayFailure carrying
 * the 451 each unanswered recipient gets (codes as RFC 3463: see dovecot-client.ts).
 */
import net from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { formatListen, type ListenAddress } from '../../core/listen.ts';
import type { RecipientReply } from '../types.ts';
import { DotStuffer, ReplyDecoder, ReplyProtocolError, type SmtpReply } from './reply-codec.ts';

export type FailureKind = 'unreachable' | 'timeout' | 'closed' | 'protocol' | 'refused' | 'body' | 'internal';

/** Why the conversation ended early, with the reply every unanswered recipient gets. */
export class RelayFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    readonly reply: RecipientReply,
  ) {
    super(`${reply.code} ${reply.enhanced ?? ''} ${reply.message}`);
  }
}

export const deferral = (kind: FailureKind, enhanced: string, message: string): RelayFailure => new RelayFailure(kind, { code: 451, enhanced, message });

type WaitKind = 'connect' | 'reply' | 'drain';

/** Owns the socket, the decoder and the one timer; the codec never writes. */
export class LmtpSession {
  readonly where: string;
  private socket: net.Socket | undefined;
  private connected = false;
  private readonly decoder = new ReplyDecoder();
  private readonly queue: SmtpReply[] = [];
  private pending: { kind: WaitKind; resolve: () => void; reject: (f: RelayFailure) => void } | undefined;
  private failure: RelayFailure | undefined;
  private stage = 'connect';
  /** LHLO capabilities, once the handshake is done. */
  caps: Map<string, string[]> | undefined;
  /** Transactions completed on this connection. */
  transactions = 0;
  idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly address: ListenAddress,
    private readonly timeoutMs: number,
    /** More unread replies than the conversation can produce means the peer is not answering us. */
    public maxQueued: number,
  ) {
    this.where = formatListen(address);
  }

  connect(): Promise<void> {
    const a = this.address;
    const socket = a.kind === 'unix' ? net.connect(a.path) : net.connect(a.port, a.host);
    this.socket = socket;
    socket.on('connect', () => {
      this.connected = true;
      // Commands are small and each waits for an answer: Nagle would only add delay.
      if (a.kind === 'tcp') socket.setNoDelay(true);
      this.wake('connect');
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.wake('drain'));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code ?? err.message;
      this.fail(
        this.connected
          ? deferral('closed', '4.4.2', `Dovecot LMTP at ${this.where}: connection lost during ${this.stage} (${why}); will retry`)
          : deferral('unreachable', '4.4.1', `Dovecot LMTP at ${this.where} unreachable (${why}); will retry`),
      );
    });
    socket.on('close', () => this.fail(deferral('closed', '4.4.2', `Dovecot LMTP at ${this.where} closed the connection during ${this.stage}; will retry`)));
    return this.wait('connect', 'connect');
  }

  /** Connected, not failed, and nothing unread: a later transaction may use it. */
  get reusable(): boolean {
    return this.failure === undefined && this.socket !== undefined && !this.socket.destroyed && this.queue.length === 0;
  }

  /** While idle in the pool the socket must not keep the process alive. */
  setIdle(idle: boolean): void {
    if (idle) this.socket?.unref();
    else this.socket?.ref();
  }

  send(text: string): void {
    if (this.failure) throw this.failure;
    this.socket!.write(text, 'utf8');
  }

  /** The next reply; replies that arrived before a failure are still handed out first. */
  async next(stage: string): Promise<SmtpReply> {
    if (this.queue.length === 0) await this.wait('reply', stage);
    return this.queue.shift()!;
  }

  /** Streams the dot-stuffed body with backpressure; never sends the terminator after a short body. */
  async sendBody(makeBody: () => Readable): Promise<void> {
    if (this.failure) throw this.failure;
    const socket = this.socket!;
    try {
      await pipeline(makeBody(), new DotStuffer(), async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) {
          if (this.failure) throw this.failure;
          if (!socket.write(chunk)) await this.wait('drain', 'DATA (sending the message)');
        }
      });
    } catch (err) {
      if (err instanceof RelayFailure) throw err;
      if (this.failure) throw this.failure;
      // Our source failed: closing without the terminator makes Dovecot drop the partial message.
      const f = deferral('body', '4.3.0', `could not read the message to relay to Dovecot: ${(err as Error).message}; will retry`);
      this.fail(f);
      throw f;
    }
  }

  /** QUIT and a clean close; problems here change no result, the answers are already final. */
  async quit(): Promise<void> {
    try {
      this.send('QUIT\r\n');
      await this.next('QUIT');
    } catch {
      // already failed or closed: nothing left to say
    }
    this.close();
  }

  close(): void {
    const s = this.socket;
    if (!s || s.destroyed) return;
    s.end();
    // A peer that never closes its side must not keep the socket around.
    const t = setTimeout(() => s.destroy(), this.timeoutMs).unref();
    s.once('close', () => clearTimeout(t));
  }

  private wait(kind: WaitKind, stage: string): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    this.stage = stage;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(
          kind === 'connect'
            ? deferral('unreachable', '4.4.1', `Dovecot LMTP at ${this.where} did not accept a connection within ${this.timeoutMs} ms; will retry`)
            : deferral('timeout', '4.4.2', `Dovecot LMTP at ${this.where} did not answer ${stage} within ${this.timeoutMs} ms; will retry`),
        );
      }, this.timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.pending = undefined;
      };
      this.pending = {
        kind,
        resolve: () => (done(), resolve()),
        reject: (f) => (done(), reject(f)),
      };
    });
  }

  private wake(kind: WaitKind): void {
    if (this.pending?.kind === kind) this.pending.resolve();
  }

  private onData(chunk: Buffer): void {
    if (this.failure) return;
    let bad: ReplyProtocolError | undefined;
    try {
      this.queue.push(...this.decoder.push(chunk));
    } catch (err) {
      if (!(err instanceof ReplyProtocolError)) throw err;
      this.queue.push(...err.repliesBefore);
      bad = err;
    }
    if (this.queue.length > 0) this.wake('reply');
    if (bad) this.fail(deferral('protocol', '4.5.0', `Dovecot LMTP at ${this.where} sent an invalid reply during ${this.stage} (${bad.message}); will retry`));
    else if (this.queue.length > this.maxQueued) this.fail(deferral('protocol', '4.5.0', `Dovecot LMTP at ${this.where} sent replies nobody asked for during ${this.stage}; will retry`));
  }

  private fail(f: RelayFailure): void {
    if (this.failure) return;
    this.failure = f;
    this.socket?.destroy();
    this.pending?.reject(f);
  }
}

