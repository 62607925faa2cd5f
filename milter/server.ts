/**
 * The milter listener: accepts MTA connections on TCP or a unix socket and gives each its own
 * MilterSession. Shutdown stops accepting, lets in-flight messages finish (bounded), then
 * force-closes what is left.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { formatListen, type ListenAddress } from '../core/listen.ts';
import type { Logger } from '../core/log.ts';
import type { MilterHandlerFactory } from './handler.ts';
import type { MilterMetrics } from './metrics.ts';
import { MilterSession } from './session.ts';
import { prepareSocketPath } from '../core/unix-socket.ts';

export interface MilterServerOptions {
  listen: ListenAddress;
  socketMode: number;
  maxFrameBytes: number;
  idleTimeoutMs: number;
  progressIntervalMs: number;
  shutdownGraceMs: number;
  /** auto: no-reply stages over unix sockets only (see protocol/negotiate.ts). */
  noReply: 'auto' | 'always' | 'never';
  log: Logger;
  metrics: MilterMetrics;
  handlerFactory: MilterHandlerFactory;
}

export class MilterServer {
  private readonly server: net.Server;
  private readonly sessions = new Set<MilterSession>();
  private stopping: Promise<void> | undefined;

  constructor(private readonly opts: MilterServerOptions) {
    this.server = net.createServer((socket) => this.onConnection(socket));
    this.server.on('error', (err) => opts.log.error({ err }, 'milter listener error'));
  }

  /** The bound address in Postfix notation (with the real port when 0 was asked for). */
  get address(): string {
    const a = this.server.address();
    if (this.opts.listen.kind === 'unix' || !a || typeof a === 'string') return formatListen(this.opts.listen);
    return formatListen({ kind: 'tcp', host: this.opts.listen.host, port: a.port });
  }

  get port(): number {
    const a = this.server.address();
    return a && typeof a === 'object' ? a.port : 0;
  }

  get activeSessions(): number {
    return this.sessions.size;
  }

  async start(): Promise<string> {
    const l = this.opts.listen;
    if (l.kind === 'unix') await prepareSocketPath(l.path);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      const done = () => {
        this.server.off('error', reject);
        resolve();
      };
      if (l.kind === 'unix') this.server.listen(l.path, done);
      else this.server.listen(l.port, l.host, done);
    });
    // Postfix's smtpd runs as user postfix and needs write permission on the socket.
    if (l.kind === 'unix') chmodSync(l.path, this.opts.socketMode);
    this.opts.log.info({ listen: this.address }, 'milter listening');
    return this.address;
  }

  private onConnection(socket: net.Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const connId = randomBytes(5).toString('hex');
    const log = this.opts.log.child({ conn: connId });
    log.debug({ peer: socket.remoteAddress ?? 'unix' }, 'MTA connected');
    const session = new MilterSession(socket, this.opts.handlerFactory, {
      connId,
      maxFrameBytes: this.opts.maxFrameBytes,
      idleTimeoutMs: this.opts.idleTimeoutMs,
      progressIntervalMs: this.opts.progressIntervalMs,
      useNoReply: this.opts.noReply === 'always' || (this.opts.noReply === 'auto' && this.opts.listen.kind === 'unix'),
      ackSegments: this.opts.listen.kind === 'tcp',
      log,
      metrics: this.opts.metrics,
    });
    this.sessions.add(session);
    void session.done.then(() => this.sessions.delete(session));
  }

  /** Stop accepting, let sessions finish their current message, force-close after the grace period. */
  stop(graceMs = this.opts.shutdownGraceMs): Promise<void> {
    this.stopping ??= (async () => {
      const closed = new Promise<void>((r) => this.server.close(() => r()));
      const busy = [...this.sessions].filter((s) => s.busy).length;
      this.opts.log.info({ sessions: this.sessions.size, busy, graceMs }, 'milter stopping');
      for (const s of this.sessions) s.drain();
      const all = Promise.all([...this.sessions].map((s) => s.done));
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<'expired'>((r) => (timer = setTimeout(() => r('expired'), graceMs)));
      timer?.unref();
      if ((await Promise.race([all, expired])) === 'expired') {
        this.opts.log.warn({ sessions: this.sessions.size }, 'grace period over, closing remaining milter sessions');
        for (const s of this.sessions) s.destroy('shutdown grace expired');
      }
      clearTimeout(timer);
      await closed;
      if (this.opts.listen.kind === 'unix' && existsSync(this.opts.listen.path)) unlinkSync(this.opts.listen.path);
    })();
    return this.stopping;
  }
}
