/**
 * ARC sealing for a configured forwarding flow: mail to a listed recipient gets an ARC set
 * (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results) that the next hop validates as
 * arc=pass; mail to anyone else is not sealed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { authenticate } from 'mailauth';
import { parseConfig } from '../../../core/config/load.ts';
import { zoneResolver } from '../../../core/dns/zone-resolver.ts';
import { authenticationCheck } from '../../../milter/checks/auth/authentication.ts';
import type { Modification } from '../../../milter/protocol/responses.ts';
import { ready, setup } from '../../helpers/session.ts';
import { message, rsaKey, sign, toSpec } from '../../helpers/signed-mail.ts';

const dkimKey = rsaKey();
const arcKey = rsaKey();
const zone = {
  'example.com': { TXT: [['v=spf1 ip4:192.0.2.10 -all']] },
  's1._domainkey.example.com': { TXT: [dkimKey.txt] },
  '_dmarc.example.com': { TXT: [['v=DMARC1; p=none']] },
  'arc._domainkey.ceerion.test': { TXT: [arcKey.txt] },
};

async function deliver(t: TestContext, rcpt: string) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ceerion-arc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = path.join(dir, 'arc.key');
  writeFileSync(keyFile, arcKey.privateKey, { mode: 0o600 });
  const cfg = parseConfig({
    milter: { checks: { auth: { arcSeal: { enabled: true, signingDomain: 'ceerion.test', selector: 'arc', keyFile, recipients: ['@lists.example.org', 'fwd@example.net'] } } } },
  }).milter.checks.auth;
  const { connect } = await setup(t, { checks: [authenticationCheck(cfg, { resolver: zoneResolver(zone), authservId: 'mx.ceerion.test' })] });
  const c = await ready(connect);
  const raw = await sign(message('alice@example.com'), 'example.com', 's1', dkimKey);
  const r = await c.message(toSpec(raw, '<alice@example.com>', [rcpt]));
  return { r, raw };
}

/** The message as the next hop receives it: our inserted headers on top, in order. */
function forwarded(mods: Modification[], raw: string): string {
  const inserted = mods.filter((x): x is Extract<Modification, { kind: 'insheader' }> => x.kind === 'insheader');
  // Each was inserted at index 0, so the last one inserted is on top.
  const top = [...inserted].reverse().map((h) => `${h.name}:${h.value.replace(/\n/g, '\r\n')}\r\n`);
  return top.join('') + raw;
}

test('mail to a listed forwarding recipient is ARC-sealed, and the next hop validates the chain', async (t) => {
  const { r, raw } = await deliver(t, '<list@lists.example.org>');
  const names = r.modifications.filter((x) => x.kind === 'insheader').map((x) => (x as { name: string }).name);
  for (const n of ['ARC-Seal', 'ARC-Message-Signature', 'ARC-Authentication-Results']) assert.ok(names.includes(n), `${n} in ${names}`);
  const next = await authenticate(forwarded(r.modifications, raw), {
    ip: '198.51.100.1',
    helo: 'mx.ceerion.test',
    sender: 'alice@example.com',
    mta: 'next.example',
    resolver: zoneResolver(zone) as never,
  });
  assert.equal(next.arc && next.arc.status.result, 'pass', JSON.stringify(next.arc && next.arc.status));
});

test('mail to anyone else is not sealed', async (t) => {
  const { r } = await deliver(t, '<bob@example.org>');
  assert.ok(!r.modifications.some((x) => x.kind === 'insheader' && /^ARC-/i.test(x.name)));
});

test('arcSeal enabled without a key is a config error naming the key', () => {
  assert.throws(() => parseConfig({ milter: { checks: { auth: { arcSeal: { enabled: true } } } } }), /milter\.checks\.auth\.arcSeal.*needs signingDomain and keyFile/);
});
