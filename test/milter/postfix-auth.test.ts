/**
 * Authentication end to end: SMTP client → private Postfix → our milter (auth on) → sink, with every
 * DNS answer from a private dnsmasq on loopback, so the whole path is real.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { parseConfig } from '../../core/config/load.ts';
import { createResolver } from '../../core/dns/index.ts';
import { silentLogger } from '../../core/log.ts';
import { startDnsmasq } from '../harness/dnsmasq.ts';
import { startPostfix } from '../harness/postfix.ts';
import { sendMail } from '../harness/smtp-client.ts';
import { startSmtpSink } from '../harness/smtp-sink.ts';
import { startTestMilter } from '../helpers/milter.ts';
import { message, rsaKey, sign, type TestKey } from '../helpers/signed-mail.ts';

let key: TestKey;
before(() => {
  key = rsaKey();
});

test('DMARC p=reject failures get a 5xx; signed mail passes and forged results are gone at the sink', async (t) => {
  const dns = await startDnsmasq({
    txt: {
      // Postfix's client (127.0.0.1) is not allowed by either SPF record.
      'example.com': ['v=spf1 ip4:192.0.2.99 -all'],
      '_dmarc.example.com': ['v=DMARC1; p=reject'],
      'signed.example': ['v=spf1 ip4:192.0.2.99 -all'],
      '_dmarc.signed.example': ['v=DMARC1; p=reject'],
      's1._domainkey.signed.example': [key.txt],
    },
  });
  t.after(() => dns.stop());
  const resolver = createResolver(parseConfig({ dns: { servers: [dns.server] } }).dns, { log: silentLogger });
  t.after(() => resolver.close());
  const sink = await startSmtpSink();
  t.after(() => sink.close());
  // Loopback is an internal network by default (skipped); here it plays the outside world.
  const milter = await startTestMilter({ resolver: resolver.resolve, milter: { checks: { auth: { enabled: true, internalNetworks: [] } } } });
  t.after(() => milter.stop());
  const pf = await startPostfix({ milter: milter.address, relayPort: sink.port });
  t.after(() => pf.stop());

  const spoofed = await sendMail({ port: pf.smtpPort, from: 'alice@example.com', to: ['bob@example.org'], data: message('alice@example.com').replace(/\r\n/g, '\n') });
  assert.equal(spoofed.code, 550, spoofed.text);
  assert.match(spoofed.text, /5\.7\.1 Message rejected: unauthenticated mail from example\.com is refused by its DMARC policy/);

  const signed = await sign(message('alice@signed.example'), 'signed.example', 's1', key);
  const forged = 'Authentication-Results: mx.test; dkim=pass; dmarc=pass\r\n';
  const ok = await sendMail({ port: pf.smtpPort, from: 'alice@signed.example', to: ['bob@example.org'], data: forged + signed });
  assert.equal(ok.code, 250, ok.text);
  const [m] = await sink.waitFor(1, 20_000);
  const head = m!.data.split('\r\n\r\n')[0]!;
  const results = head.match(/^Authentication-Results:.*(\r\n[ \t].*)*/gim) ?? [];
  assert.equal(results.length, 1, `only our own result header may remain:\n${head}`);
  assert.match(results[0]!, /^Authentication-Results: mx\.test;/);
  assert.match(results[0]!, /dkim=pass header\.i=@signed\.example/);
  assert.match(results[0]!, /spf=fail/);
  assert.match(results[0]!, /dmarc=pass/);
  assert.match(head, /^Received-SPF: fail/m);
  assert.equal(sink.messages.length, 1);
});
