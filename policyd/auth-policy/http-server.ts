/**
 * The HTTP endpoint Dovecot's auth_policy_server_url points at. The session owns the socket: it
 * checks the API header, reads the body under a cap, hands it to the pure codec, asks the
 * brute-force guard and writes the JSON answer. Dovecot itself sleeps for a tarpit, so every
 * answer here is immediate.
 *
 * Every blocked attempt produces one log line (`auth-policy block`) whose `fail2ban` field repeats
 * the facts as `event=auth_block ip=… login=… reason=… action=…`, so a plain regex can match the
 * JSON line (policyd/fail2ban/filter.d/ceerion-auth.conf).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { Redis } from 'ioredis';
import { Counter, type Registry } from 'prom-client';
import type { AuthPolicyConfig } from '../../core/config/policyd.ts';
import { readCapped } from '../../core/http/body.ts';
import { boundPort, closeHttp, closeIdleWhileStopping, listenHttp } from '../../core/http/lifecycle.ts';
import type { Logger } from '../../core/log.ts';
import { BruteForceGuard, type Counts, type Decision, type Verdict } from './brute-force.ts';
import {
  AuthPolicyRequestError,
  encodeResponse,
  MAX_BODY_BYTES,
  parseRequest,
  type AuthPolicyCommand,
  type AuthPolicyRequest,
  type AuthPolicyResponse,
} from './codec.ts';

export interface AuthPolicyServerOptions {
  config: AuthPolicyConfig;
  /** From core/redis.ts; not closed by stop() (the caller owns it). */
  redis: Redis;
  log: Logger;
  /** Metrics go here when given (core/metrics.ts createRegistry). */
  registry?: Registry;
  /** Milliseconds since the epoch; injected so tests can move time. */
  now?: () => number;
  /** stop() waits this long for requests in flight, then closes their sockets. */
  shutdownGraceMs?: number;
}

/** `Name: value` as Dovecot sends it; without a colon Dovecot sends the text as X-API-Key. */
export function parseApiHeader(spec: string): { name: string; value: string } | undefined {
  if (spec.trim() === '') return undefined;
  const colon = spec.indexOf(':');
  if (colon < 0) return { name: 'x-api-key', value: spec.trim() };
  return { name: spec.slice(0, colon).trim().toLowerCase(), value: spec.slice(colon + 1).trim() };
}

/** Login text safe inside the space-separated `fail2ban` field: no spaces, quotes or controls. */
function plainLogin(login: string): string {
  const safe = login.slice(0, 64).replace(/[^A-Za-z0-9._@+-]/g, '?');
  return safe === '' ? '-' : safe;
}

/** The structured fields of one block line; exported so the format is pinned by tests. */
export function blockLogFields(req: AuthPolicyRequest, verdict: Exclude<Verdict, { action: 'allow' }>, counts: Counts): Record<string, unknown> {
  // Only a real address goes into the regex field: fail2ban must never be handed a host name.
  const ip = net.isIP(req.remote) ? req.remote : '-';
  return {
    ip,
    login: req.login,
    reason: verdict.reason,
    action: verdict.action,
    ...(verdict.action === 'tarpit' ? { seconds: verdict.seconds } : {}),
    protocol: req.protocol,
    session: req.sessionId,
    ipFailures: counts.ip,
    loginFailures: counts.login,
    fail2ban: `event=auth_block ip=${ip} login=${plainLogin(req.login)} reason=${verdict.reason} action=${verdict.action}`,
  };
}

/** What the client sees on a reject (`NO [ALERT] …` in IMAP), with Dovecot's session id to quote. */
function rejectText(decision: Decision, req: AuthPolicyRequest): string {
  const ref = req.sessionId.replace(/[^A-Za-z0-9+/=._-]/g, '').slice(0, 40);
  const text = decision.storeError ? 'Login temporarily unavailable, try again later' : 'Too many failed logins, try again later';
  return ref ? `${text} (ref ${ref})` : text;
}

class Metrics {
  readonly requests?: Counter<'command' | 'result'>;
  readonly blocks?: Counter<'reason' | 'action'>;
  readonly storeErrors?: Counter;
  readonly sprays?: Counter<'kind'>;
  constructor(registry: Registry | undefined) {
    if (!registry) return;
    const registers = [registry];
    this.requests = new Counter({ name: 'ceerion_auth_policy_requests_total', help: 'Auth policy requests by command and answer', labelNames: ['command', 'result'], registers });
    this.blocks = new Counter({ name: 'ceerion_auth_policy_blocks_total', help: 'Login attempts tarpitted or rejected', labelNames: ['reason', 'action'], registers });
    this.storeErrors = new Counter({ name: 'ceerion_auth_policy_store_errors_total', help: 'Requests answered with onStoreError because Redis failed', registers });
    this.sprays = new Counter({ name: 'ceerion_auth_policy_spraying_detected_total', help: 'Password spraying detections', labelNames: ['kind'], registers });
  }
}

type Handler = (req: AuthPolicyRequest) => Promise<AuthPolicyResponse>;

export class AuthPolicyServer {
  readonly guard: BruteForceGuard;
  private readonly config: AuthPolicyConfig;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  private readonly apiHeader: { name: string; value: Buffer } | undefined;
  private readonly graceMs: number;
  private readonly server: http.Server;
  private readonly handlers: Record<AuthPolicyCommand, Handler>;
  private stopping: Promise<void> | undefined;

  constructor(opts: AuthPolicyServerOptions) {
    this.config = opts.config;
    this.log = opts.log;
    this.metrics = new Metrics(opts.registry);
    this.graceMs = opts.shutdownGraceMs ?? 5_000;
    this.guard = new BruteForceGuard({ config: opts.config, redis: opts.redis, log: opts.log, now: opts.now });
    const api = parseApiHeader(opts.config.apiHeader);
    this.apiHeader = api && { name: api.name, value: digest(api.value) };
    this.handlers = { allow: (r) => this.onAllow(r), report: (r) => this.onReport(r) };
    this.server = http.createServer((req, res) => this.onRequest(req, res));
    // Dovecot keeps policy connections idle for up to 10 s (http_client_max_idle_time); staying
    // open longer means Dovecot always closes first and never reuses a socket we just closed.
    this.server.keepAliveTimeout = 15_000;
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 15_000;
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      this.log.warn({ err: err.message, code: err.code }, 'auth-policy bad HTTP request');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
  }

  /** Listens on config.host:config.port (0 picks a free port); resolves with the bound port. */
  async start(): Promise<number> {
    const port = await listenHttp(this.server, this.config, this.log, 'auth-policy');
    this.log.info({ host: this.config.host, port }, 'auth-policy listening');
    return port;
  }

  get port(): number {
    return boundPort(this.server);
  }

  /** Stop accepting, let requests in flight finish within the grace period, then close the rest. */
  stop(): Promise<void> {
    this.stopping ??= closeHttp(this.server, this.graceMs);
    return this.stopping;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    closeIdleWhileStopping(this.server, res, () => this.stopping !== undefined);
    this.serve(req, res).catch((err: unknown) => {
      this.log.error({ err: (err as Error)?.message ?? String(err) }, 'auth-policy request failed');
      if (!res.headersSent) this.send(res, 500, { status: 0, msg: '' });
      else res.destroy();
    });
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const query = url.includes('?') ? url.slice(url.indexOf('?') + 1) : '';
    if (req.method !== 'POST') return this.refuse(req, res, 405, 'method', `${req.method ?? '?'} instead of POST`);
    if (!this.authorised(req)) return this.refuse(req, res, 401, 'api-header', 'missing or wrong API header');
    const body = await readCapped(req, MAX_BODY_BYTES);
    if (body === undefined) return this.refuse(req, res, 413, 'too-large', `body over ${MAX_BODY_BYTES} bytes`);
    let request: AuthPolicyRequest;
    try {
      request = parseRequest(query, body);
    } catch (err) {
      if (!(err instanceof AuthPolicyRequestError)) throw err;
      return this.refuse(req, res, err.reason === 'too-large' ? 413 : 400, err.reason, err.message);
    }
    this.send(res, 200, await this.handlers[request.command](request));
  }

  private async onAllow(req: AuthPolicyRequest): Promise<AuthPolicyResponse> {
    const decision = await this.guard.allow(req);
    const { verdict } = decision;
    this.metrics.requests?.inc({ command: 'allow', result: verdict.action });
    if (decision.storeError) this.metrics.storeErrors?.inc();
    this.log.debug({ ip: req.remote, login: req.login, session: req.sessionId, verdict, counts: decision.counts, allowlisted: decision.allowlisted }, 'auth-policy allow');
    if (verdict.action === 'allow') return { status: 0 };
    // A Redis outage is not an attack: it gets its own line (store error), never a block line.
    if (!decision.storeError) {
      this.metrics.blocks?.inc({ reason: verdict.reason, action: verdict.action });
      this.log.warn(blockLogFields(req, verdict, decision.counts), 'auth-policy block');
    }
    if (verdict.action === 'tarpit') return { status: verdict.seconds };
    return { status: -1, msg: rejectText(decision, req) };
  }

  private async onReport(req: AuthPolicyRequest): Promise<AuthPolicyResponse> {
    const outcome = await this.guard.report(req);
    this.metrics.requests?.inc({ command: 'report', result: req.success ? 'success' : req.policyReject ? 'blocked' : 'failure' });
    if (outcome.storeError) this.metrics.storeErrors?.inc();
    if (outcome.sprayDetected) {
      this.metrics.sprays?.inc({ kind: outcome.sprayDetected });
      this.log.warn({ ip: req.remote, login: req.login, kind: outcome.sprayDetected, session: req.sessionId }, 'auth-policy spraying detected');
    }
    this.log.debug({ ip: req.remote, login: req.login, session: req.sessionId, success: req.success, policyReject: req.policyReject, counts: outcome.counts }, 'auth-policy report');
    // Dovecot ignores the status of a report; answer with a well-formed allow anyway.
    return { status: 0 };
  }

  private authorised(req: http.IncomingMessage): boolean {
    if (!this.apiHeader) return true;
    const got = req.headers[this.apiHeader.name];
    if (typeof got !== 'string') return false;
    // Compare digests: equal length for timingSafeEqual, and no timing hint about the key.
    return timingSafeEqual(digest(got.trim()), this.apiHeader.value);
  }

  private refuse(req: http.IncomingMessage, res: http.ServerResponse, code: number, reason: string, detail: string): void {
    this.metrics.requests?.inc({ command: 'invalid', result: reason });
    this.log.warn({ status: code, reason, detail, peer: req.socket.remoteAddress }, 'auth-policy refused request');
    // After a refused body the rest of it may still be arriving: do not reuse this connection.
    res.setHeader('connection', 'close');
    this.send(res, code, { status: 0, msg: reason });
  }

  private send(res: http.ServerResponse, code: number, body: AuthPolicyResponse): void {
    const bytes = encodeResponse(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': bytes.length }).end(bytes);
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
