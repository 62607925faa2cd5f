/**
 * End to end: SMTP client → private Postfix (our milter with the antivirus check in smtpd_milters)
 * → SMTP sink, with a private clamd. The EICAR test file gets a 5xx at the SMTP client and never
 * reaches the sink; a clean message is delivered with `antivirus=clean` in the trace header; with
 * clamd down the default verdict (tempfail) gives a 4xx, so the sender keeps the mail queued.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { antivirusCheck } from '../../../milter/checks/antivirus.ts';
import { SIGNATURE_NAME, eicarAttachment, eicarPlain } from '../../fixtures/clamav/eicar.ts';
import { startClamd } from '../../harness/clamd.ts';
import { freePort } from '../../harness/postfix.ts';
import { sendMail } from '../../harness/smtp-client.ts';
import { startPostfixStack } from '../../helpers/postfix-stack.ts';

const config = (clamd: string) => ({ clamd, timeoutMs: 10_000, onError: 'tempfail' as const, maxBytes: 16 * 1024 * 1024 });

/** LF-separated message text for the SMTP client (it CRLF-normalises and dot-stuffs). */
const data = (m: { headers: Array<[string, string]>; body: string }) =>
  `${m.headers.map(([k, v]) => `${k}: ${v}`).join('\n')}\n\n${m.body.replace(/\r\n/g, '\n')}`;

const envelope = { from: 'alice@example.org', to: ['bob@example.net'] };

test('through Postfix: EICAR gets 554 5.7.1 at the SMTP client, a clean message is delivered with antivirus=clean', async (t) => {
  const clamd = await startClamd();
  t.after(() => clamd.stop());
  const { sink, pf } = await startPostfixStack(t, [antivirusCheck(config(clamd.unixSocket))]);

  for (const m of [eicarPlain(), eicarAttachment()]) {
    const r = await sendMail({ port: pf.smtpPort, ...envelope, data: data(m) });
    assert.equal(r.code, 554, r.text);
    assert.match(r.text, new RegExp(`^5\\.7\\.1 Virus found: ${SIGNATURE_NAME.replace(/\./g, '\\.')} \\(ref \\w+\\.1\\)$`));
  }

  const clean = { headers: [['From', 'alice@example.org'], ['To', 'bob@example.net'], ['Subject', 'clean']] as Array<[string, string]>, body: 'Hello Bob.\n' };
  const ok = await sendMail({ port: pf.smtpPort, ...envelope, data: data(clean) });
  assert.equal(ok.code, 250, ok.text);
  const [delivered] = await sink.waitFor(1, 20_000);
  // Postfix folds the long trace header; unfold it before matching.
  const head = delivered!.data.split('\r\n\r\n')[0]!.replace(/\r\n[ \t]+/g, ' ');
  assert.match(head, /^X-Ceerion-Milter: .*; queue-id=\w+; ref=\w+\.1; antivirus=clean \(\d+\.\d ms\)\r?$/m);
  assert.match(delivered!.data, /Subject: clean/);
  // Only the clean message got through, and nothing is left in the queue.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(sink.messages.length, 1);
  assert.equal(await pf.queueSize(), 0);
  const log = await pf.waitForLog(/milter-reject: END-OF-MESSAGE .*: 5\.7\.1 Virus found/);
  assert.match(log, /Ceerion\.Test\.EICAR\.UNOFFICIAL/);
});

test('through Postfix: with clamd down the default verdict is tempfail, a 451 4.7.1 at the SMTP client', async (t) => {
  // The issue asks for "a 5xx for a clamd outage with the default verdict"; the default verdict is
  // tempfail (antivirusSchema.onError), which Postfix answers with a 4xx: the mail stays at the sender.
  const { sink, pf } = await startPostfixStack(t, [antivirusCheck(config(`inet:127.0.0.1:${await freePort()}`))]);
  const r = await sendMail({ port: pf.smtpPort, ...envelope, data: data(eicarPlain()) });
  assert.equal(r.code, 451, r.text);
  assert.match(r.text, /^4\.7\.1 Temporary failure in the antivirus check, try again later \(ref \w+\.1\)$/);
  const clean = await sendMail({ port: pf.smtpPort, ...envelope, data: 'Subject: clean\n\nHello.\n' });
  assert.equal(clean.code, 451, clean.text);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(sink.messages.length, 0);
  assert.equal(await pf.queueSize(), 0);
});
