// RedisPolicyStore and decide.lua against a real Redis: the shared one at 127.0.0.1:6379 with a
// key prefix of its own per test (removed afterwards), and a private redis-server where the test
// reads server-wide statistics. Time is injected (nowMs) wherever the outcome depends on it; key
// TTLs are read back with PTTL, since they run on Redis's real clock.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import type { GreylistConfig } from '../../../core/config/policyd.ts';
import { greylistSchema } from '../../../core/config/policyd.ts';
import { createRedis, redisReady } from '../../../core/redis.ts';
import { RedisPolicyStore, StoreError } from '../../../policyd/store/redis-store.ts';
import type { GreylistTriplet, LimitSpec } from '../../../policyd/types.ts';
import { startRedis, type PrivateRedis } from '../../harness/redis.ts';

const SHARED_URL = process.env.CEERION_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const HOUR = 3_600_000;
const T0 = 1_700_000_000_000; // an injected "now"; any value works

interface Fixture {
  store: RedisPolicyStore;
  /** A client without the prefix, to read keys as Redis stores them. */
  raw: Redis;
  prefix: string;
  /** Every key of this test, without the prefix. */
  keys(): Promise<string[]>;
}

async function fixture(t: TestContext, opts: { url?: string; hashTag?: string } = {}): Promise<Fixture> {
  const url = opts.url ?? SHARED_URL;
  const prefix = `ceerion-test:${randomUUID().slice(0, 12)}:`;
  const client = createRedis({ url, keyPrefix: prefix, commandTimeoutMs: 2_000 });
  const raw = new Redis(url, { lazyConnect: false });
  await Promise.all([redisReady(client), redisReady(raw)]);
  const store = new RedisPolicyStore(client, opts.hashTag ? { hashTag: opts.hashTag } : {});
  const keys = async () => {
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
    await store.close();
    raw.disconnect();
  });
  return { store, raw, prefix, keys };
}

const limit = (over: Partial<LimitSpec> = {}): LimitSpec => ({ name: 'clientIp', key: 'ip:192.0.2.7/32', count: 100, periodSeconds: 3600, cost: 1, mode: 'consume', ...over });
const greylistConfig = (over: Partial<GreylistConfig> = {}): GreylistConfig => greylistSchema.parse({ enabled: true, ...over });
const triplet = (over: Partial<GreylistTriplet> = {}): GreylistTriplet => ({ client: '192.0.2.0/24', sender: 'alice@example.org', recipient: 'bob@example.net', ...over });

describe('rate limits (GCRA)', () => {
  test('100 per hour: 100 allowed, the 101st refused for 36 s, then one more after 36 s', async (t) => {
    const { store, raw, prefix } = await fixture(t);
    const l = limit();
    for (let i = 1; i <= 100; i++) {
      const d = await store.decide({ limits: [l], nowMs: T0 });
      assert.equal(d.allowed, true, `request ${i}`);
      assert.deepEqual(d.results, [{ name: 'clientIp', key: l.key, allowed: true, remaining: 100 - i, retryAfterSeconds: 0 }]);
    }
    const stored = await raw.get(`${prefix}rl:clientIp:${l.key}`);
    const refused = await store.decide({ limits: [l], nowMs: T0 });
    assert.equal(refused.allowed, false);
    assert.deepEqual(refused.results, [{ name: 'clientIp', key: l.key, allowed: false, remaining: 0, retryAfterSeconds: 36 }]);
    assert.equal(await raw.get(`${prefix}rl:clientIp:${l.key}`), stored, 'a refused request spends nothing');

    assert.equal((await store.decide({ limits: [l], nowMs: T0 + 35_000 })).allowed, false, 'not yet');
    assert.equal((await store.decide({ limits: [l], nowMs: T0 + 36_000 })).allowed, true);
    const again = await store.decide({ limits: [l], nowMs: T0 + 36_000 });
    assert.deepEqual([again.allowed, again.results[0]!.retryAfterSeconds], [false, 36]);
  });

  test('cost: a byte limit is spent by message size', async (t) => {
    const { store } = await fixture(t);
    const l = (cost: number) => limit({ name: 'sizeBytes', key: 'user:alice', count: 1_000_000, periodSeconds: 3600, cost });
    const first = await store.decide({ limits: [l(600_000)], nowMs: T0 });
    assert.deepEqual([first.allowed, first.results[0]!.remaining], [true, 400_000]);
    // 500 kB does not fit in 400 kB; it would once 100 kB drained back (0.1 h = 360 s).
    const big = await store.decide({ limits: [l(500_000)], nowMs: T0 });
    assert.deepEqual([big.allowed, big.results[0]!.remaining, big.results[0]!.retryAfterSeconds], [false, 0, 360]);
    const fits = await store.decide({ limits: [l(400_000)], nowMs: T0 });
    assert.deepEqual([fits.allowed, fits.results[0]!.remaining], [true, 0]);
    assert.equal((await store.decide({ limits: [l(100_000)], nowMs: T0 + 360_000 })).allowed, true);
  });

  test('all or nothing: one refusing limit means no limit is spent', async (t) => {
    const { store, keys } = await fixture(t);
    const ip = limit({ name: 'clientIp', key: 'ip:a', count: 10 });
    const user = limit({ name: 'saslUser', key: 'user:alice', count: 1 });
    assert.equal((await store.decide({ limits: [user], nowMs: T0 })).allowed, true);
    const d = await store.decide({ limits: [ip, user], nowMs: T0 });
    assert.equal(d.allowed, false);
    assert.deepEqual(
      d.results.map((r) => [r.name, r.allowed, r.remaining]),
      [
        ['clientIp', true, 10], // would have allowed, but was not spent: all 10 still there
        ['saslUser', false, 0],
      ],
    );
    assert.deepEqual(await keys(), ['rl:saslUser:user:alice'], 'the IP bucket was never written');
  });

  test('peek never spends, and refuses when a consume would', async (t) => {
    const { store, keys } = await fixture(t);
    const peek = limit({ count: 2, mode: 'peek' });
    for (let i = 0; i < 5; i++) {
      const d = await store.decide({ limits: [peek], nowMs: T0 });
      assert.deepEqual([d.allowed, d.results[0]!.remaining], [true, 2]);
    }
    assert.deepEqual(await keys(), []);
    await store.decide({ limits: [limit({ count: 2 })], nowMs: T0 });
    await store.decide({ limits: [limit({ count: 2 })], nowMs: T0 });
    const full = await store.decide({ limits: [peek], nowMs: T0 });
    assert.deepEqual([full.allowed, full.results[0]!.retryAfterSeconds], [false, 1800]);
  });

  test('remaining and retryAfter as the bucket drains; count 0 is unlimited and stores nothing', async (t) => {
    const { store, keys } = await fixture(t);
    const l = limit({ count: 10, periodSeconds: 60 }); // one unit every 6 s
    for (let i = 0; i < 3; i++) await store.decide({ limits: [l], nowMs: T0 });
    const peek = (at: number) => store.decide({ limits: [{ ...l, mode: 'peek' }], nowMs: at }).then((d) => d.results[0]!.remaining);
    assert.equal(await peek(T0), 7);
    assert.equal(await peek(T0 + 5_000), 7);
    assert.equal(await peek(T0 + 6_000), 8);
    assert.equal(await peek(T0 + 18_000), 10);
    assert.equal(await peek(T0 + 600_000), 10, 'never more than the burst');
    for (let i = 0; i < 7; i++) await store.decide({ limits: [l], nowMs: T0 });
    const refused = await store.decide({ limits: [{ ...l, cost: 3 }], nowMs: T0 + 1_000 });
    assert.equal(refused.results[0]!.retryAfterSeconds, 17, '3 units: 18 s after T0, 17 s after the request');

    const before = await keys();
    const unlimited = await store.decide({ limits: [limit({ name: 'sender', key: 'from:x', count: 0 })], nowMs: T0 });
    assert.deepEqual(unlimited.results, [{ name: 'sender', key: 'from:x', allowed: true, remaining: Infinity, retryAfterSeconds: 0 }]);
    assert.deepEqual(await keys(), before);
  });

  test("a bucket's key expires when its TAT passes", async (t) => {
    const { store, raw, prefix } = await fixture(t);
    await store.decide({ limits: [limit({ count: 100, periodSeconds: 3600 })] }); // Redis's clock
    const pttl = await raw.pttl(`${prefix}rl:clientIp:ip:192.0.2.7/32`);
    assert.ok(pttl > 0 && pttl <= 36_000, `one emission interval (36 s), not the period: ${pttl}`);
    const tat = Number(await raw.get(`${prefix}rl:clientIp:ip:192.0.2.7/32`));
    assert.ok(Math.abs(tat - (Date.now() + 36_000)) < 60_000, `TAT from Redis TIME, near this clock: ${tat}`);
  });

  test('bad limits are a RangeError, not a store error', async (t) => {
    const { store } = await fixture(t);
    await assert.rejects(store.decide({ limits: [limit({ count: 1.5 })] }), RangeError);
    await assert.rejects(store.decide({ limits: [limit({ periodSeconds: 0 })] }), RangeError);
    await assert.rejects(store.decide({ limits: [limit({ cost: -1 })] }), RangeError);
    assert.equal(store.roundTrips, 0);
  });

  test('an error reply from Redis is a StoreError of kind reply', async (t) => {
    const { store, raw, prefix } = await fixture(t);
    await raw.hset(`${prefix}rl:clientIp:ip:192.0.2.7/32`, 'not', 'a string');
    await assert.rejects(store.decide({ limits: [limit()] }), (err: unknown) => err instanceof StoreError && err.kind === 'reply' && /WRONGTYPE/.test(err.message));
  });
});

describe('message instance', () => {
  test('the same instance is counted once; a refused one is not remembered', async (t) => {
    const { store, raw, prefix } = await fixture(t);
    const l = limit({ count: 2 });
    const first = await store.decide({ limits: [l], instance: 'A1B2C3.1', nowMs: T0 });
    assert.deepEqual([first.allowed, first.duplicate, first.results[0]!.remaining], [true, undefined, 1]);
    for (let i = 0; i < 3; i++) {
      const again = await store.decide({ limits: [l], instance: 'A1B2C3.1', nowMs: T0 });
      assert.deepEqual([again.allowed, again.duplicate, again.results[0]!.remaining], [true, true, 1]);
    }
    const pttl = await raw.pttl(`${prefix}inst:A1B2C3.1`);
    assert.ok(pttl > 3_500_000 && pttl <= HOUR, `about an hour: ${pttl}`);

    assert.equal((await store.decide({ limits: [l], instance: 'D4.2', nowMs: T0 })).allowed, true);
    // Even a full bucket lets a repeat of a counted message through: it was allowed the first time.
    const repeat = await store.decide({ limits: [l], instance: 'D4.2', nowMs: T0 });
    assert.deepEqual([repeat.allowed, repeat.duplicate], [true, true]);

    const refused = await store.decide({ limits: [l], instance: 'E5.3', nowMs: T0 });
    assert.deepEqual([refused.allowed, refused.duplicate], [false, undefined]);
    assert.equal(await raw.exists(`${prefix}inst:E5.3`), 0);
    const later = await store.decide({ limits: [l], instance: 'E5.3', nowMs: T0 + HOUR });
    assert.deepEqual([later.allowed, later.duplicate], [true, undefined]);
  });
});

describe('greylisting', () => {
  test('new → early → passed → known, with TTLs of the retry window and then the retention', async (t) => {
    const { store, raw, prefix, keys } = await fixture(t);
    const config = greylistConfig(); // 300 s, 48 h, 35 days, auto-allow after 5
    const ask = (at: number, tr = triplet()) => store.decide({ limits: [], greylist: { triplet: tr, config }, nowMs: at });
    const tripletKey = `${prefix}gl:t:192.0.2.0/24|alice@example.org|bob@example.net`;

    assert.deepEqual((await ask(T0)).greylist, { pass: false, reason: 'new', retryAfterSeconds: 300 });
    let pttl = await raw.pttl(tripletKey);
    assert.ok(pttl > 48 * HOUR - 60_000 && pttl <= 48 * HOUR, `retry window: ${pttl}`);

    assert.deepEqual((await ask(T0 + 100_000)).greylist, { pass: false, reason: 'early', retryAfterSeconds: 200 });
    assert.deepEqual((await ask(T0 + 299_001)).greylist, { pass: false, reason: 'early', retryAfterSeconds: 1 });
    assert.deepEqual((await ask(T0 + 300_000)).greylist, { pass: true, reason: 'passed' });
    pttl = await raw.pttl(tripletKey);
    assert.ok(pttl > 35 * 24 * HOUR - 60_000 && pttl <= 35 * 24 * HOUR, `retention: ${pttl}`);
    assert.equal(await raw.get(`${prefix}gl:c:192.0.2.0/24`), '1');

    assert.deepEqual((await ask(T0 + 400_000)).greylist, { pass: true, reason: 'known' });
    assert.deepEqual((await ask(T0 + 30 * 24 * HOUR)).greylist, { pass: true, reason: 'known' });
    assert.equal(await raw.get(`${prefix}gl:c:192.0.2.0/24`), '1', 'a known triplet is counted once');
    assert.deepEqual(await keys(), ['gl:c:192.0.2.0/24', 'gl:t:192.0.2.0/24|alice@example.org|bob@example.net']);
    // The recipient is keyed lower-case: the same triplet.
    assert.deepEqual((await ask(T0 + 500_000, triplet({ recipient: 'Bob@Example.NET' }))).greylist, { pass: true, reason: 'known' });
  });

  test('a first retry after the retry window starts over', async (t) => {
    const { store } = await fixture(t);
    const config = greylistConfig({ retryWindowHours: 1 });
    const ask = (at: number) => store.decide({ limits: [], greylist: { triplet: triplet(), config }, nowMs: at }).then((d) => d.greylist);
    assert.deepEqual(await ask(T0), { pass: false, reason: 'new', retryAfterSeconds: 300 });
    assert.deepEqual(await ask(T0 + HOUR + 1), { pass: false, reason: 'new', retryAfterSeconds: 300 });
    assert.deepEqual(await ask(T0 + HOUR + 1 + 300_000), { pass: true, reason: 'passed' });
  });

  test('a client network with enough passed triplets is auto-allowed, without a triplet', async (t) => {
    const { store, keys } = await fixture(t);
    const config = greylistConfig({ autoAllowAfter: 2 });
    const ask = (at: number, recipient: string) => store.decide({ limits: [], greylist: { triplet: triplet({ recipient }), config }, nowMs: at }).then((d) => d.greylist);
    for (const r of ['r1@example.net', 'r2@example.net']) {
      assert.equal((await ask(T0, r))?.reason, 'new');
      assert.equal((await ask(T0 + 300_000, r))?.reason, 'passed');
    }
    assert.deepEqual(await ask(T0 + 300_000, 'r3@example.net'), { pass: true, reason: 'auto-allowed' });
    assert.ok(!(await keys()).some((k) => k.includes('r3@')), 'no triplet stored');
    // Another network is not.
    const other = await store.decide({ limits: [], greylist: { triplet: triplet({ client: '198.51.100.0/24' }), config }, nowMs: T0 });
    assert.equal(other.greylist?.reason, 'new');
    // Off (0): counted passes do not matter.
    const off = await store.decide({ limits: [], greylist: { triplet: triplet({ recipient: 'r4@example.net' }), config: greylistConfig({ autoAllowAfter: 0 }) }, nowMs: T0 });
    assert.equal(off.greylist?.reason, 'new');
  });

  test('a delay of 0 passes a new triplet at once', async (t) => {
    const { store } = await fixture(t);
    const d = await store.decide({ limits: [], greylist: { triplet: triplet(), config: greylistConfig({ delaySeconds: 0 }) }, nowMs: T0 });
    assert.deepEqual(d.greylist, { pass: true, reason: 'passed' });
  });

  test('not checked (and not recorded) when a limit refuses', async (t) => {
    const { store, keys } = await fixture(t);
    const l = limit({ count: 1 });
    await store.decide({ limits: [l], nowMs: T0 });
    const d = await store.decide({ limits: [l], greylist: { triplet: triplet(), config: greylistConfig() }, nowMs: T0 });
    assert.equal(d.allowed, false);
    assert.equal(d.greylist, undefined);
    assert.ok(!(await keys()).some((k) => k.startsWith('gl:')));
  });
});

describe('keys', () => {
  test('every key the store writes has a TTL', async (t) => {
    const { store, raw, prefix, keys } = await fixture(t);
    const config = greylistConfig({ autoAllowAfter: 1 });
    const limits = [limit(), limit({ name: 'saslUser', key: 'user:alice' }), limit({ name: 'recipient', key: 'rcpt:bob@example.net', mode: 'peek' })];
    await store.decide({ limits, instance: 'X.1', greylist: { triplet: triplet(), config }, nowMs: T0 });
    await store.decide({ limits, instance: 'X.1', greylist: { triplet: triplet(), config }, nowMs: T0 + 300_000 });
    await store.decide({ limits, greylist: { triplet: triplet({ recipient: 'carol@example.net' }), config }, nowMs: T0 + 300_000 });
    await store.decide({ limits: [limit({ name: 'sizeBytes', key: 'user:alice', count: 10_000_000, cost: 12_345 })] });
    const all = await keys();
    assert.deepEqual(all, [
      'gl:c:192.0.2.0/24',
      'gl:t:192.0.2.0/24|alice@example.org|bob@example.net',
      'inst:X.1',
      'rl:clientIp:ip:192.0.2.7/32',
      'rl:saslUser:user:alice',
      'rl:sizeBytes:user:alice',
    ]);
    for (const k of all) {
      const pttl = await raw.pttl(prefix + k);
      assert.ok(pttl > 0, `${k} has no TTL (${pttl})`);
    }
  });

  test('with a hash tag, every key of a decision carries it (one cluster slot)', async (t) => {
    const { store, keys } = await fixture(t, { hashTag: '{policy}' });
    const config = greylistConfig();
    await store.decide({ limits: [limit(), limit({ name: 'saslUser', key: 'user:{x}' })], instance: 'I.1', greylist: { triplet: triplet(), config }, nowMs: T0 });
    const all = await keys();
    assert.equal(all.length, 4, 'two buckets, the instance, the new triplet');
    // Redis Cluster hashes only the text inside the first {…} of a key.
    for (const k of all) assert.equal(/\{([^}]*)\}/.exec(k)?.[1], 'policy', k);
    assert.ok(all.includes('{policy}:inst:I.1'));
    assert.equal(store.limitKey('clientIp', 'ip:1'), '{policy}:rl:clientIp:ip:1');
    assert.equal(new RedisPolicyStore(new Redis({ lazyConnect: true }), 'policy').limitKey('a', 'b'), '{policy}:rl:a:b');
    assert.throws(() => new RedisPolicyStore(new Redis({ lazyConnect: true }), '{a}b}'), RangeError);
  });

  test('parts of a triplet cannot run together', async (t) => {
    const { store } = await fixture(t);
    const a = store.tripletKey({ client: 'c', sender: 'a|b', recipient: 'r' });
    const b = store.tripletKey({ client: 'c', sender: 'a', recipient: 'b|r' });
    assert.notEqual(a, b);
    assert.equal(a, 'gl:t:c|a%7Cb|r');
  });
});

describe('one round trip per decision', () => {
  let redis: PrivateRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.close());

  test('roundTrips and the server: one EVALSHA per decide, nothing else from the client', async (t) => {
    const { store, raw } = await fixture(t, { url: redis.url });
    const config = greylistConfig();
    const limits = [limit(), limit({ name: 'saslUser', key: 'user:alice' }), limit({ name: 'recipient', key: 'rcpt:bob@example.net' })];
    // The first call on a connection sends the script itself (EVAL); after that, its SHA.
    await store.decide({ limits });
    assert.equal(store.roundTrips, 1);

    // MONITOR shows exactly what each client sent, and script-internal calls marked as [lua].
    const monitor = await raw.monitor();
    const seen: string[] = [];
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (!/lua/.test(source)) seen.push(String(args[0]).toLowerCase());
    });
    await raw.config('RESETSTAT');
    const N = 25;
    for (let i = 0; i < N; i++) {
      await store.decide({ limits, instance: `M.${i % 5}`, greylist: { triplet: triplet({ recipient: `r${i}@example.net` }), config }, nowMs: T0 + i });
    }
    assert.equal(store.roundTrips, 1 + N);

    const stats = await raw.info('commandstats');
    const calls = (cmd: string) => Number(new RegExp(`^cmdstat_${cmd}:calls=(\\d+)`, 'm').exec(stats)?.[1] ?? 0);
    assert.equal(calls('evalsha'), N);
    assert.equal(calls('eval'), 0);

    // Wait until MONITOR has seen our INFO, which was sent after the last decide.
    for (let i = 0; i < 100 && !seen.includes('info'); i++) await new Promise((r) => setTimeout(r, 20));
    monitor.disconnect();
    const fromStore = seen.filter((c) => c !== 'config' && c !== 'info');
    assert.deepEqual(fromStore, Array<string>(N).fill('evalsha'));
  });
});
