// End to end: a private Dovecot 2.3 (test/harness/dovecot.ts) including the shipped
// policyd/dovecot/auth-policy.conf, pointed at AuthPolicyServer with the real Redis. IMAP clients
// pick their source address (127.0.0.2 attacks, 127.0.0.3 is a legitimate user), so the policy
// sees two different remotes. The only timing assertion is a generous lower bound on the tarpit.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { describe, test, type TestContext } from 'node:test';
import type { AuthPolicyConfig } from '../../../core/config/policyd.ts';
import { AuthPolicyServer } from '../../../policyd/auth-policy/http-server.ts';
import { imapLogin, startDovecot, type DovecotInstance } from '../../harness/dovecot.ts';
import { memoryLogger, policyConfig, testRedis, type MemoryLog, type TestRedis } from './support.ts';

const ATTACKER = '127.0.0.2';
const USER = '127.0.0.3';
const TARPIT_SECONDS = 2;

interface Stack {
  dovecot: DovecotInstance;
  server: AuthPolicyServer;
  mem: MemoryLog;
  redis: TestRedis;
}

async function stack(t: TestContext, over: Partial<AuthPolicyConfig>, dovecotApiHeader?: string): Promise<Stack> {
  const redis = await testRedis(t);
  const mem = memoryLogger();
  const config = policyConfig(over);
  const server = new AuthPolicyServer({ config, redis: redis.client, log: mem.log });
  const port = await server.start();
  t.after(() => server.stop());
  const dovecot = await startDovecot({ authPolicy: { port, apiHeader: dovecotApiHeader ?? config.apiHeader } });
  t.after(() => dovecot.stop());
  return { dovecot, server, mem, redis };
}

/** Dovecot's hashed_password: hex(H(nonce || login || NUL || password)) cut to 12 bits (shifted right). */
function dovecotPwhash(nonce: string, login: string, password: string): string {
  const h = createHash('sha256').update(`${nonce}${login}\0${password}`).digest();
  return (h.readUInt16BE(0) >> 4).toString(16).padStart(4, '0');
}

const blocks = (mem: MemoryLog) => mem.lines.filter((l) => l.msg === 'auth-policy block');

describe('Dovecot 2.3 with the CEERION auth policy', () => {
  test('wrong IMAP logins from one address are tarpitted, then rejected; a correct login from another works', async (t) => {
    const apiHeader = `X-Ceerion-Key: ${randomBytes(12).toString('hex')}`;
    const { dovecot, mem, redis } = await stack(t, {
      apiHeader,
      ipTarpitAfter: 3,
      ipRejectAfter: 5,
      tarpitSeconds: TARPIT_SECONDS,
      loginTarpitAfter: 100,
      loginRejectAfter: 100,
      sprayLogins: 100,
    });
    const login = (from: string, password: string) => imapLogin({ port: dovecot.imapPort, user: 'alice', password, localAddress: from });

    // Three failures are answered normally.
    for (let i = 1; i <= 3; i++) {
      const r = await login(ATTACKER, `wrong${i}`);
      assert.equal(r.ok, false);
      assert.match(r.line, /NO \[AUTHENTICATIONFAILED\]/);
    }
    assert.equal(blocks(mem).length, 0, 'no attempt held back before ipTarpitAfter failures');

    // The 4th and 5th wait out the tarpit in Dovecot before failing.
    for (let i = 4; i <= 5; i++) {
      const r = await login(ATTACKER, `wrong${i}`);
      assert.equal(r.ok, false);
      assert.match(r.line, /NO \[AUTHENTICATIONFAILED\]/);
      assert.ok(r.elapsedMs >= TARPIT_SECONDS * 1000 * 0.75, `attempt ${i} was delayed: ${Math.round(r.elapsedMs)} ms`);
    }

    // From then on the source is refused with our text, even with the right password.
    const refused = await login(ATTACKER, 'wrong6');
    assert.match(refused.line, /^a1 NO \[ALERT\] Too many failed logins, try again later \(ref [A-Za-z0-9+/]+\)$/);
    const rightButRefused = await login(ATTACKER, 'secret');
    assert.equal(rightButRefused.ok, false);
    assert.match(rightButRefused.line, /\[ALERT\] Too many failed logins/);

    // The same user from a clean address gets in: the attacker's failures are per source here.
    const good = await login(USER, 'secret');
    assert.equal(good.ok, true, good.line);

    assert.deepEqual(
      blocks(mem).map((b) => `${b.ip} ${b.reason} ${b.action}`),
      [`${ATTACKER} ip tarpit`, `${ATTACKER} ip tarpit`, `${ATTACKER} ip reject`, `${ATTACKER} ip reject`],
    );
    // Reports reach Redis with Dovecot's own hash of each guess (the README's formula), and the
    // successful login cleared alice's failure counter.
    const keys = await redis.keys();
    for (let i = 1; i <= 5; i++) assert.ok(keys.includes(`auth:pw-logins:${dovecotPwhash(dovecot.hashNonce, 'alice', `wrong${i}`)}`), `pwhash of wrong${i}`);
    assert.ok(keys.includes(`auth:ip:${ATTACKER}`));
    assert.ok(!keys.includes('auth:login:alice'), `login counter reset by the success: ${keys.join(' ')}`);
    assert.ok(!keys.includes(`auth:ip:${USER}`));
    assert.match(await dovecot.log(), /Authentication failure due to policy server refusal: Too many failed logins/);
  });

  test('a Dovecot sending the wrong API key is refused (401) and, as configured, fails open', async (t) => {
    const { dovecot, mem } = await stack(t, { apiHeader: 'X-Ceerion-Key: right', ipTarpitAfter: 1, ipRejectAfter: 1 }, 'X-Ceerion-Key: wrong');
    await imapLogin({ port: dovecot.imapPort, user: 'alice', password: 'nope', localAddress: ATTACKER });
    const r = await imapLogin({ port: dovecot.imapPort, user: 'alice', password: 'secret', localAddress: ATTACKER });
    assert.equal(r.ok, true, r.line);
    assert.ok(mem.lines.filter((l) => l.msg === 'auth-policy refused request' && l.reason === 'api-header').length >= 3);
    assert.equal(blocks(mem).length, 0);
    await dovecot.waitForLog(/Policy server HTTP error: 401/);
  });
});

describe('the Dovecot harness', () => {
  test('without a policy server: passwd-file users log in, wrong passwords fail; stop() leaves nothing behind', async () => {
    const dovecot = await startDovecot({ users: [{ name: 'carol', password: 'p"w\\d' }] });
    try {
      assert.equal((await imapLogin({ port: dovecot.imapPort, user: 'carol', password: 'p"w\\d' })).ok, true);
      assert.equal((await imapLogin({ port: dovecot.imapPort, user: 'carol', password: 'x' })).ok, false);
      assert.doesNotMatch(await dovecot.log(), /policy/i);
    } finally {
      await dovecot.stop();
    }
    assert.equal(existsSync(dovecot.dir), false);
    const { execFileSync } = await import('node:child_process');
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    assert.ok(!ps.includes(dovecot.dir), 'no process still names the temp dir');
  });
});
