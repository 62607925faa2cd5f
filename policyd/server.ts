/**
 * The policy listener: accepts Postfix's check_policy_service connections on TCP or a unix socket
 * and gives each its own PolicySession. Shutdown stops accepting, lets in-flight requests finish
 * (bounded by shutdownGraceMs), then force-closes what is left.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { PolicydConfig } from '../core/config/policyd.ts';
import { formatListen, parseListen, type ListenAddress } from '../core/listen.ts';
import type { Logger } from '../core/log.ts';
import { PolicySession, type PolicySessionMetrics } from './session.ts';
import type { PolicyHandler } from './types.ts';
import { prepareSocketPath } from '../core/unix-socket.ts';

export interface PolicyServerOptions extends Pick<PolicydConfig, 'maxLineBytes' | 'maxAttributes' | 'idleTimeoutMs' | 'shutdownGraceMs'> {
  /** Postfix notation: `inet:HOST:PORT` (port 0 picks one) or `unix:/path`. */
  listen: string | ListenAddress;
  handler: PolicyHandler;
  log: Logger;
  /** Metrics are registered here; none without it. */
  registry?: Registry;
  /** Unix socket permissions: Postfix's smtpd runs as user postfix and must be able to connect. */
  socketMode?: number;
  /**
   * A cluster worker: the cluster's primary owns the listening socket, so a unix socket is neither
   * checked for staleness (the other workers' listener is live) nor removed on stop.
   */
  sharedListener?: boolean;
}

/** Connection-level metrics; decisions are counted by the handler (decide.ts). */
export class PolicyServerMetrics implements PolicySessionMetrics {
  private readonly sessions: Counter;
  private readonly active: Gauge;
  private readonly requests: Counter<'outcome'>;
  private readonly errors: Counter<'kind'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.sessions = new Counter({ name: 'ceerion_policyd_sessions_total', help: 'Policy connections accepted', registers });
    this.active = new Gauge({ name: 'ceerion_policyd_sessions_active', help: 'Policy connections open now', registers });
    this.requests = new Counter({
      name: 'ceerion_policyd_requests_total',
      help: 'Policy requests by outcome: answered, failed (handler error, no reply), abandoned (peer left first)',
      labelNames: ['outcome'],
      registers,
    });
    this.errors = new Counter({
      name: 'ceerion_policyd_errors_total',
      help: 'Connections closed by an error, by kind: protocol, handler, idle_timeout',
      labelNames: ['kind'],
      registers,
    });
  }

  sessionOpened(): void {
    this.sessions.inc();
    this.active.inc();
  }
  sessionClosed(): void {
    this.active.dec();
  }
  request(outcome: 'answered' | 'failed' | 'abandoned'): void {
    this.requests.inc({ outcome });
  }
  error(kind: 'protocol' | 'handler' | 'idle_timeout'): void {
    this.errors.inc({ kind });
  }
}

export class PolicyServer {
  private readonly server: net.Server;
  private readonly listen: ListenAddress;
  private readonly sessions = new Set<PolicySession>();
  private readonly metrics: PolicyServerMetrics | undefined;
  private stopping: Promise<void> | undefined;
  /** Set once bound: a failed start must not unlink a socket that belongs to someone else. */
  private bound = false;

  constructor(private readonly opts: PolicyServerOptions) {
    this.listen = typeof opts.listen === 'string' ? parseListen(opts.listen) : opts.listen;
    this.metrics = opts.registry ? new PolicyServerMetrics(opts.registry) : undefined;
    this.server = net.createServer((socket) => this.onConnection(socket));
    this.server.on('error', (err) => opts.log.error({ err }, 'policy listener error'));
  }

  /** The bound address in Postfix notation (with the real port when 0 was asked for). */
  get address(): string {
    const a = this.server.address();
    if (this.listen.kind === 'unix' || !a || typeof a === 'string') return formatListen(this.listen);
    return formatListen({ kind: 'tcp', host: this.listen.host, port: a.port });
  }

  get activeSessions(): number {
    return this.sessions.size;
  }

  async start(): Promise<string> {
    const l = this.listen;
    if (l.kind === 'unix' && !this.opts.sharedListener) await prepareSocketPath(l.path);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      const done = () => {
        this.server.off('error', reject);
        resolve();
      };
      if (l.kind === 'unix') this.server.listen(l.path, done);
      else this.server.listen(l.port, l.host, done);
    });
    this.bound = true;
    if (l.kind === 'unix') chmodSync(l.path, this.opts.socketMode ?? 0o666);
    this.opts.log.info({ listen: this.address }, 'policy service listening');
    return this.address;
  }

  private onConnection(socket: net.Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const connId = randomBytes(5).toString('hex');
    const log = this.opts.log.child({ conn: connId });
    log.debug({ peer: socket.remoteAddress ?? 'unix' }, 'policy client connected');
    const session = new PolicySession(socket, this.opts.handler, {
      connId,
      maxLineBytes: this.opts.maxLineBytes,
      maxAttributes: this.opts.maxAttributes,
      idleTimeoutMs: this.opts.idleTimeoutMs,
      log,
      ...(this.metrics ? { metrics: this.metrics } : {}),
    });
    this.sessions.add(session);
    void session.done.then(() => this.sessions.delete(session));
  }

  /** Stop accepting, let sessions answer what they have received, force-close after the grace period. */
  stop(graceMs = this.opts.shutdownGraceMs): Promise<void> {
    this.stopping ??= (async () => {
      const closed = new Promise<void>((r) => this.server.close(() => r()));
      const busy = [...this.sessions].filter((s) => s.busy).length;
      this.opts.log.info({ sessions: this.sessions.size, busy, graceMs }, 'policy service stopping');
      for (const s of this.sessions) s.drain();
      const all = Promise.all([...this.sessions].map((s) => s.done));
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<'expired'>((r) => (timer = setTimeout(() => r('expired'), graceMs)));
      timer?.unref();
      if ((await Promise.race([all, expired])) === 'expired') {
        this.opts.log.warn({ sessions: this.sessions.size }, 'grace period over, closing remaining policy connections');
        for (const s of this.sessions) s.destroy('shutdown grace expired');
      }
      clearTimeout(timer);
      await closed;
      if (this.bound && !this.opts.sharedListener && this.listen.kind === 'unix' && existsSync(this.listen.path)) unlinkSync(this.listen.path);
    })();
    return this.stopping;
  }
}
