/**
 * End to end: a private Postfix with the shipped main.cf lines (docker/postfix/policy.cf), our
 * `ceerion policyd` as its own process, real Redis, and a scripted SMTP client.
 * - the 101st message from one IP within the hour gets a 4xx;
 * - a 20-recipient message counts once against the per-IP message limit;
 * - a greylisted triplet is deferred, then accepted after the (shortened) delay;
 * - stopping Redis mid-run gives the configured fail mode, restarting it restores limiting.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { policySnippet } from '../../policyd/postfix-snippet.ts';
import { parseMainCf } from '../harness/postfix-config.ts';
import { startPostfix } from '../harness/postfix.ts';
import { startPolicydProcess } from '../harness/policyd-process.ts';
import { startRedis } from '../harness/redis.ts';
import { openSmtpSession, sendMail } from '../harness/smtp-client.ts';
import { startSmtpSink } from '../harness/smtp-sink.ts';

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

const message = (i: number) => `From: sender@example.net\r\nTo: user@example.org\r\nSubject: policy ${i}\r\nMessage-ID: <p${i}@example.net>\r\n\r\nHello ${i}\r\n`;

/** Policyd (own key prefix) + a sink + a Postfix wired with the shipped policy snippet. */
async function stack(env: NodeJS.ProcessEnv) {
  const policyd = await startPolicydProcess({
    env: { CEERION_REDIS_KEY_PREFIX: `ceerion-test-${randomBytes(4).toString('hex')}:`, CEERION_POLICYD_DOMAIN_POLICY: 'false', ...env },
  });
  cleanups.push(() => policyd.stop());
  const sink = await startSmtpSink();
  cleanups.push(() => sink.close());
  const main = Object.fromEntries(parseMainCf(policySnippet(policyd.address)));
  const postfix = await startPostfix({
    relayPort: sink.port,
    main: {
      ...main,
      // The test client (127.0.0.1) must not be in mynetworks, or permit_mynetworks would skip the RCPT check.
      mynetworks: '192.0.2.0/24',
      relay_domains: 'example.org',
      relay_transport: `relay:[127.0.0.1]:${sink.port}`,
    },
  });
  cleanups.push(() => postfix.stop());
  return { policyd, sink, postfix };
}

test('the shipped snippet hooks the policy service at RCPT (after reject_unauth_destination) and at end of data', () => {
  const cf = Object.fromEntries(parseMainCf(policySnippet('inet:127.0.0.1:10040')));
  assert.match(cf.smtpd_recipient_restrictions!, /reject_unauth_destination,\s*check_policy_service inet:127\.0\.0\.1:10040$/);
  assert.equal(cf.smtpd_end_of_data_restrictions, 'check_policy_service inet:127.0.0.1:10040');
});

test('the 101st message from one IP within the hour gets a 4xx with a reference id', async () => {
  const { postfix, sink } = await stack({});
  const session = await openSmtpSession(postfix.smtpPort, { helo: 'client.example.net' });
  for (let i = 0; i < 100; i++) {
    const r = await session.send({ from: 'sender@example.net', to: ['user@example.org'], data: message(i) });
    assert.equal(r.code, 250, `message ${i + 1}: ${r.code} ${r.text}`);
  }
  const refused = await session.send({ from: 'sender@example.net', to: ['user@example.org'], data: message(100) });
  await session.quit();
  assert.equal(Math.floor(refused.code / 100), 4, `101st: ${refused.code} ${refused.text}`);
  assert.match(refused.text, /^4\.7\.1 <user@example\.org>: Recipient address rejected: Rate limit exceeded, retry later \(ref [0-9A-F]{10}\)$/);
  await sink.waitFor(100, 30_000);
});

test('a 20-recipient message counts once against the per-IP message limit', async () => {
  const { postfix } = await stack({ CEERION_POLICYD_LIMITS_CLIENT_IP_COUNT: '5' });
  const to = Array.from({ length: 20 }, (_, i) => `user${i}@example.org`);
  const big = await sendMail({ port: postfix.smtpPort, from: 'sender@example.net', to, data: message(0) });
  assert.equal(big.code, 250, `${big.code} ${big.text}`);
  for (let i = 1; i < 5; i++) {
    const r = await sendMail({ port: postfix.smtpPort, from: 'sender@example.net', to: ['user@example.org'], data: message(i) });
    assert.equal(r.code, 250, `message ${i + 1} of 5: ${r.code} ${r.text}`);
  }
  const sixth = await sendMail({ port: postfix.smtpPort, from: 'sender@example.net', to: ['user@example.org'], data: message(5) });
  assert.equal(Math.floor(sixth.code / 100), 4, `6th message: ${sixth.code} ${sixth.text}`);
});

test('a greylisted triplet is deferred, then accepted after the delay', async () => {
  const { postfix, sink } = await stack({ CEERION_POLICYD_GREYLIST_ENABLED: 'true', CEERION_POLICYD_GREYLIST_DELAY_SECONDS: '2' });
  const send = () => sendMail({ port: postfix.smtpPort, from: 'list-bounces+1234@lists.example.net', to: ['user@example.org'], data: message(1) });
  const first = await send();
  assert.equal(first.code, 450, `${first.code} ${first.text}`);
  assert.match(first.text, /Greylisted/);
  const early = await send();
  assert.equal(early.code, 450, 'a retry before the delay is still deferred');
  await new Promise((r) => setTimeout(r, 2_500));
  const later = await send();
  assert.equal(later.code, 250, `after the delay: ${later.code} ${later.text}`);
  // VERP: another bounce address of the same list is the same triplet, already passed.
  const verp = await sendMail({ port: postfix.smtpPort, from: 'list-bounces+5678@lists.example.net', to: ['user@example.org'], data: message(2) });
  assert.equal(verp.code, 250, `VERP-normalised sender: ${verp.code} ${verp.text}`);
  await sink.waitFor(2, 30_000);
});

test('Redis stopped mid-run: the configured fail mode (DUNNO) applies; restarted: limiting is back', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.close());
  const { postfix, policyd } = await stack({ CEERION_REDIS_URL: redis.url, CEERION_POLICYD_LIMITS_CLIENT_IP_COUNT: '3' });
  const send = (i: number) => sendMail({ port: postfix.smtpPort, from: 'sender@example.net', to: ['user@example.org'], data: message(i) });
  for (let i = 0; i < 3; i++) assert.equal((await send(i)).code, 250);
  assert.equal(Math.floor((await send(3)).code / 100), 4, 'limit reached before the outage');

  await redis.stop();
  for (let i = 0; i < 3; i++) assert.equal((await send(10 + i)).code, 250, 'fail open while Redis is down');
  assert.match(policyd.output(), /policy store unavailable; answering onStoreError/);

  await redis.start(); // empty: no persistence, so the counts start over
  const deadline = Date.now() + 10_000;
  let accepted = 0;
  let refused: number | undefined;
  while (refused === undefined && Date.now() < deadline) {
    const r = await send(100 + accepted);
    if (r.code === 250) accepted++;
    else refused = r.code;
  }
  assert.equal(Math.floor((refused ?? 0) / 100), 4, 'limiting restored after Redis came back');
  // Messages accepted while the client reconnected were fail-open answers or counted ones; at most
  // the limit were counted after the restart.
  assert.ok(accepted >= 3, `accepted ${accepted} before the limit applied again`);
});
