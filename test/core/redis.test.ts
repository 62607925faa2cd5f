/**
 * WriteCoalescer against a private redis-server: commands issued in one event-loop turn reach
 * Redis in one read, and every reply still goes to its own command.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createRedis, redisReady, WriteCoalescer } from '../../core/redis.ts';
import { startRedis, type PrivateRedis } from '../harness/redis.ts';

let server: PrivateRedis;
before(async () => {
  server = await startRedis();
});
after(async () => {
  await server.close();
});

/** Redis's own count of socket reads it has processed. */
async function readsProcessed(info: string): Promise<number> {
  const m = /^total_reads_processed:(\d+)/m.exec(info);
  assert.ok(m, 'INFO stats has total_reads_processed');
  return Number(m[1]);
}

async function readsFor(redis: ReturnType<typeof createRedis>, coalesce: boolean, n: number): Promise<{ reads: number; replies: string[] }> {
  const stats = createRedis({ url: server.url, keyPrefix: '', commandTimeoutMs: 2_000 });
  try {
    return await countReads(redis, stats, coalesce, n);
  } finally {
    await stats.quit();
  }
}

async function countReads(redis: ReturnType<typeof createRedis>, stats: ReturnType<typeof createRedis>, coalesce: boolean, n: number): Promise<{ reads: number; replies: string[] }> {
  await redisReady(stats);
  const coalescer = new WriteCoalescer(redis);
  const before = await readsProcessed(await stats.info('stats'));
  const pending: Array<Promise<string>> = [];
  for (let i = 0; i < n; i++) {
    if (coalesce) coalescer.hold();
    pending.push(redis.echo(`m${i}`));
  }
  const replies = await Promise.all(pending);
  // Minus the INFO that reads the counter after.
  const reads = (await readsProcessed(await stats.info('stats'))) - before - 1;
  return { reads, replies };
}

test('commands held in one turn reach Redis in one read, each with its own reply', async (t) => {
  const redis = createRedis({ url: server.url, keyPrefix: 'wc:', commandTimeoutMs: 2_000 });
  t.after(() => redis.disconnect());
  await redisReady(redis);
  const held = await readsFor(redis, true, 64);
  assert.deepEqual(held.replies, Array.from({ length: 64 }, (_, i) => `m${i}`));
  assert.ok(held.reads <= 2, `64 held commands took ${held.reads} reads`);
  // Without it, Node writes each command as it is issued.
  const loose = await readsFor(redis, false, 64);
  assert.deepEqual(loose.replies, held.replies);
  assert.ok(loose.reads > held.reads, `unheld: ${loose.reads} reads, held: ${held.reads}`);
});

test('holding while disconnected does nothing; commands fail fast as before, then work after reconnect', async (t) => {
  const redis = createRedis({ url: server.url, keyPrefix: 'wc:', commandTimeoutMs: 2_000 });
  t.after(() => redis.disconnect());
  await redisReady(redis);
  const coalescer = new WriteCoalescer(redis);
  await server.stop();
  await new Promise((r) => setTimeout(r, 100));
  coalescer.hold();
  await assert.rejects(redis.echo('x'));
  await server.start();
  await redisReady(redis, 3_000).catch(() => undefined);
  for (let i = 0; i < 50 && redis.status !== 'ready'; i++) await new Promise((r) => setTimeout(r, 100));
  coalescer.hold();
  assert.equal(await redis.echo('back'), 'back');
});
