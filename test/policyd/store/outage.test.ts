// What the store does when Redis goes away, on a private redis-server this test may stop, hang
// and restart: decisions reject with a StoreError (never hang, never guess a verdict), and come
// back by themselves once Redis does. Deadlines here are generous bounds against hanging, not
// performance measurements.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { createRedis, redisReady } from '../../../core/redis.ts';
import { RedisPolicyStore, StoreError } from '../../../policyd/store/redis-store.ts';
import type { LimitSpec, StoreDecision } from '../../../policyd/types.ts';
import { startRedis, type PrivateRedis } from '../../harness/redis.ts';

const limits: LimitSpec[] = [{ name: 'clientIp', key: 'ip:192.0.2.7/32', count: 100, periodSeconds: 3600, cost: 1, mode: 'consume' }];

/** The promise's outcome, or a failure if it is still pending after `ms` (so a hang fails the test instead of stalling it). */
async function within<T>(ms: number, p: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms);
  });
  try {
    return { value: await Promise.race([p, deadline]) };
  } catch (error) {
    if ((error as Error).message === `still pending after ${ms} ms`) throw error;
    return { error };
  } finally {
    clearTimeout(timer);
  }
}

/** Decide every 50 ms until one succeeds; fails after `ms`. Returns the attempts it took. */
async function pollUntilDecides(store: RedisPolicyStore, ms: number): Promise<{ attempts: number; decision: StoreDecision }> {
  const deadline = Date.now() + ms;
  for (let attempts = 1; ; attempts++) {
    try {
      return { attempts, decision: await store.decide({ limits }) };
    } catch (err) {
      assert.ok(err instanceof StoreError, `only StoreErrors while recovering, got ${String(err)}`);
      if (Date.now() > deadline) throw new Error(`no decision within ${ms} ms of Redis coming back: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe('Redis outages', () => {
  let redis: PrivateRedis;
  let client: Redis;
  let store: RedisPolicyStore;

  before(async () => {
    redis = await startRedis();
    // The production client settings (no offline queue, reconnect every 100–500 ms), with the
    // default 250 ms command timeout.
    client = createRedis({ url: redis.url, keyPrefix: 'outage:', commandTimeoutMs: 250 });
    await redisReady(client);
    store = new RedisPolicyStore(client);
  });
  after(async () => {
    await store.close();
    await redis.close();
  });

  test('Redis stopped: decide rejects with StoreError at once; restarted: decisions resume', async (t) => {
    assert.equal((await store.decide({ limits })).allowed, true);
    await redis.stop();

    // Stay down for about 1.5 s, long enough for the client's reconnect delay to reach its 500 ms cap.
    for (let i = 0; i < 5; i++) {
      const { error } = await within(2_000, store.decide({ limits }));
      assert.ok(error instanceof StoreError, `attempt ${i}: ${String(error)}`);
      assert.equal(error.kind, 'unavailable');
      assert.match(error.message, /Redis unavailable/);
      await new Promise((r) => setTimeout(r, 300));
    }

    await redis.start();
    const started = Date.now();
    const { decision } = await pollUntilDecides(store, 5_000);
    // Redis came back empty (no persistence): the bucket starts over.
    assert.deepEqual(decision.results.map((r) => [r.allowed, r.remaining]), [[true, 99]]);
    // Reported for the record; the bound above is only a guard against hanging.
    t.diagnostic(`decisions resumed ${Date.now() - started} ms after redis-server answered PING`);
  });

  test('Redis hung (SIGSTOP): decide rejects with a timeout StoreError; resumed: decisions resume', async () => {
    assert.equal((await store.decide({ limits })).allowed, true);
    const pid = redis.pid();
    assert.ok(pid, 'the private Redis is running');
    process.kill(pid, 'SIGSTOP');
    try {
      const { error } = await within(5_000, store.decide({ limits }));
      assert.ok(error instanceof StoreError, String(error));
      assert.equal(error.kind, 'timeout');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await pollUntilDecides(store, 5_000);
  });
});
