/**
 * For the MTA-STS tests: a real MtaStsServer on its own port (freePort) with a logger that keeps
 * its lines, and a raw HTTP/1.1 client over a TCP socket, so requests Node's own client refuses
 * to send (two Host headers, none, odd bytes) reach the server exactly as written.
 */
import net from 'node:net';
import type { TestContext } from 'node:test';
import type { Registry } from 'prom-client';
import { mtaStsSchema, type MtaStsConfig } from '../../core/config/mta-sts.ts';
import { createLogger } from '../../core/log.ts';
import { MtaStsServer } from '../../mta-sts/server.ts';
import { freePort } from '../harness/postfix.ts';

export const POLICIES = {
  'example.com': { mode: 'enforce', mx: ['mx1.example.com', '*.mx.example.net'], maxAge: 86400 },
  'Example.ORG.': { mode: 'testing', mx: ['mx1.example.com'] },
  'gone.example': { mode: 'none' },
};

export interface Bench {
  server: MtaStsServer;
  port: number;
  config: MtaStsConfig;
  logs: Array<Record<string, unknown>>;
}

export async function startServer(t: TestContext, over: Record<string, unknown> = {}, registry?: Registry): Promise<Bench> {
  const config = mtaStsSchema.parse({ host: '127.0.0.1', port: await freePort(), policies: POLICIES, ...over });
  const logs: Array<Record<string, unknown>> = [];
  const log = createLogger('debug', 'mta-sts', { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const server = new MtaStsServer({ config, log, ...(registry ? { registry } : {}) });
  const port = await server.start();
  t.after(() => server.stop());
  return { server, port, config, logs };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Every byte the server sent before closing. */
  raw: string;
}

/** Parse one or more HTTP/1.1 responses from `raw` (bodies by Content-Length). */
export function parseResponses(raw: string, headOnly = false): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = raw;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`incomplete response head: ${JSON.stringify(rest.slice(0, 200))}`);
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3}) /.exec(statusLine!);
    if (!m) throw new Error(`bad status line ${JSON.stringify(statusLine)}`);
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const c = l.indexOf(':');
      headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
    }
    const length = headOnly ? 0 : Number(headers['content-length'] ?? 0);
    const body = rest.slice(end + 4, end + 4 + length);
    out.push({ status: Number(m[1]), headers, body, raw: rest.slice(0, end + 4 + length) });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

/** Write `request` (latin1) and read until the server closes; at most `timeoutMs`. */
export function rawExchange(port: number, request: string | Buffer, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 300))}`)));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      // The server may close while we still write a large body: what it sent before is the answer.
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') resolve(Buffer.concat(chunks).toString('latin1'));
      else reject(err);
    });
    socket.once('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.end(typeof request === 'string' ? Buffer.from(request, 'latin1') : request);
  });
}

/** One request with `Connection: close`; `headers` are written verbatim, in order. */
export async function raw(port: number, method: string, target: string, headers: Array<[string, string]>, body = ''): Promise<RawResponse> {
  const head = `${method} ${target} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}Connection: close\r\n\r\n`;
  const text = await rawExchange(port, head + body);
  const [first] = parseResponses(text, method === 'HEAD');
  if (!first) throw new Error(`no response to ${method} ${target}`);
  return first;
}

export const get = (port: number, host: string, target = '/.well-known/mta-sts.txt') => raw(port, 'GET', target, [['Host', host]]);
