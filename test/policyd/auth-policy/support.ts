// Shared by the auth-policy tests: a config with defaults, a Redis client with a key prefix of
// its own per test (its keys removed afterwards), a logger that keeps its JSON lines, and a tiny
// HTTP client that speaks to the policy server the way Dovecot does.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { authPolicySchema, type AuthPolicyConfig } from '../../../core/config/policyd.ts';
import { createLogger, type Logger } from '../../../core/log.ts';
import { createRedis, redisReady } from '../../../core/redis.ts';

export const REDIS_URL = process.env.CEERION_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** authPolicySchema defaults, nothing allow-listed (tests come from loopback), then `over`. */
export function policyConfig(over: Partial<AuthPolicyConfig> = {}): AuthPolicyConfig {
  return authPolicySchema.parse({ port: 0, allowNetworks: [], ...over });
}

export interface TestRedis {
  client: Redis;
  prefix: string;
  /** Every key of this test, without the prefix. */
  keys(): Promise<string[]>;
  /** PTTL of a key (without the prefix). */
  pttl(key: string): Promise<number>;
}

export async function testRedis(t: TestContext): Promise<TestRedis> {
  const prefix = `ceerion-test:auth-policy:${randomUUID().slice(0, 12)}:`;
  const client = createRedis({ url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 2_000 });
  const raw = new Redis(REDIS_URL);
  await Promise.all([redisReady(client), redisReady(raw)]);
  const keys = async (): Promise<string[]> => {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await raw.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      out.push(...batch.map((k) => k.slice(prefix.length)));
    } while (cursor !== '0');
    return out.sort();
  };
  t.after(async () => {
    const left = await keys();
    if (left.length) await raw.del(...left.map((k) => prefix + k));
    client.disconnect();
    raw.disconnect();
  });
  return { client, prefix, keys, pttl: (key) => raw.pttl(prefix + key) };
}

export interface MemoryLog {
  log: Logger;
  /** Parsed JSON lines so far. */
  lines: Array<Record<string, unknown>>;
  /** Raw text lines, exactly as written. */
  raw: string[];
}

export function memoryLogger(level = 'debug'): MemoryLog {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const log = createLogger(level, 'policyd', {
    write(chunk: string) {
      for (const line of chunk.split('\n')) {
        if (!line) continue;
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
    },
  });
  return { log, lines, raw };
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json?: { status: number; msg: string };
}

/** One POST as Dovecot sends it (JSON body, optional API header); a fresh connection each time. */
export function post(port: number, pathAndQuery: string, body: string | Buffer, opts: { headers?: Record<string, string>; method?: string } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: pathAndQuery, method: opts.method ?? 'POST', agent: false, headers: { 'content-type': 'application/json', ...opts.headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let json: HttpAnswer['json'];
          try {
            json = JSON.parse(text) as HttpAnswer['json'];
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A Dovecot-shaped request body with the default attributes. */
export function dovecotBody(over: Record<string, unknown> = {}): string {
  return JSON.stringify({ device_id: '', login: 'alice', protocol: 'imap', pwhash: '0b9c', remote: '192.0.2.10', session_id: 'rNrh4sxguZZ/AAAC', tls: false, ...over });
}
