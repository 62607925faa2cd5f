/**
 * The indexer's HTTP server: routes from each feature (search, push, send, health) and WebSocket
 * upgrades (events). Errors become JSON: an HttpError keeps its status, anything else is a 500 with
 * a reference id that is also in the log line.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { boundPort, closeHttp, listenHttp } from '../../core/http/lifecycle.ts';
import type { Logger } from '../../core/log.ts';
import { HttpError, sendJson, type Route, type UpgradeHandler } from './route.ts';

export interface ApiServerOptions {
  host: string;
  port: number;
  routes: Route[];
  upgrades: UpgradeHandler[];
  log: Logger;
  /** Requests must arrive whole within this (slowloris). */
  requestTimeoutMs?: number;
}

export class ApiServer {
  private readonly server: http.Server;

  constructor(private readonly opts: ApiServerOptions) {
    this.server = http.createServer({ requestTimeout: opts.requestTimeoutMs ?? 30_000, headersTimeout: 10_000 }, (req, res) => void this.dispatch(req, res));
    this.server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const handler = this.opts.upgrades.find((u) => u.path === url.pathname);
      socket.on('error', () => undefined);
      if (!handler) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      handler.handle(req, socket, head, { url, log: this.opts.log });
    });
    this.server.on('clientError', (err, socket) => {
      this.opts.log.debug({ err: err.message }, 'bad HTTP request');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = this.opts.routes.find((r) => r.path === url.pathname && r.method === req.method);
    try {
      if (!route) {
        const known = this.opts.routes.some((r) => r.path === url.pathname);
        throw new HttpError(known ? 405 : 404, known ? `${req.method} not allowed on ${url.pathname}` : `no route ${url.pathname}`);
      }
      await route.handle(req, res, { url, log: this.opts.log });
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        sendJson(res, err.status, { error: err.message });
        return;
      }
      const ref = randomBytes(5).toString('hex');
      this.opts.log.error({ err, ref, path: url.pathname }, 'HTTP handler failed');
      sendJson(res, 500, { error: `internal error (ref ${ref})` });
    }
  }

  async listen(): Promise<number> {
    return listenHttp(this.server, this.opts, this.opts.log, 'HTTP API');
  }

  get port(): number {
    return boundPort(this.server);
  }

  /** Requests in flight get 5 s to finish (WebSocket clients are closed by their hub first). */
  stop(): Promise<void> {
    return closeHttp(this.server, 5_000);
  }
}
