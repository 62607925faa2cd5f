// createResolver: the resolver the services get from the `dns` config section, against a private
// dnsmasq and the real Redis.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { dnsSchema } from '../../../core/config/milter-checks.ts';
import { createResolver, DnsError } from '../../../core/dns/index.ts';
import { silentLogger } from '../../../core/log.ts';
import { startDnsmasq } from '../../harness/dnsmasq.ts';

test('createResolver builds the cached resolver from config', async (t) => {
  const dnsmasq = await startDnsmasq({ txt: { 'example.test': ['v=spf1 -all'] } });
  t.after(() => dnsmasq.stop());
  const resolver = createResolver(dnsSchema.parse({ servers: [dnsmasq.server] }), { log: silentLogger });
  t.after(() => resolver.close());
  assert.deepEqual(await resolver.resolve('example.test', 'TXT'), [['v=spf1 -all']]);
  assert.deepEqual(await resolver.resolve('example.test', 'TXT'), [['v=spf1 -all']]);
  await assert.rejects(resolver.resolve('nope.example.test', 'TXT'), (e) => e instanceof DnsError && e.code === 'ENOTFOUND');
  assert.deepEqual({ hits: resolver.stats.hits, misses: resolver.stats.misses }, { hits: 1, misses: 2 });
});

test('with the cache off, every lookup goes to the server', async (t) => {
  const dnsmasq = await startDnsmasq({ a: { 'h.example.test': ['192.0.2.1'] } });
  t.after(() => dnsmasq.stop());
  const resolver = createResolver(dnsSchema.parse({ servers: [dnsmasq.server], cache: { enabled: false } }), { log: silentLogger });
  t.after(() => resolver.close());
  await resolver.resolve('h.example.test', 'A');
  await resolver.resolve('h.example.test', 'A');
  assert.equal(dnsmasq.output().match(/query\[A\] h\.example\.test/g)?.length, 2);
  assert.equal(resolver.stats.hits, 0);
});

test('cache.redisUrl: the resolver opens its own Redis client and shares answers there', async (t) => {
  const dnsmasq = await startDnsmasq({ a: { 'h.example.test': ['192.0.2.1'] } });
  t.after(() => dnsmasq.stop());
  const config = dnsSchema.parse({ servers: [dnsmasq.server], cache: { redisUrl: 'redis://127.0.0.1:6379/0' } });
  const check = new Redis({ host: '127.0.0.1', port: 6379, db: 0 });
  // The default key prefix is shared by every process: use names of our own and delete their keys.
  const uid = randomUUID().slice(0, 8);
  const keys: string[] = [];
  t.after(async () => {
    if (keys.length) await check.del(...keys);
    await check.quit();
  });
  const resolver = createResolver(config, { log: silentLogger });
  t.after(() => resolver.close());
  // The client connects in the background; until it is ready, lookups skip Redis.
  let key = '';
  for (let i = 0; i < 100; i++) {
    const name = `n${i}-${uid}.example.test`;
    key = `ceerion:dns:A:${name}`;
    keys.push(key);
    await assert.rejects(resolver.resolve(name, 'A'), (e) => e instanceof DnsError && e.code === 'ENOTFOUND');
    await new Promise((r) => setTimeout(r, 20));
    if (await check.exists(key)) break;
  }
  await resolver.close();
  assert.deepEqual(JSON.parse((await check.get(key)) ?? 'null'), { error: 'ENOTFOUND' });
  const pttl = await check.pttl(key);
  assert.ok(pttl > 0 && pttl <= 300_000, `pttl ${pttl}`);
});
