/**
 * The one way the suite connects to Redis. Tuned for a policy service that must answer fast or
 * fall back to its configured verdict:
 * - no offline queue: while Redis is down a command fails at once instead of piling up;
 * - a command timeout (redis.commandTimeoutMs) turns a hung Redis into an error too;
 * - reconnect every 100–500 ms, so decisions recover within a second of Redis coming back.
 */
import { Redis } from 'ioredis';
import type { RedisConfig } from './config/policyd.ts';
import type { Logger } from './log.ts';

export function createRedis(config: RedisConfig, opts: { log?: Logger; keyPrefix?: string } = {}): Redis {
  const redis = new Redis(config.url, {
    keyPrefix: opts.keyPrefix ?? config.keyPrefix,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: config.commandTimeoutMs,
    connectTimeout: 1_000,
    retryStrategy: (attempt) => Math.min(100 * attempt, 500),
    lazyConnect: false,
  });
  let down = false;
  redis.on('error', (err: Error) => {
    if (!down) opts.log?.warn({ err: err.message }, 'Redis unavailable');
    down = true;
  });
  redis.on('ready', () => {
    if (down) opts.log?.info('Redis is back');
    down = false;
  });
  return redis;
}

/** Resolves once the client is ready, or rejects after `ms`. */
export function redisReady(redis: Redis, ms = 5_000): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Redis not ready after ${ms} ms`)), ms);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Hold this client's writes until the end of the current event-loop turn, so every command issued
 * in it (one per policy connection that had a request ready) reaches Redis in one `writev` instead
 * of one `write` each. Loopback writes are not cheap: under 64 busy policy connections the
 * per-command write was ~30% of policyd's CPU, and Redis reads fewer, larger packets too
 * (bench/README.md, policyd). Unlike ioredis' `enableAutoPipelining` there is no Pipeline object
 * and no extra reply bookkeeping: the socket is corked and uncorked once per turn.
 */
export class WriteCoalescer {
  #corked: { uncork(): void } | undefined;

  constructor(private readonly redis: Redis) {}

  /** Call before sending a command. */
  hold(): void {
    if (this.#corked) return;
    // ioredis replaces `stream` on reconnect; a command sent while there is none fails on its own.
    const stream = (this.redis as unknown as { stream?: { cork(): void; uncork(): void; writable?: boolean } }).stream;
    if (!stream || stream.writable === false) return;
    stream.cork();
    this.#corked = stream;
    setImmediate(() => {
      this.#corked = undefined;
      stream.uncork();
    });
  }
}
