/**
 * The policy store alone: RedisPolicyStore.decide() against the Redis at 127.0.0.1:6379 (or
 * --url), with the RCPT-stage mix of three limits (per client IP and per SASL user peeked, per
 * recipient spent), at 1, 16 and 64 concurrent callers sharing one client, as the policy service
 * does. Prints decisions/s, p50/p99 latency of one decide(), and round trips per decision (the
 * store's own count, and Redis's EVALSHA count over the run, which must agree).
 *
 * Limits are set high so decisions are mostly allowed, as on a healthy server; the buckets vary
 * over 1,000 clients, 100 users and 5,000 recipients. Keys go under a prefix of their own,
 * removed at the end.
 *
 *   node --import tsx bench/policyd/store.ts [--decisions 50000] [--url redis://127.0.0.1:6379]
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { Redis } from 'ioredis';
import { createRedis, redisReady } from '../../core/redis.ts';
import { RedisPolicyStore } from '../../policyd/store/redis-store.ts';
import type { LimitSpec } from '../../policyd/types.ts';
import { percentile, table } from '../lib/stats.ts';

const argv = process.argv.slice(2);
const arg = (name: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : undefined);
const DECISIONS = Number(arg('decisions')) || 50_000;
const URL = arg('url') ?? 'redis://127.0.0.1:6379';
const CONCURRENCY = [1, 16, 64];
const LIMIT = 1_000_000;

function limitsFor(i: number): LimitSpec[] {
  return [
    { name: 'clientIp', key: `ip:198.51.${(i % 1000) >> 8}.${i % 256}/32`, count: LIMIT, periodSeconds: 3600, cost: 1, mode: 'peek' },
    { name: 'saslUser', key: `user:user${i % 100}`, count: LIMIT, periodSeconds: 3600, cost: 1, mode: 'peek' },
    { name: 'recipient', key: `rcpt:r${i % 5000}@example.org`, count: LIMIT, periodSeconds: 3600, cost: 1, mode: 'consume' },
  ];
}

async function evalshaCalls(admin: Redis): Promise<number> {
  const stats = await admin.info('commandstats');
  const n = (cmd: string) => Number(new RegExp(`^cmdstat_${cmd}:calls=(\\d+)`, 'm').exec(stats)?.[1] ?? 0);
  return n('evalsha') + n('eval');
}

/** `total` decisions from `callers` concurrent loops, each awaiting its previous decision. */
async function run(store: RedisPolicyStore, callers: number, total: number): Promise<{ seconds: number; latencies: number[] }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      for (let i = next++; i < total; i = next++) {
        const t0 = performance.now();
        await store.decide({ limits: limitsFor(i) });
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { seconds: (performance.now() - started) / 1000, latencies: latencies.sort((a, b) => a - b) };
}

async function main(): Promise<void> {
  const prefix = `ceerion-bench:${randomUUID().slice(0, 8)}:`;
  const client = createRedis({ url: URL, keyPrefix: prefix, commandTimeoutMs: 2_000 });
  const admin = new Redis(URL);
  await Promise.all([redisReady(client), redisReady(admin)]);
  const store = new RedisPolicyStore(client);
  try {
    await run(store, 16, 2_000); // warm up: JIT, the script cached on the connection
    const rows: Array<Array<string | number>> = [];
    for (const callers of CONCURRENCY) {
      const trips0 = store.roundTrips;
      const redis0 = await evalshaCalls(admin);
      const { seconds, latencies } = await run(store, callers, DECISIONS);
      const trips = (store.roundTrips - trips0) / DECISIONS;
      // Other clients of a shared Redis may run scripts too; on a private one this is exact.
      const redisTrips = ((await evalshaCalls(admin)) - redis0) / DECISIONS;
      rows.push([callers, DECISIONS, Math.round(DECISIONS / seconds).toLocaleString('en-US'), percentile(latencies, 50), percentile(latencies, 99), trips, redisTrips]);
    }
    const version = /^redis_version:(\S+)/m.exec(await admin.info('server'))?.[1] ?? '?';
    console.log(`\nRedisPolicyStore.decide(), 3 limits (IP + user peeked, recipient spent); Redis ${version} at ${URL}; ${os.cpus().length} cores\n`);
    console.log(table(['callers', 'decisions', 'decisions/s', 'p50 ms', 'p99 ms', 'round trips/decision', 'Redis EVALSHA/decision'], rows));
  } finally {
    let cursor = '0';
    do {
      const [nextCursor, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = nextCursor;
      if (keys.length) await admin.del(...keys);
    } while (cursor !== '0');
    await store.close();
    admin.disconnect();
  }
}

await main();
