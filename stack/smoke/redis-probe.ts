/**
 * A client address the rate limiter has never seen. Random TEST-NET addresses are 762, so two runs
 * within the hour could draw the same one, and a previous run's 100 messages would still fill its
 * bucket: the first message would be deferred and the rate check would fail for no fault of the
 * stack. So each drawn address is looked up in the policy service's Redis (any key prefix: the
 * key ends `rl:clientIp:ip:ADDR`, policyd/store/redis-store.ts) and redrawn when it has a bucket.
 * Without Redis access the drawn address is used as is.
 */
import { Redis } from 'ioredis';
import { randomTestNetAddress, type SmokeContext } from './context.ts';

const TRIES = 20;

export async function freshClientAddress(ctx: SmokeContext): Promise<string> {
  const url = ctx.state.endpoints.redisUrl;
  let redis: Redis | undefined;
  try {
    redis = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: 1_000, commandTimeout: 2_000, retryStrategy: () => null });
    redis.on('error', () => {});
    await redis.connect();
  } catch {
    redis?.disconnect();
    return randomTestNetAddress(ctx.usedAddresses);
  }
  try {
    for (let i = 0; ; i++) {
      const addr = randomTestNetAddress(ctx.usedAddresses);
      if (i === TRIES - 1 || !(await hasBucket(redis, addr))) return addr;
    }
  } catch {
    return randomTestNetAddress(ctx.usedAddresses);
  } finally {
    redis.disconnect();
  }
}

async function hasBucket(redis: Redis, addr: string): Promise<boolean> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `*rl:clientIp:ip:${addr}`, 'COUNT', 1000);
    if (keys.length > 0) return true;
    cursor = next;
  } while (cursor !== '0');
  return false;
}
