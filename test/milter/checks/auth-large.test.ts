/**
 * A 50 MB message through the authentication check streams: the DKIM body hash is computed as
 * chunks arrive, nothing holds the whole message, and the result is a clear header, not a crash.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Check } from '../../../milter/checks/types.ts';
import { parseConfig } from '../../../core/config/load.ts';
import { zoneResolver } from '../../../core/dns/zone-resolver.ts';
import { authenticationCheck } from '../../../milter/checks/auth/authentication.ts';
import { ready, setup } from '../../helpers/session.ts';
import { message, rsaKey, sign, toSpec } from '../../helpers/signed-mail.ts';

// A real collection before each reading, so garbage not yet collected does not count as held.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const live = () => {
  gc();
  const u = process.memoryUsage();
  return u.heapUsed + u.arrayBuffers;
};

test('a 50 MB message streams through SPF/DKIM/DMARC with bounded memory', async (t) => {
  const key = rsaKey();
  const resolver = zoneResolver({
    'example.com': { TXT: [['v=spf1 ip4:192.0.2.10 -all']] },
    's1._domainkey.example.com': { TXT: [key.txt] },
    '_dmarc.example.com': { TXT: [['v=DMARC1; p=none']] },
  });
  const cfg = parseConfig({}).milter.checks.auth;
  // Runs after the authentication check, at end of message: the whole body has streamed through,
  // so anything that kept it would still be reachable now.
  let atEnd = 0;
  const probe: Check = { name: 'probe', endOfMessage: () => void (atEnd = live()) };
  // Every stage answered, so the in-process client waits per body chunk instead of queueing 50 MB.
  const { connect } = await setup(t, { checks: [authenticationCheck(cfg, { resolver, authservId: 'mx.test' }), probe], milter: { noReply: 'never' } });
  const c = await ready(connect);
  // Signed over a small body; the 50 MB body then fails the body hash, which must still be computed.
  const spec = toSpec(await sign(message('alice@example.com'), 'example.com', 's1', key), '<alice@example.com>');
  const line = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n');
  spec.body = Buffer.alloc(50 * 1024 * 1024, line);

  const before = live();
  const rssBefore = process.memoryUsage().rss;
  let peak = rssBefore;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const started = Date.now();
  const r = await c.message(spec);
  clearInterval(sampler);
  const heldMb = (atEnd - before) / 1024 / 1024;
  t.diagnostic(`50 MB in ${Date.now() - started} ms; live memory at end of message +${heldMb.toFixed(1)} MB; RSS peak +${((peak - rssBefore) / 1048576).toFixed(1)} MB`);

  assert.equal(r.verdict.kind, 'accept');
  const ar = r.modifications.find((x) => x.kind === 'insheader' && x.name === 'Authentication-Results');
  assert.ok(ar && 'value' in ar);
  assert.match(ar.value, /dkim=neutral \(body hash did not verify\)/);
  assert.match(ar.value, /spf=pass/);
  // The message is 50 MB: holding it, or a copy, would leave 50 MB or more live at end of message.
  assert.ok(atEnd > 0, 'the probe ran');
  assert.ok(heldMb < 25, `${heldMb.toFixed(1)} MB still live at end of message after streaming 50 MB`);
});
