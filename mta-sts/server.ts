/**
 * `ceerion mta-sts serve`: plain HTTP on loopback (a reverse proxy terminates TLS for every
 * `mta-sts.DOMAIN` name and forwards the Host header), answering what request.ts decides.
 *
 * The server owns the caps and timers: request heads over `maxHeaderBytes` get 431 and bodies
 * over `maxBodyBytes` get 413 (both close the connection, since the rest may still be arriving);
 * the whole request must arrive within `requestTimeoutMs`. Every refusal is logged once with its
 * reason and the peer, never the policy fetches themselves above debug.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import { Counter, type Registry } from 'prom-client';
import type { MtaStsConfig } from '../core/config/mta-sts.ts';
import { readCapped } from '../core/http/body.ts';
import { boundPort, closeHttp, closeIdleWhileStopping, listenHttp } from '../core/http/lifecycle.ts';
import type { Logger } from '../core/log.ts';
import { compilePolicies, type CompiledPolicy } from './policy.ts';
import { decide } from './request.ts';

export interface MtaStsServerOptions {
  config: MtaStsConfig;
  log: Logger;
  registry?: Registry;
}

const TEXT = 'text/plain';

export class MtaStsServer {
  readonly policies: ReadonlyMap<string, CompiledPolicy>;
  private readonly config: MtaStsConfig;
  private readonly log: Logger;
  private readonly server: http.Server;
  private readonly requests?: Counter<'status'>;
  private stopping: Promise<void> | undefined;

  constructor(opts: MtaStsServerOptions) {
    this.config = opts.config;
    this.log = opts.log;
    this.policies = compilePolicies(opts.config);
    if (opts.registry) {
      this.requests = new Counter({ name: 'ceerion_mta_sts_requests_total', help: 'MTA-STS HTTP requests by answer status', labelNames: ['status'], registers: [opts.registry] });
    }
    // requireHostHeader off: Node would answer 400 itself, without the reason reaching our log.
    // connectionsCheckingInterval: Node checks the request timeout only this often (default 30 s).
    this.server = http.createServer(
      { maxHeaderSize: opts.config.maxHeaderBytes, requireHostHeader: false, connectionsCheckingInterval: Math.min(1_000, opts.config.requestTimeoutMs) },
      (req, res) => this.onRequest(req, res),
    );
    this.server.requestTimeout = opts.config.requestTimeoutMs;
    this.server.headersTimeout = Math.min(opts.config.requestTimeoutMs, 10_000);
    this.server.keepAliveTimeout = 5_000;
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      const overflow = err.code === 'HPE_HEADER_OVERFLOW';
      const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      this.requests?.inc({ status: overflow ? '431' : timeout ? '408' : '400' });
      this.log.warn({ status: overflow ? 431 : timeout ? 408 : 400, reason: err.code ?? err.message, peer: (socket as Socket).remoteAddress }, 'mta-sts refused request');
      const line = overflow ? '431 Request Header Fields Too Large' : timeout ? '408 Request Timeout' : '400 Bad Request';
      if (socket.writable) socket.end(`HTTP/1.1 ${line}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      else socket.destroy();
    });
  }

  /** Listens on config.host:config.port (0 picks a free port); resolves with the bound port. */
  async start(): Promise<number> {
    const port = await listenHttp(this.server, this.config, this.log, 'mta-sts');
    this.log.info({ host: this.config.host, port, domains: [...this.policies.keys()] }, 'mta-sts listening');
    return port;
  }

  get port(): number {
    return boundPort(this.server);
  }

  /** Stop accepting, let requests in flight finish within the grace period, then close the rest. */
  stop(): Promise<void> {
    this.stopping ??= closeHttp(this.server, this.config.shutdownGraceMs);
    return this.stopping;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    closeIdleWhileStopping(this.server, res, () => this.stopping !== undefined);
    readCapped(req, this.config.maxBodyBytes).then(
      (body) => {
        if (body === undefined) return this.refuse(req, res, 413, `body over ${this.config.maxBodyBytes} bytes`);
        this.answer(req, res);
      },
      (err: unknown) => {
        this.log.debug({ err: (err as Error).message, peer: req.socket.remoteAddress }, 'mta-sts request aborted');
        res.destroy();
      },
    );
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    const d = decide({ method: req.method ?? '', target: req.url ?? '', hosts: req.headersDistinct.host ?? [] }, this.policies);
    if (d.status !== 200) {
      if (d.status === 405) res.setHeader('allow', 'GET, HEAD');
      return this.refuse(req, res, d.status, d.reason, d.domain);
    }
    this.requests?.inc({ status: '200' });
    this.log.debug({ domain: d.domain, id: d.policy.id, method: req.method, peer: req.socket.remoteAddress }, 'mta-sts policy served');
    const body = Buffer.from(d.policy.text, 'utf8');
    res.writeHead(200, {
      'content-type': TEXT,
      'content-length': body.length,
      // The id lets an operator match what a proxy or cache returns against `ceerion dns records`.
      etag: `"${d.policy.id}"`,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private refuse(req: http.IncomingMessage, res: http.ServerResponse, status: number, reason: string, domain?: string): void {
    this.requests?.inc({ status: String(status) });
    // A miss on a configured host is routine (scanners, typos); bad requests are worth a warning.
    const level = status === 404 ? 'info' : 'warn';
    this.log[level]({ status, reason, ...(domain ? { domain } : {}), method: req.method, target: (req.url ?? '').slice(0, 200), peer: req.socket.remoteAddress }, 'mta-sts refused request');
    const body = Buffer.from(`${http.STATUS_CODES[status] ?? 'Error'}\n`);
    if (status === 413 || status === 400) res.setHeader('connection', 'close');
    res.writeHead(status, { 'content-type': TEXT, 'content-length': body.length, 'x-content-type-options': 'nosniff' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

/** Start a server for `config.mtaSts`; the caller registers `stop` with its lifecycle. */
export async function startMtaStsServer(opts: MtaStsServerOptions): Promise<MtaStsServer> {
  const server = new MtaStsServer(opts);
  await server.start();
  return server;
}
