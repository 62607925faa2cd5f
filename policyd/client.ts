/**
 * A policy client: speaks Postfix's side of the policy delegation protocol, for tests and
 * benchmarks driving `ceerion policyd` (or any policy server) over TCP or a unix socket. Requests
 * may be pipelined; replies are matched to them first in, first out.
 */
import net from 'node:net';
import { parseListen, type ListenAddress } from '../core/listen.ts';
import { encodeRequest, PolicyDecoder } from './protocol/codec.ts';

type Waiter = { resolve: (action: string) => void; reject: (e: Error) => void };

export class PolicyClient {
  /** Replies are one short line; the caps only stop a broken server from filling our memory. */
  private readonly decoder = new PolicyDecoder({ maxLineBytes: 64 * 1024, maxAttributes: 16 });
  private readonly waiters: Waiter[] = [];
  private error: Error | undefined;
  /** The socket error that preceded the close, for the message outstanding requests get. */
  private cause: Error | undefined;
  private readonly closedPromise: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => (this.cause ??= err));
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        const n = this.waiters.length;
        const why = this.cause ? ` (${this.cause.message})` : '';
        this.fail(new Error(`policy connection closed with ${n} request${n === 1 ? '' : 's'} outstanding${why}`, { cause: this.cause }));
        resolve();
      }),
    );
  }

  static connect(address: string | ListenAddress, timeoutMs = 5000): Promise<PolicyClient> {
    const addr = typeof address === 'string' ? parseListen(address) : address;
    return new Promise((resolve, reject) => {
      const socket = addr.kind === 'unix' ? net.connect(addr.path) : net.connect(addr.port, addr.host);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to policy service timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      // A refused connection must clear the timer too, or it keeps the process alive for timeoutMs.
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', onError);
        resolve(new PolicyClient(socket));
      });
      socket.once('error', onError);
    });
  }

  get closed(): boolean {
    return this.error !== undefined;
  }

  /** Requests sent and not yet answered. */
  get outstanding(): number {
    return this.waiters.length;
  }

  /** Resolves when the socket has closed (either side). */
  waitClosed(): Promise<void> {
    return this.closedPromise;
  }

  /** Send one request; resolves with the action text (without `action=`). */
  request(attrs: Readonly<Record<string, string>>): Promise<string> {
    if (this.error) return Promise.reject(new Error('policy connection is closed', { cause: this.error }));
    let bytes: Buffer;
    try {
      bytes = encodeRequest(attrs);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const p = new Promise<string>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.write(bytes);
    return p;
  }

  /** A request already encoded with encodeRequest (benchmarks reuse them); resolves with the action. */
  requestEncoded(bytes: Buffer): Promise<string> {
    if (this.error) return Promise.reject(new Error('policy connection is closed', { cause: this.error }));
    const p = new Promise<string>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.write(bytes);
    return p;
  }

  /** Raw bytes, for protocol-error tests. Expects no reply. */
  sendRaw(bytes: Buffer): void {
    if (this.error) throw this.error;
    this.write(bytes);
  }

  /** Half-close and wait for the server to close; outstanding requests are rejected. */
  async close(): Promise<void> {
    this.socket.end();
    await this.closedPromise;
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Requests made in the same tick leave in one segment: that is what pipelining looks like. */
  private write(bytes: Buffer): void {
    this.socket.cork();
    this.socket.write(bytes);
    process.nextTick(() => this.socket.uncork());
  }

  private onData(chunk: Buffer): void {
    try {
      for (const reply of this.decoder.push(chunk)) {
        const w = this.waiters.shift();
        if (!w) throw new Error('policy reply with no request outstanding');
        const action = reply.action;
        // Postfix treats a reply without action= as a server error; so do we.
        if (action === undefined) w.reject(new Error(`policy reply without action: ${JSON.stringify({ ...reply })}`));
        else w.resolve(action);
      }
    } catch (err) {
      this.fail(err as Error);
      this.socket.destroy();
    }
  }

  private fail(err: Error): void {
    this.error ??= err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}
