/**
 * The policy decision against the real Redis (own key prefix per test) with an injected clock:
 * which limits a request spends or peeks at each stage, per-message counting, exemptions,
 * postmaster, greylisting, and the fail mode when the store is down.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { parseConfig } from '../../core/config/load.ts';
import { silentLogger } from '../../core/log.ts';
import { createRedis } from '../../core/redis.ts';
import { PolicyDecider } from '../../policyd/decide.ts';
import { StaticPolicySource } from '../../policyd/domain-policy/source.ts';
import { RedisPolicyStore } from '../../policyd/store/redis-store.ts';
import type { PolicyAttributes } from '../../policyd/types.ts';

const ctx = { conn: 'test', requestNo: 1, log: silentLogger };

function setup(t: TestContext, policyd: Record<string, unknown> = {}, redisUrl = 'redis://127.0.0.1:6379') {
  const config = parseConfig({ policyd, redis: { url: redisUrl, keyPrefix: `ceerion-test-${randomBytes(4).toString('hex')}:` } });
  const redis = createRedis(config.redis);
  const store = new RedisPolicyStore(redis);
  let now = 1_800_000_000_000;
  const decider = new PolicyDecider(config.policyd, store, new StaticPolicySource(config.policyd), undefined, () => now);
  t.after(async () => {
    if (redis.status === 'ready') {
      const keys = await redis.keys(`${config.redis.keyPrefix}*`);
      if (keys.length) await redis.call('DEL', ...keys);
    }
    redis.disconnect();
  });
  const ask = (attrs: Record<string, string>) => decider.request({ request: 'smtpd_access_policy', ...attrs } as PolicyAttributes, ctx);
  return { ask, store, advance: (ms: number) => (now += ms), ready: () => new Promise<void>((r) => (redis.status === 'ready' ? r() : redis.once('ready', () => r()))) };
}

const rcpt = (i: number, extra: Record<string, string> = {}) => ({ protocol_state: 'RCPT', client_address: '192.0.2.7', sender: 'a@sender.example', recipient: `user${i}@example.org`, instance: `inst.${i}`, ...extra });
const eom = (i: number, extra: Record<string, string> = {}) => ({ protocol_state: 'END-OF-MESSAGE', client_address: '192.0.2.7', sender: 'a@sender.example', recipient: '', recipient_count: '3', instance: `inst.${i}`, size: '5000', ...extra });

test('per-message limits are spent at END-OF-MESSAGE, once per instance, and peeked at RCPT', async (t) => {
  const s = setup(t, { limits: { clientIp: { count: 3, periodSeconds: 3600 } } });
  await s.ready();
  for (let i = 0; i < 3; i++) {
    for (let r = 0; r < 5; r++) assert.equal(await s.ask(rcpt(i)), 'DUNNO', 'RCPT only peeks');
    assert.equal(await s.ask(eom(i)), 'DUNNO');
    assert.equal(await s.ask(eom(i)), 'DUNNO', 'the same instance again spends nothing');
  }
  assert.match(await s.ask(rcpt(3)), /^defer_if_permit 4\.7\.1 Rate limit exceeded, retry later \(ref [0-9A-F]{10}\)$/, 'RCPT of the 4th message sees the quota spent');
  assert.match(await s.ask(eom(3)), /^defer_if_permit/);
  s.advance(1_200_000 + 1); // 3 per hour: one frees up every 20 minutes
  assert.equal(await s.ask(rcpt(4)), 'DUNNO');
  assert.equal(await s.ask(eom(4)), 'DUNNO');
  assert.match(await s.ask(eom(5)), /^defer_if_permit/);
});

test('IPv6 clients in one /64 share a bucket; another /64 does not', async (t) => {
  const s = setup(t, { limits: { clientIp: { count: 1, periodSeconds: 3600 } } });
  await s.ready();
  assert.equal(await s.ask(eom(1, { client_address: '2001:db8:1:2::10' })), 'DUNNO');
  assert.match(await s.ask(eom(2, { client_address: '2001:db8:1:2:ffff::1' })), /^defer_if_permit/);
  assert.equal(await s.ask(eom(3, { client_address: '2001:db8:1:3::10' })), 'DUNNO');
});

test('SASL user, sender and size limits; the recipient limit is spent at RCPT', async (t) => {
  const s = setup(t, {
    limits: {
      clientIp: { count: 0 },
      saslUser: { count: 2, periodSeconds: 3600 },
      sizeBytes: { count: 12_000, periodSeconds: 3600 },
      recipient: { count: 2, periodSeconds: 3600 },
    },
  });
  await s.ready();
  const user = { sasl_username: 'Alice' };
  assert.equal(await s.ask(eom(1, { ...user, size: '5000' })), 'DUNNO');
  assert.equal(await s.ask(eom(2, { ...user, sasl_username: 'alice', size: '5000' })), 'DUNNO');
  assert.match(await s.ask(eom(3, { ...user, size: '10' })), /^defer_if_permit/, 'third message of the same login (any case)');
  // Bytes count per SASL login, or per client address without one: this client has spent nothing yet.
  assert.equal(await s.ask(eom(4, { size: '5000' })), 'DUNNO');
  assert.equal(await s.ask(eom(5, { size: '5000' })), 'DUNNO');
  assert.match(await s.ask(eom(6, { size: '5000' })), /^defer_if_permit/, '12,000 bytes per hour: 10,000 spent, 5,000 more does not fit');
  assert.equal(await s.ask(eom(7, { size: '1000' })), 'DUNNO', 'but 1,000 does');
  assert.equal(await s.ask(rcpt(9, { recipient: 'bob@example.org' })), 'DUNNO');
  assert.equal(await s.ask(rcpt(10, { recipient: 'Bob@example.org' })), 'DUNNO');
  assert.match(await s.ask(rcpt(11, { recipient: 'bob@example.org' })), /^defer_if_permit/);
});

test('exempt networks, users and sender domains, and postmaster/abuse, are never limited', async (t) => {
  const s = setup(t, {
    limits: { clientIp: { count: 1 } },
    exempt: { networks: ['198.51.100.0/24'], users: ['relay-bot'], domains: ['trusted.example'] },
  });
  await s.ready();
  for (let i = 0; i < 3; i++) {
    assert.equal(await s.ask(eom(i, { client_address: '198.51.100.9' })), 'DUNNO');
    assert.equal(await s.ask(eom(10 + i, { sasl_username: 'relay-bot' })), 'DUNNO');
    assert.equal(await s.ask(eom(20 + i, { sender: 'x@trusted.example' })), 'DUNNO');
    assert.equal(await s.ask(eom(30 + i, { recipient: 'postmaster@example.org', recipient_count: '1' })), 'DUNNO');
  }
  assert.equal(await s.ask(eom(40)), 'DUNNO', 'the first counted message');
  assert.match(await s.ask(eom(41)), /^defer_if_permit/);
  assert.equal(await s.ask(rcpt(42, { recipient: 'abuse@example.org' })), 'DUNNO', 'abuse is reachable even over the limit');
});

test('greylisting: deferred, deferred again early, accepted after the delay; authenticated clients skip it', async (t) => {
  const s = setup(t, { greylist: { enabled: true, delaySeconds: 300 } });
  await s.ready();
  const first = await s.ask(rcpt(1, { sender: 'bounce+123@list.example' }));
  assert.match(first, /^defer_if_permit 4\.7\.1 Greylisted, please try again later \(ref [0-9A-F]{10}\)$/);
  s.advance(60_000);
  assert.match(await s.ask(rcpt(1, { sender: 'bounce+456@list.example' })), /Greylisted/, 'same triplet after VERP normalisation, too early');
  s.advance(241_000);
  assert.equal(await s.ask(rcpt(1, { sender: 'bounce+789@list.example', client_address: '192.0.2.200' })), 'DUNNO', 'same /24, after the delay');
  assert.equal(await s.ask(rcpt(2, { sasl_username: 'alice' })), 'DUNNO', 'authenticated: never greylisted');
});

test('the store down gives onStoreError (default DUNNO, or the configured answer)', async (t) => {
  const closed = 'redis://127.0.0.1:1';
  const open = setup(t, {}, closed);
  assert.equal(await open.ask(eom(1)), 'DUNNO');
  const shut = setup(t, { onStoreError: 'defer_if_permit 4.3.0 Try again later' }, closed);
  assert.equal(await shut.ask(eom(1)), 'defer_if_permit 4.3.0 Try again later');
});

test('requests that count nothing here answer DUNNO without asking the store', async (t) => {
  const s = setup(t);
  await s.ready();
  const before = s.store.roundTrips;
  assert.equal(await s.ask({ protocol_state: 'MAIL', client_address: '192.0.2.7', sender: 'a@sender.example' }), 'DUNNO');
  assert.equal(await s.ask({ protocol_state: 'DATA', client_address: '192.0.2.7', sender: 'a@sender.example' }), 'DUNNO');
  assert.equal(await s.store.roundTrips, before);
  assert.equal(await s.ask({ protocol_state: 'END-OF-MESSAGE', client_address: '192.0.2.7', sender: 'a@sender.example', instance: 'i1' }), 'DUNNO');
  assert.equal(s.store.roundTrips, before + 1, 'one round trip for the counted stage');
});
