/**
 * A small HTTP endpoint for training: `POST /learn/spam` or `/learn/ham` with the raw message as
 * the body (`?user=NAME` for a per-user learn), `Authorization: Bearer TOKEN`. Meant for scripts
 * and mail-client hooks on the same host, hence 127.0.0.1 by default.
 *
 * - The token is compared in constant time (both sides hashed first, so the comparison does not
 *   even leak the token's length), and the server refuses to start with a token under 16 chars:
 *   a guessable token on a learn endpoint lets anyone poison the model.
 * - Checks run cheapest first: route, method, auth, size (Content-Length before reading a byte),
 *   so an unauthenticated or oversized upload is refused without buffering it.
 * - Unknown query parameters are refused, so a typo (`?usr=alice`) cannot silently train the
 *   global model.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger, type Logger } from '../../core/log.ts';
import { LearnInputError } from '../model/store.ts';
import type { MailClass } from '../types.ts';
import type { Learner, LearnOptions } from './learner.ts';

export type { Learner, LearnOptions, LearnOutcome } from './learner.ts';

export const DEFAULT_LEARN_PORT = 10042;
export const DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024;
export const MIN_TOKEN_LENGTH = 16;

export interface LearnHttpServerOptions {
  learner: Learner;
  token: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 10042; 0 picks a free port (tests). */
  port?: number;
  /** Largest message accepted (default 10 MB); larger gets 413. */
  maxBytes?: number;
  log?: Logger;
}

/** Same rule as a 'user:…' scope in the store: no spaces, no control characters. */
const USER = /^[^\s\p{Cc}]{1,320}$/u;
const LEARN = /^\/learn\/(spam|ham)$/;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export class LearnHttpServer {
  private readonly server: http.Server;
  private readonly tokenHash: Buffer;
  private readonly log: Logger;
  private readonly maxBytes: number;

  constructor(private readonly opts: LearnHttpServerOptions) {
    if (typeof opts.token !== 'string' || opts.token.length < MIN_TOKEN_LENGTH) {
      throw new Error(`the learn endpoint needs a token of at least ${MIN_TOKEN_LENGTH} characters`);
    }
    this.tokenHash = digest(opts.token);
    this.log = opts.log ?? silentLogger;
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.server = http.createServer({ requestTimeout: 120_000 }, (req, res) => void this.handle(req, res));
  }

  /** Listen; resolves with the bound address. */
  start(): Promise<{ host: string; port: number }> {
    const host = this.opts.host ?? '127.0.0.1';
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? DEFAULT_LEARN_PORT, host, () => {
        this.server.off('error', reject);
        const addr = this.server.address() as AddressInfo;
        this.log.info({ host: addr.address, port: addr.port }, 'learn endpoint listening');
        resolve({ host: addr.address, port: addr.port });
      });
    });
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Stop accepting, let requests in flight finish, drop idle keep-alive connections. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname === '/healthz') {
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'use GET', { Allow: 'GET, HEAD' });
        return this.reply(res, 200, { ok: true });
      }
      const route = LEARN.exec(url.pathname);
      if (!route) throw new HttpError(404, 'not found: POST /learn/spam or /learn/ham, GET /healthz');
      if (req.method !== 'POST') throw new HttpError(405, 'use POST', { Allow: 'POST' });
      if (!this.authorized(req.headers.authorization)) {
        throw new HttpError(401, 'missing or wrong bearer token', { 'WWW-Authenticate': 'Bearer realm="ceerion-learn"' });
      }
      const opts = this.learnOptions(url.searchParams);
      const raw = await this.readBody(req);
      const cls = route[1] as MailClass;
      const outcome = await this.opts.learner.learn(raw, cls, opts);
      this.log.info({ cls, user: opts.user, status: outcome.status, eventId: outcome.eventId, bytes: raw.length }, 'learned');
      this.reply(res, 200, outcome);
    } catch (err) {
      if (err instanceof HttpError) return this.reply(res, err.status, { error: err.message }, err.headers);
      if (err instanceof LearnInputError) return this.reply(res, 400, { error: err.message });
      this.log.error({ err: (err as Error).message }, 'learn request failed');
      this.reply(res, 500, { error: 'learning failed; see the server log' });
    }
  }

  private authorized(header: string | undefined): boolean {
    const m = /^Bearer +(\S+) *$/i.exec(header ?? '');
    // Compare even when absent, so a missing header takes as long as a wrong one.
    return timingSafeEqual(digest(m?.[1] ?? ''), this.tokenHash) && m !== null;
  }

  private learnOptions(params: URLSearchParams): LearnOptions {
    const opts: LearnOptions = {};
    for (const [key, value] of params) {
      if (key !== 'user') throw new HttpError(400, `unknown parameter ${JSON.stringify(key)} (only "user")`);
      if (opts.user !== undefined) throw new HttpError(400, 'user given twice');
      if (!USER.test(value)) throw new HttpError(400, 'user must be 1-320 characters without spaces or control characters');
      opts.user = value;
    }
    return opts;
  }

  private readBody(req: http.IncomingMessage): Promise<Buffer> {
    const tooLarge = (): HttpError =>
      // Close: the rest of the upload is not read, so the connection cannot carry another request.
      new HttpError(413, `message larger than ${this.maxBytes} bytes`, { Connection: 'close' });
    const declared = Number(req.headers['content-length']);
    if (declared > this.maxBytes) return Promise.reject(tooLarge());
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const onData = (chunk: Buffer): void => {
        size += chunk.length;
        if (size > this.maxBytes) {
          req.off('data', onData);
          req.resume(); // discard the rest instead of buffering it
          reject(tooLarge());
          return;
        }
        chunks.push(chunk);
      };
      req.on('data', onData);
      req.once('error', reject);
      req.once('end', () => {
        if (size > this.maxBytes) return;
        if (size === 0) reject(new HttpError(400, 'empty body: send the raw message'));
        else resolve(Buffer.concat(chunks, size));
      });
    });
  }

  private reply(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent) return;
    const json = `${JSON.stringify(body)}\n`;
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(json),
      'Cache-Control': 'no-store',
      ...headers,
    });
    res.end(res.req.method === 'HEAD' ? undefined : json);
  }
}
