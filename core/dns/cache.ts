/**
 * A TTL-aware LRU cache in front of a resolver, with an optional shared second level in Redis.
 *
 * - Key: lowercased name without the trailing dot, plus the record type.
 * - Answers are kept for min(TTL, maxTtlSeconds); a TTL of 0 is not kept. Resolvers that do not
 *   report TTLs (plain DnsResolver) get maxTtlSeconds.
 * - ENOTFOUND / ENODATA are kept for min(SOA negative TTL, negativeTtlSeconds), or
 *   negativeTtlSeconds when the server sent no SOA. Timeouts, SERVFAIL and every other error are
 *   never kept: the next lookup asks again.
 * - Concurrent lookups of one key share one upstream query (and one Redis read).
 * - Redis, when given, is read after an in-process miss and written (JSON, PX expiry) after an
 *   upstream answer, without waiting. A Redis error or a reply slower than redisTimeoutMs is
 *   logged (once per outage) and the lookup goes on in process only: Redis never fails a lookup.
 * - Every caller gets its own copy of the answer, as from Node's resolver.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import { DnsError, type DnsResolver } from './types.ts';
import { NegativeAnswer, type TtlAnswer, type TtlResolver } from './udp-resolver.ts';

export interface CacheOptions {
  maxEntries: number;
  maxTtlSeconds: number;
  negativeTtlSeconds: number;
  /** Milliseconds now; injectable for tests. Default Date.now. */
  clock?: () => number;
  redis?: Redis;
  /** Prefix of every Redis key. Default 'ceerion:dns:'. */
  prefix?: string;
  /** Longest wait for a Redis reply before going on without it. Default 250 ms. */
  redisTimeoutMs?: number;
  log?: Logger;
}

export interface CacheStats {
  /** Answered from the in-process cache. */
  hits: number;
  /** Answered from Redis after an in-process miss. */
  redisHits: number;
  /** Asked upstream. */
  misses: number;
  /** Joined a lookup of the same key already in flight. */
  shared: number;
  /** Entries dropped to stay within maxEntries. */
  evictions: number;
  /** Redis commands that failed or timed out. */
  redisErrors: number;
}

export interface CachedResolver extends TtlResolver {
  readonly stats: CacheStats;
  /** Entries held in process (expired ones included until they are read or evicted). */
  size(): number;
  /** Wait for Redis writes still in flight (for shutdown and tests). */
  flush(): Promise<void>;
}

type Stored = { answer: unknown[] } | { error: 'ENOTFOUND' | 'ENODATA' };
interface Entry {
  value: Stored;
  expiresAt: number;
}

const DEFAULT_PREFIX = 'ceerion:dns:';

export function cachedResolver(inner: DnsResolver | TtlResolver, opts: CacheOptions): CachedResolver {
  const clock = opts.clock ?? Date.now;
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  const redisTimeoutMs = opts.redisTimeoutMs ?? 250;
  const entries = new Map<string, Entry>();
  const inflight = new Map<string, Promise<{ value: Stored; ttl: number }>>();
  const writes = new Set<Promise<void>>();
  const stats: CacheStats = { hits: 0, redisHits: 0, misses: 0, shared: 0, evictions: 0, redisErrors: 0 };
  let redisDown = false;

  const upstream = async (name: string, type: string): Promise<{ value: Stored; ttl: number }> => {
    try {
      const res: TtlAnswer =
        'resolveWithTtl' in inner
          ? await inner.resolveWithTtl(name, type)
          : { answer: (await inner(name, type)) as unknown[], ttl: opts.maxTtlSeconds };
      return { value: { answer: res.answer }, ttl: Math.min(res.ttl, opts.maxTtlSeconds) };
    } catch (err) {
      if (err instanceof DnsError && (err.code === 'ENOTFOUND' || err.code === 'ENODATA')) {
        const soa = (err as DnsError & { ttl?: unknown }).ttl;
        const ttl = typeof soa === 'number' ? Math.min(soa, opts.negativeTtlSeconds) : opts.negativeTtlSeconds;
        return { value: { error: err.code }, ttl };
      }
      throw err;
    }
  };

  function remember(key: string, value: Stored, ttlMs: number): void {
    if (ttlMs <= 0) return;
    entries.delete(key);
    entries.set(key, { value, expiresAt: clock() + ttlMs });
    while (entries.size > opts.maxEntries) {
      const oldest = entries.keys().next().value as string;
      entries.delete(oldest);
      stats.evictions++;
    }
  }

  function redisFailed(err: unknown): void {
    stats.redisErrors++;
    if (!redisDown) opts.log?.warn({ err }, 'DNS cache: Redis unavailable, caching in process only');
    redisDown = true;
  }
  function redisOk(): void {
    if (redisDown) opts.log?.info('DNS cache: Redis is back');
    redisDown = false;
  }

  /** The Redis command's result, or undefined when it failed or took too long. */
  async function withRedis<T>(run: (redis: Redis) => Promise<T>): Promise<T | undefined> {
    const redis = opts.redis;
    if (!redis) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no reply from Redis within ${redisTimeoutMs}ms`)), redisTimeoutMs);
    });
    try {
      const result = await Promise.race([run(redis), timeout]);
      redisOk();
      return result;
    } catch (err) {
      redisFailed(err);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  async function readRedis(key: string): Promise<{ value: Stored; ttlMs: number } | undefined> {
    const reply = await withRedis((r) => r.multi().get(prefix + key).pttl(prefix + key).exec());
    const [[getErr, json] = [], [pttlErr, pttl] = []] = reply ?? [];
    if (getErr || pttlErr || typeof json !== 'string' || typeof pttl !== 'number' || pttl <= 0) return undefined;
    try {
      const value = JSON.parse(json) as Stored;
      if (('answer' in value && Array.isArray(value.answer)) || ('error' in value && (value.error === 'ENOTFOUND' || value.error === 'ENODATA'))) {
        return { value, ttlMs: pttl };
      }
    } catch {
      // Not ours or corrupted: ask upstream and overwrite it.
    }
    return undefined;
  }

  function writeRedis(key: string, value: Stored, ttlMs: number): void {
    if (!opts.redis || ttlMs <= 0) return;
    const write = withRedis((r) => r.set(prefix + key, JSON.stringify(value), 'PX', ttlMs)).then(() => undefined);
    writes.add(write);
    void write.finally(() => writes.delete(write));
  }

  async function lookup(key: string, name: string, type: string): Promise<{ value: Stored; ttl: number }> {
    const shared = await readRedis(key);
    if (shared) {
      stats.redisHits++;
      remember(key, shared.value, shared.ttlMs);
      return { value: shared.value, ttl: Math.floor(shared.ttlMs / 1000) };
    }
    stats.misses++;
    const res = await upstream(name, type);
    remember(key, res.value, res.ttl * 1000);
    writeRedis(key, res.value, res.ttl * 1000);
    return res;
  }

  async function resolveWithTtl(name: string, rrtype: string): Promise<TtlAnswer> {
    const type = rrtype.toUpperCase();
    const host = name.toLowerCase().replace(/\.$/, '');
    const key = `${type}:${host}`;
    let result: { value: Stored; ttl: number };
    const cached = entries.get(key);
    if (cached && cached.expiresAt > clock()) {
      stats.hits++;
      entries.delete(key); // most recently used goes last
      entries.set(key, cached);
      result = { value: cached.value, ttl: Math.ceil((cached.expiresAt - clock()) / 1000) };
    } else {
      if (cached) entries.delete(key);
      let pending = inflight.get(key);
      if (pending) stats.shared++;
      else {
        pending = lookup(key, host, type).finally(() => inflight.delete(key));
        inflight.set(key, pending);
      }
      result = await pending;
    }
    if ('error' in result.value) throw new NegativeAnswer(result.value.error, host, type, result.ttl);
    return { answer: copyAnswer(result.value.answer), ttl: result.ttl };
  }

  const resolve = (async (name: string, rrtype: string) => (await resolveWithTtl(name, rrtype)).answer) as CachedResolver;
  return Object.assign(resolve, {
    resolveWithTtl,
    stats,
    size: () => entries.size,
    flush: async () => {
      await Promise.all([...writes]);
    },
  });
}

/**
 * A copy the caller may change without touching the cache. Answers are at most two levels deep
 * (string[], TXT string[][], MX/SRV/SOA objects of scalars), so this equals structuredClone at a
 * fraction of its cost on every hit.
 */
function copyAnswer(answer: unknown[]): unknown[] {
  return answer.map((r) => (Array.isArray(r) ? [...r] : r !== null && typeof r === 'object' ? { ...r } : r));
}
