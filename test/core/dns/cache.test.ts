// The cache in front of the real UDP resolver and a DNS server of our own that counts queries and
// chooses TTLs; time moves through an injected clock. The Redis level runs against the real Redis
// on 127.0.0.1:6379, each test under its own key prefix, deleted afterwards.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Redis } from 'ioredis';
import type { DecodedPacket, Packet } from 'dns-packet';
import { cachedResolver, type CacheOptions } from '../../../core/dns/cache.ts';
import { createCacheRedis } from '../../../core/dns/index.ts';
import { createUdpResolver } from '../../../core/dns/udp-resolver.ts';
import { DnsError } from '../../../core/dns/types.ts';
import { RCODE, reply, startBlackHole, startDnsServer } from './dns-server.ts';

const isDnsError = (code: string) => (err: unknown) => err instanceof DnsError && err.code === code;

/**
 * Names answer by their first label: `ttlN.*` has an A record with TTL N, `nx.*` is NXDOMAIN,
 * `nodata.*` has no records, `fail.*` is SERVFAIL, `slow.*` answers after 100 ms (TTL 60).
 */
function zone(q: DecodedPacket): Promise<Packet[]> | Packet[] {
  const name = q.questions![0]!.name;
  const label = name.split('.')[0]!;
  if (label === 'nx') return [reply(q, [], { rcode: RCODE.NXDOMAIN })];
  if (label === 'nodata') return [reply(q, [])];
  if (label === 'fail') return [reply(q, [], { rcode: RCODE.SERVFAIL })];
  const ttl = label === 'slow' ? 60 : Number(/^ttl(\d+)$/.exec(label)?.[1] ?? 300);
  const answer = [reply(q, [{ type: 'A', name, ttl, data: '192.0.2.1' }])];
  return label === 'slow' ? new Promise((r) => setTimeout(() => r(answer), 100)) : answer;
}

async function setup(t: TestContext, opts: Partial<CacheOptions> = {}) {
  const server = await startDnsServer(zone);
  t.after(() => server.close());
  const udp = createUdpResolver({ servers: [server.server], timeoutMs: 1000, tries: 1 });
  t.after(() => udp.close());
  let now = 1_000_000;
  const clock = { advance: (seconds: number) => (now += seconds * 1000) };
  const resolve = cachedResolver(udp, { maxEntries: 100, maxTtlSeconds: 3600, negativeTtlSeconds: 30, clock: () => now, ...opts });
  return { server, resolve, clock, upstream: () => server.queries.length };
}

describe('dns cache', () => {
  test('answers are kept for their TTL, then asked again', async (t) => {
    const { resolve, clock, upstream } = await setup(t);
    assert.deepEqual(await resolve('ttl10.example', 'A'), ['192.0.2.1']);
    assert.deepEqual(await resolve('TTL10.Example.', 'a'), ['192.0.2.1']);
    assert.equal(upstream(), 1);
    clock.advance(9.9);
    assert.equal((await resolve.resolveWithTtl('ttl10.example', 'A')).ttl, 1);
    assert.equal(upstream(), 1);
    clock.advance(0.1);
    await resolve('ttl10.example', 'A');
    assert.equal(upstream(), 2);
    assert.deepEqual({ hits: resolve.stats.hits, misses: resolve.stats.misses }, { hits: 2, misses: 2 });
  });

  test('maxTtlSeconds caps a long TTL; TTL 0 is not kept', async (t) => {
    const { resolve, clock, upstream } = await setup(t, { maxTtlSeconds: 5 });
    await resolve('ttl86400.example', 'A');
    clock.advance(4);
    await resolve('ttl86400.example', 'A');
    assert.equal(upstream(), 1);
    clock.advance(1);
    await resolve('ttl86400.example', 'A');
    assert.equal(upstream(), 2);
    await resolve('ttl0.example', 'A');
    await resolve('ttl0.example', 'A');
    assert.equal(upstream(), 4);
  });

  test('ENOTFOUND and ENODATA are kept for negativeTtlSeconds', async (t) => {
    const { resolve, clock, upstream } = await setup(t, { negativeTtlSeconds: 30 });
    for (let i = 0; i < 2; i++) {
      await assert.rejects(resolve('nx.example', 'TXT'), isDnsError('ENOTFOUND'));
      await assert.rejects(resolve('nodata.example', 'TXT'), isDnsError('ENODATA'));
    }
    assert.equal(upstream(), 2);
    clock.advance(30);
    await assert.rejects(resolve('nx.example', 'TXT'), isDnsError('ENOTFOUND'));
    assert.equal(upstream(), 3);
  });

  test('negativeTtlSeconds 0 keeps no negative answers', async (t) => {
    const { resolve, upstream } = await setup(t, { negativeTtlSeconds: 0 });
    await assert.rejects(resolve('nx.example', 'TXT'), isDnsError('ENOTFOUND'));
    await assert.rejects(resolve('nx.example', 'TXT'), isDnsError('ENOTFOUND'));
    assert.equal(upstream(), 2);
  });

  test('SERVFAIL and timeouts are never kept', async (t) => {
    const { resolve, upstream } = await setup(t);
    await assert.rejects(resolve('fail.example', 'A'), isDnsError('ESERVFAIL'));
    await assert.rejects(resolve('fail.example', 'A'), isDnsError('ESERVFAIL'));
    assert.equal(upstream(), 2);

    const hole = await startBlackHole();
    t.after(() => hole.close());
    const silent = cachedResolver(createUdpResolver({ servers: [hole.server], timeoutMs: 100, tries: 1 }), { maxEntries: 10, maxTtlSeconds: 60, negativeTtlSeconds: 60 });
    await assert.rejects(silent('example.com', 'A'), isDnsError('ETIMEOUT'));
    await assert.rejects(silent('example.com', 'A'), isDnsError('ETIMEOUT'));
    assert.equal(hole.received(), 2);
    assert.equal(silent.size(), 0);
  });

  test('least recently used entries go first at maxEntries', async (t) => {
    const { resolve, upstream } = await setup(t, { maxEntries: 2 });
    await resolve('a.example', 'A');
    await resolve('b.example', 'A');
    await resolve('a.example', 'A'); // a is now the most recently used
    await resolve('c.example', 'A'); // evicts b
    assert.equal(resolve.size(), 2);
    assert.equal(resolve.stats.evictions, 1);
    assert.equal(upstream(), 3);
    await resolve('a.example', 'A');
    await resolve('c.example', 'A');
    assert.equal(upstream(), 3);
    await resolve('b.example', 'A');
    assert.equal(upstream(), 4);
  });

  test('ten concurrent lookups of one name make one upstream query', async (t) => {
    const { resolve, upstream } = await setup(t);
    const answers = await Promise.all(Array.from({ length: 10 }, () => resolve('slow.example', 'A')));
    assert.equal(upstream(), 1);
    for (const a of answers) assert.deepEqual(a, ['192.0.2.1']);
    assert.equal(resolve.stats.shared, 9);
    // Each caller has its own copy.
    (answers[0] as string[]).push('mutated');
    assert.deepEqual(answers[1], ['192.0.2.1']);
    assert.deepEqual(await resolve('slow.example', 'A'), ['192.0.2.1']);
  });

  test('concurrent lookups share a failure too, and the next lookup asks again', async (t) => {
    const { resolve, upstream } = await setup(t);
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => resolve('fail.example', 'A')));
    assert.ok(results.every((r) => r.status === 'rejected' && isDnsError('ESERVFAIL')(r.reason)));
    assert.equal(upstream(), 1);
    await assert.rejects(resolve('fail.example', 'A'), isDnsError('ESERVFAIL'));
    assert.equal(upstream(), 2);
  });
});

describe('dns cache with Redis', () => {
  /** A client as the service builds it; at the end, deletes the test's keys and disconnects. */
  async function redisFor(t: TestContext, url: string, prefix: string) {
    const redis = createCacheRedis(url);
    t.after(async () => {
      if (redis.status === 'ready') {
        const keys = await redis.keys(`${prefix}*`);
        if (keys.length) await redis.del(...keys);
      }
      await redis.quit().catch(() => redis.disconnect());
    });
    return redis;
  }

  test('two cache instances share answers through Redis', async (t) => {
    const prefix = `test:dns:${randomUUID()}:`;
    const server = await startDnsServer(zone);
    t.after(() => server.close());
    const redis = await redisFor(t, 'redis://127.0.0.1:6379', prefix);
    await new Promise<void>((r) => (redis.status === 'ready' ? r() : redis.once('ready', () => r())));
    const instance = () => {
      const udp = createUdpResolver({ servers: [server.server], timeoutMs: 1000, tries: 1 });
      t.after(() => udp.close());
      return cachedResolver(udp, { maxEntries: 100, maxTtlSeconds: 3600, negativeTtlSeconds: 30, redis, prefix });
    };
    const first = instance();
    const second = instance();

    assert.deepEqual(await first('ttl300.example', 'A'), ['192.0.2.1']);
    await assert.rejects(first('nx.example', 'TXT'), isDnsError('ENOTFOUND'));
    await first.flush();
    assert.equal(server.queries.length, 2);

    const stored = JSON.parse((await redis.get(`${prefix}A:ttl300.example`)) ?? 'null') as unknown;
    assert.deepEqual(stored, { answer: ['192.0.2.1'] });
    const pttl = await redis.pttl(`${prefix}A:ttl300.example`);
    assert.ok(pttl > 295_000 && pttl <= 300_000, `pttl ${pttl}`);
    assert.ok((await redis.pttl(`${prefix}TXT:nx.example`)) <= 30_000);

    const answer = await second.resolveWithTtl('TTL300.example.', 'A');
    assert.deepEqual(answer.answer, ['192.0.2.1']);
    assert.ok(answer.ttl > 290 && answer.ttl <= 300);
    await assert.rejects(second('nx.example', 'TXT'), isDnsError('ENOTFOUND'));
    assert.equal(server.queries.length, 2, 'the second instance asked Redis, not DNS');
    assert.equal(second.stats.redisHits, 2);
    // Now in the second instance's own cache.
    await second('ttl300.example', 'A');
    assert.equal(second.stats.hits, 1);
    assert.equal(second.stats.redisErrors, 0);
  });

  test('Redis down: lookups still work, in process only, and the outage is logged once', async (t) => {
    const server = await startDnsServer(zone);
    t.after(() => server.close());
    const prefix = `test:dns:${randomUUID()}:`;
    const redis = await redisFor(t, 'redis://127.0.0.1:1', prefix);
    const lines: Array<{ level: number; msg: string }> = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string }), cb()) });
    const log = pino({ level: 'info' }, sink);
    const udp = createUdpResolver({ servers: [server.server], timeoutMs: 1000, tries: 1 });
    t.after(() => udp.close());
    const resolve = cachedResolver(udp, { maxEntries: 100, maxTtlSeconds: 3600, negativeTtlSeconds: 30, redis, log, prefix });

    const start = Date.now();
    for (const name of ['a.example', 'b.example', 'a.example']) assert.deepEqual(await resolve(name, 'A'), ['192.0.2.1']);
    await assert.rejects(resolve('nx.example', 'A'), isDnsError('ENOTFOUND'));
    await resolve.flush();
    assert.ok(Date.now() - start < 1000, 'Redis errors do not hold lookups up');
    assert.equal(server.queries.length, 3);
    assert.equal(resolve.stats.hits, 1);
    assert.ok(resolve.stats.redisErrors >= 3);
    const warnings = lines.filter((l) => /Redis unavailable/.test(l.msg));
    assert.equal(warnings.length, 1);
  });

  test('a Redis that does not answer in time is skipped', async (t) => {
    // A TCP listener that accepts and never replies: ioredis connects, then waits forever.
    const sockets = new Set<net.Socket>();
    const mute = net.createServer((s) => sockets.add(s));
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', () => r()));
    t.after(() => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => mute.close(() => r()));
    });
    const redis = new Redis({ port: (mute.address() as { port: number }).port, host: '127.0.0.1', lazyConnect: false, maxRetriesPerRequest: 0 });
    redis.on('error', () => undefined);
    t.after(() => redis.disconnect());
    const server = await startDnsServer(zone);
    t.after(() => server.close());
    const udp = createUdpResolver({ servers: [server.server], timeoutMs: 1000, tries: 1 });
    t.after(() => udp.close());
    const resolve = cachedResolver(udp, { maxEntries: 100, maxTtlSeconds: 3600, negativeTtlSeconds: 30, redis, redisTimeoutMs: 100, prefix: `test:dns:${randomUUID()}:` });
    const start = Date.now();
    assert.deepEqual(await resolve('a.example', 'A'), ['192.0.2.1']);
    assert.ok(Date.now() - start < 1000, `took ${Date.now() - start}ms`);
    await resolve.flush();
    assert.ok(resolve.stats.redisErrors >= 1);
  });
});
