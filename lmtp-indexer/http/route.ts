/**
 * The indexer's HTTP API is one `node:http` server; each feature (search, events, push, send)
 * contributes routes and, for WebSocket, an upgrade handler. service.ts composes them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../core/log.ts';

export interface RouteContext {
  url: URL;
  log: Logger;
}

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Exact path, e.g. `/search`. */
  path: string;
  handle(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void>;
}

export interface UpgradeHandler {
  /** Exact path, e.g. `/events`. */
  path: string;
  handle(req: IncomingMessage, socket: Duplex, head: Buffer, ctx: RouteContext): void;
}

/** JSON reply with the right headers; `status` ≥ 400 bodies are `{ error }`. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Reads a request body up to `maxBytes` (413 beyond it) and parses it as JSON (400 if it isn't). */
export async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpError(413, `request body over ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not JSON');
  }
}
