// The brute-force guard against the real Redis at 127.0.0.1:6379, each test under a key prefix of
// its own (removed afterwards). Time is injected; key TTLs are read back with PTTL, since they run
// on Redis's real clock. Redis commands are recorded by wrapping the client's sendCommand, so the
// one-round-trip promise is checked on what actually went to Redis.
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { AuthPolicyConfig } from '../../../core/config/policyd.ts';
import { createRedis } from '../../../core/redis.ts';
import { BruteForceGuard, decide, ipGroup, normaliseLogin, type Counts } from '../../../policyd/auth-policy/brute-force.ts';
import type { AuthPolicyRequest } from '../../../policyd/auth-policy/codec.ts';
import { freePort } from '../../harness/postfix.ts';
import { memoryLogger, policyConfig, testRedis, type TestRedis } from './support.ts';

const T0 = 1_700_000_000_000; // an injected "now"; any value works

interface Fixture {
  guard: BruteForceGuard;
  redis: TestRedis;
  /** Redis commands sent so far, by name. */
  sent: string[];
  clock: { now: number };
  allow(over?: Partial<AuthPolicyRequest>): ReturnType<BruteForceGuard['allow']>;
  fail(over?: Partial<AuthPolicyRequest>): ReturnType<BruteForceGuard['report']>;
  succeed(over?: Partial<AuthPolicyRequest>): ReturnType<BruteForceGuard['report']>;
}

const request = (over: Partial<AuthPolicyRequest> = {}): AuthPolicyRequest => ({
  command: 'allow',
  login: 'alice',
  pwhash: '0b9c',
  remote: '192.0.2.10',
  deviceId: '',
  protocol: 'imap',
  sessionId: 'sess',
  ...over,
});

async function fixture(t: TestContext, over: Partial<AuthPolicyConfig> = {}): Promise<Fixture> {
  const redis = await testRedis(t);
  const sent: string[] = [];
  const send = redis.client.sendCommand.bind(redis.client);
  redis.client.sendCommand = ((cmd: { name: string }, ...rest: unknown[]) => {
    sent.push(cmd.name);
    return (send as (...a: unknown[]) => unknown)(cmd, ...rest);
  }) as typeof redis.client.sendCommand;
  const clock = { now: T0 };
  const guard = new BruteForceGuard({ config: policyConfig(over), redis: redis.client, log: memoryLogger().log, now: () => clock.now });
  return {
    guard,
    redis,
    sent,
    clock,
    allow: (o) => guard.allow(request(o)),
    fail: (o) => guard.report(request({ command: 'report', success: false, policyReject: false, ...o })),
    succeed: (o) => guard.report(request({ command: 'report', success: true, policyReject: false, ...o })),
  };
}

const counts = (over: Partial<Counts> = {}): Counts => ({ ip: 0, login: 0, hostile: false, pwhashSprayed: false, ...over });

describe('decide (pure)', () => {
  const config = policyConfig({ ipTarpitAfter: 5, ipRejectAfter: 15, loginTarpitAfter: 5, loginRejectAfter: 20, tarpitSeconds: 7 });
  const table: Array<[string, Partial<Counts>, string]> = [
    ['nothing yet', {}, 'allow'],
    ['ip just under the tarpit', { ip: 4 }, 'allow'],
    ['ip at the tarpit', { ip: 5 }, 'tarpit:ip:7'],
    ['ip at the reject', { ip: 15 }, 'reject:ip'],
    ['login at the tarpit', { login: 5 }, 'tarpit:login:7'],
    ['login at the reject beats an ip tarpit', { login: 20, ip: 6 }, 'reject:login'],
    ['ip tarpit before login tarpit', { ip: 5, login: 5 }, 'tarpit:ip:7'],
    ['hostile source', { hostile: true }, 'reject:hostile'],
    ['sprayed password first', { pwhashSprayed: true, hostile: true, ip: 20 }, 'reject:pwhash'],
  ];
  for (const [name, c, want] of table) {
    test(`${name} → ${want}`, () => {
      const v = decide(counts(c), config);
      assert.equal([v.action, 'reason' in v ? v.reason : undefined, 'seconds' in v ? v.seconds : undefined].filter((x) => x !== undefined).join(':'), want);
    });
  }
});

describe('address groups and logins', () => {
  test('IPv4 whole, IPv4-mapped as IPv4, IPv6 by prefix, garbage is no group', () => {
    assert.equal(ipGroup('192.0.2.10', 64), '192.0.2.10');
    assert.equal(ipGroup('::ffff:192.0.2.10', 64), '192.0.2.10');
    assert.equal(ipGroup('2001:db8:1:2:aaaa::1', 64), '2001:db8:1:2:0:0:0:0/64');
    assert.equal(ipGroup('2001:db8:1:2:aaaa::1', 48), '2001:db8:1:0:0:0:0:0/48');
    assert.equal(ipGroup('2001:db8:1:2:aaaa::1', 56), '2001:db8:1:0:0:0:0:0/56');
    assert.equal(ipGroup('2001:db8:1:2ff::1', 60), '2001:db8:1:2f0:0:0:0:0/60');
    assert.equal(ipGroup('2001:db8::1', 128), '2001:db8:0:0:0:0:0:1/128');
    for (const bad of ['', 'localhost', '192.0.2.0/24', '300.1.1.1']) assert.equal(ipGroup(bad, 64), undefined, bad);
  });
  test('logins compare case-insensitively; long ones are hashed', () => {
    assert.equal(normaliseLogin(' Alice@Example.ORG '), 'alice@example.org');
    assert.match(normaliseLogin('x'.repeat(300)), /^sha256:[0-9a-f]{64}$/);
  });
});

describe('counting failures in Redis', () => {
  test('per source: tarpit after ipTarpitAfter failures, reject after ipRejectAfter; one round trip each', async (t) => {
    const f = await fixture(t, { ipTarpitAfter: 3, ipRejectAfter: 5, tarpitSeconds: 4, loginTarpitAfter: 100, loginRejectAfter: 100, sprayLogins: 100 });
    const seen: string[] = [];
    for (let i = 1; i <= 6; i++) {
      const d = await f.allow({ login: `user${i}` });
      seen.push(d.verdict.action === 'tarpit' ? `tarpit${d.verdict.seconds}` : d.verdict.action);
      await f.fail({ login: `user${i}` });
    }
    assert.deepEqual(seen, ['allow', 'allow', 'allow', 'tarpit4', 'tarpit4', 'reject']);
    assert.deepEqual((await f.allow({ login: 'fresh' })).verdict, { action: 'reject', reason: 'ip' });
    assert.equal(f.guard.roundTrips, 13);
    // ioredis turns the first EVALSHA on a connection into EVAL on the wire: still one command.
    assert.deepEqual(f.sent, Array(13).fill('evalsha'));
  });

  test('per login, from many sources: tarpit, then reject; login names compare case-insensitively', async (t) => {
    const f = await fixture(t, { loginTarpitAfter: 2, loginRejectAfter: 4, ipTarpitAfter: 100, ipRejectAfter: 100, sprayLogins: 100 });
    for (let i = 1; i <= 2; i++) await f.fail({ login: i % 2 ? 'Alice' : 'alice', remote: `198.51.100.${i}` });
    assert.deepEqual((await f.allow({ remote: '203.0.113.1' })).verdict, { action: 'tarpit', seconds: 5, reason: 'login' });
    for (let i = 3; i <= 4; i++) await f.fail({ remote: `198.51.100.${i}` });
    const d = await f.allow({ login: 'ALICE', remote: '203.0.113.1' });
    assert.deepEqual(d.verdict, { action: 'reject', reason: 'login' });
    assert.equal(d.counts.login, 4);
    assert.equal(d.counts.ip, 0);
    assert.equal((await f.allow({ login: 'bob', remote: '203.0.113.1' })).verdict.action, 'allow');
  });

  test("a successful login resets that login's counter, not the source's", async (t) => {
    const f = await fixture(t, { ipTarpitAfter: 3, ipRejectAfter: 10, loginTarpitAfter: 3, loginRejectAfter: 10 });
    for (let i = 0; i < 4; i++) await f.fail();
    assert.deepEqual((await f.allow()).counts, { ip: 4, login: 4, hostile: false, pwhashSprayed: false });
    const after = await f.succeed();
    assert.deepEqual(after.counts, { ip: 4, login: 0, hostile: false, pwhashSprayed: false });
    // The source is still tarpitted (its failures stand); alice from elsewhere is not.
    assert.deepEqual((await f.allow()).verdict, { action: 'tarpit', seconds: 5, reason: 'ip' });
    assert.equal((await f.allow({ remote: '198.51.100.7' })).verdict.action, 'allow');
  });

  test('failures caused by our own reject count for the source only', async (t) => {
    const f = await fixture(t, { ipTarpitAfter: 50, ipRejectAfter: 50, loginTarpitAfter: 50, loginRejectAfter: 50 });
    for (let i = 0; i < 3; i++) await f.fail({ policyReject: true });
    assert.deepEqual((await f.allow()).counts, { ip: 3, login: 0, hostile: false, pwhashSprayed: false });
  });

  test('password spraying: one pwhash failing for sprayLogins logins → that pwhash refused, the source hostile', async (t) => {
    const f = await fixture(t, { sprayLogins: 4, ipTarpitAfter: 100, ipRejectAfter: 100, loginTarpitAfter: 100, loginRejectAfter: 100 });
    const detections: Array<string | undefined> = [];
    for (let i = 1; i <= 4; i++) detections.push((await f.fail({ login: `user${i}`, pwhash: 'abc123', remote: `198.51.100.${i}` })).sprayDetected);
    assert.deepEqual(detections, [undefined, undefined, undefined, 'pwhash']);
    // Any login, any source, carrying that hash: refused.
    assert.deepEqual((await f.allow({ login: 'carol', pwhash: 'ABC123', remote: '203.0.113.9' })).verdict, { action: 'reject', reason: 'pwhash' });
    // The source of the detecting failure is hostile whatever it tries next.
    assert.deepEqual((await f.allow({ login: 'dave', pwhash: 'ffff', remote: '198.51.100.4' })).verdict, { action: 'reject', reason: 'hostile' });
    // Sources that failed before the detection are not, and other hashes pass.
    assert.equal((await f.allow({ login: 'dave', pwhash: 'ffff', remote: '198.51.100.1' })).verdict.action, 'allow');
    // A later failure with the sprayed hash marks its source hostile too, without a second detection.
    assert.equal((await f.fail({ login: 'user5', pwhash: 'abc123', remote: '198.51.100.5' })).sprayDetected, undefined);
    assert.deepEqual((await f.allow({ pwhash: 'ffff', remote: '198.51.100.5' })).verdict, { action: 'reject', reason: 'hostile' });
  });

  test('spraying from one source: failures for sprayLogins distinct logins make it hostile', async (t) => {
    const f = await fixture(t, { sprayLogins: 3, ipTarpitAfter: 100, ipRejectAfter: 100, loginTarpitAfter: 100, loginRejectAfter: 100 });
    // The same login again does not count twice.
    for (const login of ['a', 'a', 'b']) assert.equal((await f.fail({ login, pwhash: login === 'a' ? '01' : '02' })).sprayDetected, undefined);
    assert.equal((await f.fail({ login: 'c', pwhash: '03' })).sprayDetected, 'source');
    assert.deepEqual((await f.allow({ login: 'd', pwhash: '04' })).verdict, { action: 'reject', reason: 'hostile' });
  });

  test('IPv6 sources are grouped by ipv6Prefix (/64 by default)', async (t) => {
    const f = await fixture(t, { ipTarpitAfter: 2, ipRejectAfter: 100, loginTarpitAfter: 100, loginRejectAfter: 100, sprayLogins: 100 });
    await f.fail({ remote: '2001:db8:1:2::a', login: 'u1' });
    await f.fail({ remote: '2001:db8:1:2:ffff:ffff:ffff:fffe', login: 'u2' });
    assert.deepEqual((await f.allow({ remote: '2001:db8:1:2::99' })).verdict, { action: 'tarpit', seconds: 5, reason: 'ip' });
    assert.equal((await f.allow({ remote: '2001:db8:1:3::a' })).verdict.action, 'allow');
    assert.ok((await f.redis.keys()).includes('auth:ip:2001:db8:1:2:0:0:0:0/64'));
  });

  test('allowNetworks are always allowed, without asking or counting in Redis', async (t) => {
    const f = await fixture(t, { allowNetworks: ['192.0.2.0/24', '2001:db8::/32'], ipTarpitAfter: 1, ipRejectAfter: 1, loginTarpitAfter: 1, loginRejectAfter: 1 });
    for (let i = 0; i < 3; i++) await f.fail({ remote: '192.0.2.77' });
    const d = await f.allow({ remote: '192.0.2.77' });
    assert.deepEqual(d.verdict, { action: 'allow' });
    assert.equal(d.allowlisted, true);
    assert.equal((await f.allow({ remote: '::ffff:192.0.2.1' })).allowlisted, true);
    assert.equal(f.guard.roundTrips, 0);
    assert.deepEqual(f.sent, []);
    // The same login from outside is not allow-listed, and was not counted.
    assert.deepEqual((await f.allow({ remote: '198.51.100.1' })).counts, { ip: 0, login: 0, hostile: false, pwhashSprayed: false });
  });

  test('the window slides on the injected clock: old failures stop counting', async (t) => {
    const f = await fixture(t, { windowSeconds: 60, ipTarpitAfter: 2, ipRejectAfter: 100, loginTarpitAfter: 100, loginRejectAfter: 100, sprayLogins: 100 });
    await f.fail({ login: 'u1' });
    f.clock.now = T0 + 30_000;
    await f.fail({ login: 'u2' });
    assert.equal((await f.allow()).verdict.action, 'tarpit');
    f.clock.now = T0 + 60_000; // the first failure is exactly one window old: out
    assert.deepEqual((await f.allow()).counts.ip, 1);
    assert.equal((await f.allow()).verdict.action, 'allow');
    f.clock.now = T0 + 90_001;
    assert.equal((await f.allow()).counts.ip, 0);
  });

  test('every key has a TTL of at most one window, and sets stay capped', async (t) => {
    const f = await fixture(t, { windowSeconds: 120, sprayLogins: 3, ipTarpitAfter: 2, ipRejectAfter: 4, loginTarpitAfter: 2, loginRejectAfter: 6 });
    for (let i = 0; i < 20; i++) await f.fail({ login: `user${i % 5}`, pwhash: 'beef' });
    await f.fail({ remote: '2001:db8::1', policyReject: true });
    await f.succeed({ login: 'user1' });
    const keys = await f.redis.keys();
    for (const k of ['auth:ip:192.0.2.10', 'auth:login:user0', 'auth:ip-logins:192.0.2.10', 'auth:pw-logins:beef', 'auth:hostile:192.0.2.10', 'auth:sprayed:beef']) assert.ok(keys.includes(k), `${k} in ${keys.join(' ')}`);
    for (const k of keys) {
      const ttl = await f.redis.pttl(k);
      assert.ok(ttl > 0 && ttl <= 120_000, `${k}: PTTL ${ttl}`);
    }
    // 20 failures, but a set never holds more than the highest threshold that reads it.
    assert.equal(await f.redis.client.zcard('auth:ip:192.0.2.10'), 4);
    assert.equal(await f.redis.client.zcard('auth:login:user0'), 4);
    assert.equal(await f.redis.client.zcard('auth:pw-logins:beef'), 3);
  });
});

describe('Redis down', () => {
  async function downGuard(t: TestContext, onStoreError: 'allow' | 'reject') {
    // A client pointed at a port nobody listens on: every command fails at once (no offline queue).
    const client = createRedis({ url: `redis://127.0.0.1:${await freePort()}`, keyPrefix: 'x:', commandTimeoutMs: 250 });
    client.on('error', () => undefined);
    t.after(() => client.disconnect());
    const mem = memoryLogger();
    const guard = new BruteForceGuard({ config: policyConfig({ onStoreError }), redis: client, log: mem.log });
    return { guard, mem };
  }

  test("onStoreError 'allow' answers allow, counts and logs the error", async (t) => {
    const { guard, mem } = await downGuard(t, 'allow');
    const d = await guard.allow(request());
    assert.deepEqual(d.verdict, { action: 'allow' });
    assert.ok(d.storeError);
    const r = await guard.report(request({ command: 'report', success: false }));
    assert.ok(r.storeError);
    assert.equal(guard.storeErrors, 2);
    assert.equal(mem.lines.filter((l) => l.msg === 'auth-policy store error').length, 2);
  });

  test("onStoreError 'reject' answers reject with reason store-error", async (t) => {
    const { guard } = await downGuard(t, 'reject');
    assert.deepEqual((await guard.allow(request())).verdict, { action: 'reject', reason: 'store-error' });
    assert.equal(guard.storeErrors, 1);
  });
});
