/**
 * End to end: a client submits through a private Postfix with the dkim-sign check in
 * smtpd_milters, and the message that reaches the sink carries DKIM signatures that verify.
 *
 * The harness SMTP client has no AUTH, so the submission counts as ours because it comes from
 * 127.0.0.1 (in the default `networks`). The authenticated case, `{auth_authen}` at MAIL from an
 * outside address, is covered over a real milter session in dkim-sign.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dkimSignCheck } from '../../../milter/checks/dkim-sign.ts';
import { sendMail } from '../../harness/smtp-client.ts';
import { startPostfixStack } from '../../helpers/postfix-stack.ts';
import { fixture, signedNames, testKeys, verify } from '../../fixtures/dkim/mail.ts';

test('a submission from our network arrives at the sink DKIM-signed (RSA + Ed25519), and verifies', async (t) => {
  const keys = testKeys(t);
  const { sink, pf } = await startPostfixStack(t, [dkimSignCheck(keys.config, { keys: keys.store })]);

  const data = fixture('outbound.eml');
  const r = await sendMail({ port: pf.smtpPort, from: 'alice@example.com', to: ['bob@example.org', 'carol@example.org'], data });
  assert.equal(r.code, 250, r.text);
  const [m] = await sink.waitFor(1, 20_000);
  const delivered = m!.data;
  const head = delivered.slice(0, delivered.indexOf('\r\n\r\n'));

  // Ours are on top, under the trace header, above Postfix's Received.
  assert.match(head, /^X-Ceerion-Milter: [^]*?\r\nDKIM-Signature: v=1; a=rsa-sha256;[^]*?\r\nDKIM-Signature: v=1; a=ed25519-sha256;[^]*?\r\nReceived: /);
  assert.match(head.replace(/\r\n\t/g, ' '), /dkim-sign=signed example\.com s=ceerion rsa\+ed25519/);
  const sig = /^DKIM-Signature: (.*(?:\r\n[ \t].*)*)/m.exec(head)![1]!;
  assert.equal(signedNames(sig).filter((n) => n === 'from').length, 2, 'From oversigned');

  const results = await verify(Buffer.from(delivered, 'utf8'), keys.zone);
  assert.deepEqual(results.map((x) => [x.algorithm, x.domain, x.result]), [
    ['rsa-sha256', 'example.com', 'pass'],
    ['ed25519-sha256', 'example.com', 'pass'],
  ]);
  assert.match(delivered, /\r\n\.A line that starts with a dot/, 'dot-stuffing undone before the sink');
  assert.match(delivered, /Grüße, Alice/, '8-bit body passed through unchanged');
});

test('mail from a domain we hold no key for passes through Postfix unsigned', async (t) => {
  const keys = testKeys(t);
  const { sink, pf } = await startPostfixStack(t, [dkimSignCheck(keys.config, { keys: keys.store })]);
  const data = fixture('outbound.eml').replace('alice@example.com', 'alice@example.net');
  const r = await sendMail({ port: pf.smtpPort, from: 'alice@example.net', to: ['bob@example.org'], data });
  assert.equal(r.code, 250, r.text);
  const [m] = await sink.waitFor(1, 20_000);
  const head = m!.data.slice(0, m!.data.indexOf('\r\n\r\n'));
  assert.doesNotMatch(head, /^DKIM-Signature:/m);
  assert.match(head.replace(/\r\n\t/g, ' '), /dkim-sign=skipped \(no key for example\.net\)/);
});
