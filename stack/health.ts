/**
 * Health checks the supervisor gates readiness on. Each answers true/false within its own short
 * timeout and never throws: a check that hangs must not hold up the others.
 */
import net from 'node:net';
import pg from 'pg';

export interface HealthCheck {
  /** What is checked, for `mail:status`: `tcp 127.0.0.1:8891`, `GET http://…/healthz`. */
  describe: string;
  check(): Promise<boolean>;
}

const TIMEOUT_MS = 2_000;

/** Connects, optionally sends `send`, and resolves with what arrived until `done(text)` or close. */
function converse(target: { host: string; port: number } | { path: string }, done: (text: string) => boolean | undefined, send?: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = 'path' in target ? net.connect(target.path) : net.connect(target.port, target.host);
    let text = '';
    let settled = false;
    const finish = (value: string | undefined): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(value);
    };
    socket.setTimeout(TIMEOUT_MS, () => finish(undefined));
    socket.once('error', () => finish(undefined));
    socket.once('connect', () => {
      if (send !== undefined) socket.write(send);
      else if (done('') === true) finish('');
    });
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (done(text) !== undefined) finish(text);
    });
    socket.once('close', () => finish(settled ? undefined : text || undefined));
  });
}

/** Parses Postfix notation (`inet:HOST:PORT`, `unix:/path`) into a socket target. */
export function socketTarget(address: string): { host: string; port: number } | { path: string } {
  if (address.startsWith('unix:')) return { path: address.slice(5) };
  const m = /^inet:(.*):(\d+)$/.exec(address);
  if (!m) throw new Error(`not a Postfix socket address: ${address}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/** Something accepts connections there. */
export function tcpCheck(address: string): HealthCheck {
  const target = socketTarget(address);
  return { describe: `connect ${address}`, check: async () => (await converse(target, () => true)) !== undefined };
}

/** A line-based greeting starting with `prefix` (SMTP/LMTP `220`, IMAP `* OK`). */
export function greetingCheck(label: string, address: string, prefix: string): HealthCheck {
  const target = socketTarget(address);
  return {
    describe: `${label} greeting on ${address}`,
    check: async () => {
      const text = await converse(target, (t) => (t.includes('\n') ? true : undefined));
      return text?.startsWith(prefix) ?? false;
    },
  };
}

/** Redis answers PING. */
export function redisCheck(host: string, port: number): HealthCheck {
  return {
    describe: `PING redis://${host}:${port}`,
    check: async () => (await converse({ host, port }, (t) => (t.includes('\r\n') ? true : undefined), 'PING\r\n'))?.startsWith('+PONG') ?? false,
  };
}

/** PostgreSQL runs a query (not merely accepts connections: it may still be starting up). */
export function postgresCheck(url: string): HealthCheck {
  return {
    describe: `SELECT 1 on ${url.replace(/\/\/[^@]*@/, '//')}`,
    check: async () => {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: TIMEOUT_MS, query_timeout: TIMEOUT_MS });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query('SELECT 1');
        return true;
      } catch {
        return false;
      } finally {
        await client.end().catch(() => undefined);
      }
    },
  };
}

/** An HTTP GET answered 2xx. */
export function httpCheck(url: string): HealthCheck {
  return {
    describe: `GET ${url}`,
    check: async () => {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
        await res.arrayBuffer();
        return res.ok;
      } catch {
        return false;
      }
    },
  };
}

/** Every check passes (e.g. a service's socket and its metrics endpoint). */
export function allOf(...checks: HealthCheck[]): HealthCheck {
  return {
    describe: checks.map((c) => c.describe).join(' + '),
    check: async () => (await Promise.all(checks.map((c) => c.check()))).every(Boolean),
  };
}
