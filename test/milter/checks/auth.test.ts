/**
 * The authentication check through a real milter session, DNS from a zone map that records its
 * calls: SPF, DKIM and DMARC results in one Authentication-Results header, forged results removed,
 * DMARC policies enforced (reject, quarantine as header or hold, none, pct, overrides), DNS
 * timeouts reported as temperror, skipping for authenticated clients and internal networks.
 */
import assert from 'node:assert/strict';
import { before, test, type TestContext } from 'node:test';
import { parseConfig } from '../../../core/config/load.ts';
import { zoneResolver, type Zone } from '../../../core/dns/zone-resolver.ts';
import { authenticationCheck } from '../../../milter/checks/auth/authentication.ts';
import { LOCAL_CONNECT, MilterClient, type MessageResult } from '../../../milter/client/milter-client.ts';
import { Family } from '../../../milter/protocol/constants.ts';
import type { ConnectInfo } from '../../../milter/handler.ts';
import type { Modification } from '../../../milter/protocol/responses.ts';
import { startTestMilter } from '../../helpers/milter.ts';
import { createLogger } from '../../../core/log.ts';
import { message, rsaKey, sign, toSpec, type TestKey } from '../../helpers/signed-mail.ts';

let key: TestKey;
before(() => {
  key = rsaKey();
});

/** example.com: SPF for the client 192.0.2.10, a DKIM key, and the given DMARC record. */
function zone(dmarc: string, extra: Zone = {}): Zone {
  return {
    'example.com': { TXT: [['v=spf1 ip4:192.0.2.10 -all']] },
    's1._domainkey.example.com': { TXT: [key.txt] },
    '_dmarc.example.com': { TXT: [[dmarc]] },
    ...extra,
  };
}

async function run(
  t: TestContext,
  z: Zone,
  raw: string,
  opts: { auth?: Record<string, unknown>; connect?: ConnectInfo; authen?: string; random?: number; from?: string } = {},
) {
  const resolver = zoneResolver(z);
  const cfg = parseConfig({ milter: { checks: { auth: opts.auth ?? {} } } }).milter.checks.auth;
  const check = authenticationCheck(cfg, { resolver, authservId: 'mx.test', random: () => opts.random ?? 0 });
  const m = await startTestMilter({ checks: [check], ...(process.env.AUTH_DEBUG ? { log: createLogger('debug', 'test') } : {}) });
  const c = await MilterClient.connect(m.address);
  t.after(async () => {
    c.destroy();
    await m.stop();
  });
  await c.negotiate();
  await c.connectStage(opts.connect ?? LOCAL_CONNECT);
  await c.helo('mail.example.com');
  const spec = toSpec(raw, opts.from ?? '<alice@example.com>');
  spec.macros = { mail: opts.authen ? [['{auth_authen}', opts.authen]] : [], eom: [['i', 'QAUTH1']] };
  const r = await c.message(spec);
  return { r, resolver };
}

const header = (r: MessageResult, name: string) =>
  r.modifications.filter((m): m is Extract<Modification, { kind: 'insheader' | 'addheader' }> => (m.kind === 'insheader' || m.kind === 'addheader') && m.name === name);
const ar = (r: MessageResult) => header(r, 'Authentication-Results')[0]?.value ?? '';

test('signed, SPF-authorised mail passes SPF, DKIM and DMARC, in one Authentication-Results header', async (t) => {
  const raw = await sign(message('alice@example.com'), 'example.com', 's1', key);
  const { r, resolver } = await run(t, zone('v=DMARC1; p=reject'), raw);
  assert.equal(r.verdict.kind, 'accept');
  assert.equal(header(r, 'Authentication-Results').length, 1);
  assert.match(ar(r), /^ ?mx\.test;/);
  assert.match(ar(r), /spf=pass/);
  assert.match(ar(r), /dkim=pass header\.i=@example\.com header\.s=s1/);
  assert.match(ar(r), /dmarc=pass/);
  assert.doesNotMatch(ar(r), /\r/, 'folded with LF for Postfix');
  assert.equal(header(r, 'Received-SPF').length, 1);
  assert.ok(resolver.calls.some((c) => c.name === '_dmarc.example.com'));
  // DMARC passed, so BIMI was looked up: the domain publishes no BIMI record.
  assert.ok(resolver.calls.some((c) => c.name === 'default._bimi.example.com'), JSON.stringify(resolver.calls));
  assert.match(ar(r), /bimi=(none|skipped)/);
  const trace = header(r, 'X-Ceerion-Milter')[0]?.value ?? '';
  assert.match(trace, /auth=spf=pass dkim=pass dmarc=pass/);
});

test('DMARC fail under p=reject is refused with 550 5.7.1 naming the domain', async (t) => {
  const { r } = await run(t, zone('v=DMARC1; p=reject'), message('alice@example.com'), { connect: { ...LOCAL_CONNECT, address: '203.0.113.9' } });
  assert.equal(r.verdict.kind, 'replycode');
  assert.match((r.verdict as { reply: string }).reply, /^550 5\.7\.1 Message rejected: unauthenticated mail from example\.com is refused by its DMARC policy \(ref \w+\.1\)$/);
});

test('p=quarantine adds the junk header, or holds the message when configured; p=none does nothing', async (t) => {
  const stranger = { connect: { ...LOCAL_CONNECT, address: '203.0.113.9' } };
  const q = await run(t, zone('v=DMARC1; p=quarantine'), message('alice@example.com'), stranger);
  assert.equal(q.r.verdict.kind, 'accept');
  assert.match(header(q.r, 'X-Ceerion-Junk')[0]?.value ?? '', /^ ?yes; reason=dmarc-quarantine; domain=example\.com$/);
  const hold = await run(t, zone('v=DMARC1; p=quarantine'), message('alice@example.com'), { ...stranger, auth: { dmarc: { quarantine: 'hold' } } });
  assert.ok(hold.r.modifications.some((m) => m.kind === 'quarantine'));
  const none = await run(t, zone('v=DMARC1; p=none'), message('alice@example.com'), stranger);
  assert.equal(none.r.verdict.kind, 'accept');
  assert.equal(header(none.r, 'X-Ceerion-Junk').length, 0);
  assert.match(ar(none.r), /dmarc=fail/);
});

test('pct: a message outside the sample gets the next milder policy; overrides win', async (t) => {
  const stranger = { connect: { ...LOCAL_CONNECT, address: '203.0.113.9' } };
  const sampled = await run(t, zone('v=DMARC1; p=reject; pct=50'), message('alice@example.com'), { ...stranger, random: 0.2 });
  assert.equal(sampled.r.verdict.kind, 'replycode');
  const notSampled = await run(t, zone('v=DMARC1; p=reject; pct=50'), message('alice@example.com'), { ...stranger, random: 0.7 });
  assert.equal(notSampled.r.verdict.kind, 'accept');
  assert.equal(header(notSampled.r, 'X-Ceerion-Junk').length, 1, 'reject not sampled → quarantine');
  const forwarder = await run(t, zone('v=DMARC1; p=reject'), message('alice@example.com'), { ...stranger, auth: { dmarc: { overrides: { 'example.com': 'none' } } } });
  assert.equal(forwarder.r.verdict.kind, 'accept');
});

test('forged results claiming our authserv-id are deleted, highest index first; others stay; trusted relays keep theirs', async (t) => {
  const raw = await sign(message('alice@example.com'), 'example.com', 's1', key);
  const forged =
    'Authentication-Results: MX.test; dkim=pass; dmarc=pass\r\nAuthentication-Results: other.example; spf=fail\r\n' +
    'ARC-Authentication-Results: i=1; mx.test; dmarc=pass\r\nauthentication-results: mx.test (forged); spf=pass\r\n';
  const { r } = await run(t, zone('v=DMARC1; p=reject'), forged + raw);
  const deletions = r.modifications.filter((m) => m.kind === 'chgheader' && m.value === '').map((m) => `${(m as { name: string }).name}#${(m as { index: number }).index}`);
  assert.deepEqual(deletions, ['Authentication-Results#3', 'Authentication-Results#1', 'ARC-Authentication-Results#1']);
  const relayed = await run(t, zone('v=DMARC1; p=reject'), forged + raw, { auth: { trustedRelays: ['192.0.2.0/24'] } });
  assert.equal(relayed.r.modifications.filter((m) => m.kind === 'chgheader').length, 0);
});

test('a DNS timeout gives temperror in the header, never a rejection', async (t) => {
  const z = zone('v=DMARC1; p=reject', { 'example.com': { TXT: 'ETIMEOUT' }, '_dmarc.example.com': { TXT: 'ETIMEOUT' } });
  const { r } = await run(t, z, message('alice@example.com'), { connect: { ...LOCAL_CONNECT, address: '203.0.113.9' } });
  assert.equal(r.verdict.kind, 'accept');
  assert.match(ar(r), /spf=temperror/);
  assert.match(ar(r), /dmarc=temperror/);
});

test('authenticated clients and internal networks skip the checks without a lookup; forged results still go', async (t) => {
  const forged = 'Authentication-Results: mx.test; dmarc=pass\r\n' + message('alice@example.com');
  const authed = await run(t, zone('v=DMARC1; p=reject'), forged, { authen: 'alice' });
  assert.equal(authed.r.verdict.kind, 'accept');
  assert.deepEqual(authed.resolver.calls, []);
  assert.equal(header(authed.r, 'Authentication-Results').length, 0);
  assert.equal(authed.r.modifications.filter((m) => m.kind === 'chgheader').length, 1);
  const local = await run(t, zone('v=DMARC1; p=reject'), forged, { connect: { ...LOCAL_CONNECT, address: '127.0.0.1' } });
  assert.deepEqual(local.resolver.calls, []);
  const unix = await run(t, zone('v=DMARC1; p=reject'), forged, { connect: { hostname: 'localhost', family: Family.UNIX, port: 0, address: '/run/x' } });
  assert.deepEqual(unix.resolver.calls, []);
});

test('bad input gets a clear result, never a crash: malformed DKIM-Signature, two From headers, 8-bit garbage', async (t) => {
  const stranger = { connect: { ...LOCAL_CONNECT, address: '203.0.113.9' } };
  const malformed = 'DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s1; b=!!!not base64; bh=\r\n' + message('alice@example.com');
  const a = await run(t, zone('v=DMARC1; p=none'), malformed, stranger);
  assert.equal(a.r.verdict.kind, 'accept');
  assert.match(ar(a.r), /dkim=(neutral|fail|permerror|policy)/);
  const twoFrom = 'From: mallory@evil.example\r\n' + message('alice@example.com');
  const b = await run(t, zone('v=DMARC1; p=none'), twoFrom, stranger);
  assert.ok(['accept', 'replycode'].includes(b.r.verdict.kind));
  assert.ok(ar(b.r).length > 0, 'an Authentication-Results header is still written');
  const garbage = 'X-Garbage: \u00ff\u00fe\u0000\u0001 caf\u00e9\r\n' + message('alice@example.com');
  const c = await run(t, zone('v=DMARC1; p=none'), garbage.replace('\u0000', ''), stranger);
  assert.equal(c.r.verdict.kind, 'accept');
});
