/**
 * The resolver the services use, built from the `dns` config section: our UDP/TCP client to the
 * configured servers, behind the TTL-aware cache (shared through Redis when cache.redisUrl is set).
 */
import { Redis } from 'ioredis';
import type { DnsConfig } from '../config/schema.ts';
import type { Logger } from '../log.ts';
import { cachedResolver, type CacheStats } from './cache.ts';
import type { DnsResolver } from './types.ts';
import { createUdpResolver } from './udp-resolver.ts';

export { DnsError, type DnsResolver } from './types.ts';
export type { CacheStats } from './cache.ts';

export interface Resolver {
  resolve: DnsResolver;
  /** Cache counters (all zero with the cache off), for metrics. */
  stats: CacheStats;
  /** Abort lookups in flight, wait for pending Redis writes, close the Redis client we opened. */
  close(): Promise<void>;
}

/**
 * A Redis client for the cache: commands fail at once while disconnected (no offline queue, one
 * retry) instead of holding lookups up, and reconnection goes on in the background.
 */
export function createCacheRedis(url: string, log?: Logger): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(times * 200, 5_000),
  });
  let reported = false;
  redis.on('error', (err: Error) => {
    if (!reported) log?.warn({ err }, 'DNS cache: Redis connection error (retrying in the background)');
    reported = true;
  });
  redis.on('ready', () => {
    if (reported) log?.info('DNS cache: Redis connected');
    reported = false;
  });
  return redis;
}

export function createResolver(config: DnsConfig, opts: { log: Logger; redis?: Redis }): Resolver {
  const udp = createUdpResolver({ servers: config.servers, timeoutMs: config.timeoutMs, tries: config.tries });
  const { cache } = config;
  if (!cache.enabled) {
    const stats: CacheStats = { hits: 0, redisHits: 0, misses: 0, shared: 0, evictions: 0, redisErrors: 0 };
    return { resolve: udp, stats, close: async () => udp.close() };
  }
  const ownRedis = !opts.redis && cache.redisUrl ? createCacheRedis(cache.redisUrl, opts.log) : undefined;
  const resolve = cachedResolver(udp, {
    maxEntries: cache.maxEntries,
    maxTtlSeconds: cache.maxTtlSeconds,
    negativeTtlSeconds: cache.negativeTtlSeconds,
    redis: opts.redis ?? ownRedis,
    log: opts.log,
  });
  return {
    resolve,
    stats: resolve.stats,
    async close() {
      udp.close();
      await resolve.flush();
      if (ownRedis) await ownRedis.quit().catch(() => ownRedis.disconnect());
    },
  };
}
