/**
 * Checks seen from the MTA's side of a real socket: verdicts, failures and timeouts mapped to
 * replies, PROGRESS while a check runs long, per-recipient rejects, the negotiation a hook implies,
 * and every end-of-message modification plus the verdict in one TCP write.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Check } from '../../milter/checks/types.ts';
import { POSTFIX_OFFER, type MessageSpec } from '../../milter/client/milter-client.ts';
import { encodeCommand, type Command } from '../../milter/protocol/commands.ts';
import { Action, ALL_ACTIONS, Cmd, Proto } from '../../milter/protocol/constants.ts';
import { FrameDecoder } from '../../milter/protocol/framing.ts';
import { buildReplyCode } from '../../milter/protocol/replycode.ts';
import { parseResponse, type Modification, type Response, type Verdict } from '../../milter/protocol/responses.ts';
import { counter, messageSpec, ready, setup } from '../helpers/session.ts';

/** The shared message with this file's queue id. */
const spec = (over: Partial<MessageSpec> = {}): MessageSpec => messageSpec({ macros: { mail: [['i', 'QCHECK1']] }, ...over });

const traceOf = (mods: Modification[]) => mods.find((x) => x.kind === 'insheader')?.value;
const REF = /\(ref [0-9a-f]{10}\.1\)$/;

describe('check verdicts at end of message', () => {
  const verdicts: Array<[string, Verdict]> = [
    ['reject', { kind: 'reject' }],
    ['tempfail', { kind: 'tempfail' }],
    ['discard', { kind: 'discard' }],
    ['replycode', { kind: 'replycode', reply: buildReplyCode(550, '5.7.1', 'Spam score 100%') }],
  ];
  for (const [name, verdict] of verdicts) {
    test(`a check answering ${name} is the verdict, and earlier modifications are dropped`, async (t) => {
      const tagger: Check = {
        name: 'tagger',
        actions: Action.ADDHDRS,
        endOfMessage: () => ({ modifications: [{ kind: 'addheader', name: 'X-Tag', value: 'yes' }] }),
      };
      const judge: Check = { name: 'judge', endOfMessage: async () => ({ verdict }) };
      const { m, connect } = await setup(t, { checks: [tagger, judge] });
      const c = await ready(connect);
      const r = await c.message(spec());
      assert.equal(r.stage, 'eom');
      assert.deepEqual(r.verdict, verdict);
      assert.deepEqual(r.modifications, []);
      assert.equal(await counter(m, 'ceerion_milter_verdicts_total', { verdict: verdict.kind }), 1);
      // The connection stays usable for the next message.
      assert.deepEqual((await c.message(spec())).verdict, verdict);
      assert.equal(await counter(m, 'ceerion_milter_messages_total'), 2);
    });
  }
  test('the replycode text keeps its doubled percent sign on the wire', () => {
    assert.equal(buildReplyCode(550, '5.7.1', 'Spam score 100%'), '550 5.7.1 Spam score 100%%');
  });
});

describe('check failures', () => {
  const throwers: Array<[string, Check['endOfMessage']]> = [
    [
      'throws',
      () => {
        throw new Error('boom');
      },
    ],
    ['rejects', async () => Promise.reject(new Error('boom'))],
  ];
  for (const [how, endOfMessage] of throwers) {
    test(`a check that ${how} becomes 451 4.7.1 with the ref`, async (t) => {
      const { m, connect } = await setup(t, { checks: [{ name: 'boom', endOfMessage }] });
      const c = await ready(connect);
      const r = await c.message(spec());
      assert.equal(r.verdict.kind, 'replycode');
      const reply = (r.verdict as Extract<Response, { kind: 'replycode' }>).reply;
      assert.match(reply, /^451 4\.7\.1 Temporary failure in the boom check, try again later /);
      assert.match(reply, REF);
      assert.equal(await counter(m, 'ceerion_milter_errors_total', { kind: 'check_failed' }), 1);
    });
  }

  test("onError 'accept': the failure is ignored and the message accepted with its trace header", async (t) => {
    const boom: Check = {
      name: 'boom',
      onError: 'accept',
      endOfMessage() {
        throw new Error('boom');
      },
    };
    const { m, connect } = await setup(t, { checks: [boom] });
    const c = await ready(connect);
    const r = await c.message(spec());
    assert.deepEqual(r.verdict, { kind: 'accept' });
    assert.match(traceOf(r.modifications) ?? '', /verdict=accept/);
    assert.equal(await counter(m, 'ceerion_milter_errors_total', { kind: 'check_failed' }), 1);
  });

  test("onError 'reject' and a configured defaultOnError 'reject' answer 550 5.7.1 with the ref", async (t) => {
    const own: Check = { name: 'own', onError: 'reject', endOfMessage: () => Promise.reject(new Error('x')) };
    const byDefault: Check = { name: 'byDefault', endOfMessage: () => Promise.reject(new Error('x')) };
    for (const check of [own, byDefault]) {
      const milter = check === own ? {} : { checks: { defaultOnError: 'reject' } };
      const { connect } = await setup(t, { checks: [check], milter });
      const r = await (await ready(connect)).message(spec());
      const reply = r.verdict.kind === 'replycode' ? r.verdict.reply : '';
      assert.match(reply, new RegExp(`^550 5\\.7\\.1 Message refused by the ${check.name} check `));
      assert.match(reply, REF);
    }
  });

  test('a check past its timeoutMs is abandoned (its signal aborted) and the message tempfailed', async (t) => {
    let aborted = false;
    const slow: Check = {
      name: 'slow',
      timeoutMs: 50,
      async endOfMessage(ctx) {
        ctx.signal.addEventListener('abort', () => (aborted = true));
        await sleep(10_000, undefined, { signal: ctx.signal });
      },
    };
    const { m, connect } = await setup(t, { checks: [slow] });
    const c = await ready(connect);
    const started = performance.now();
    const r = await c.message(spec());
    assert.ok(performance.now() - started < 5000);
    const reply = r.verdict.kind === 'replycode' ? r.verdict.reply : '';
    assert.match(reply, /^451 4\.7\.1 Temporary failure in the slow check/);
    assert.match(reply, REF);
    assert.ok(aborted, 'the check was told to stop');
    assert.equal(await counter(m, 'ceerion_milter_errors_total', { kind: 'check_timeout' }), 1);
    assert.equal(await counter(m, 'ceerion_milter_errors_total', { kind: 'check_failed' }), 0);
  });
});

describe('PROGRESS', () => {
  test('a check running longer than progressIntervalMs sends PROGRESS before the verdict', async (t) => {
    const slow: Check = {
      name: 'slow',
      async endOfMessage(ctx) {
        if (ctx.message.headers.some((h) => h.value === 'slow')) await sleep(400);
      },
    };
    const { connect } = await setup(t, { checks: [slow], milter: { progressIntervalMs: 50 } });
    const c = await ready(connect);
    const r = await c.message(spec({ headers: [['Subject', 'slow']] }));
    assert.ok(r.progress > 0, `${r.progress} PROGRESS frames`);
    assert.equal(r.verdict.kind, 'accept');
    assert.ok(traceOf(r.modifications));
    const fast = await c.message(spec());
    assert.equal(fast.progress, 0);
    assert.equal(fast.verdict.kind, 'accept');
  });
});

describe('envelope hooks', () => {
  test('an envRcpt hook rejects one recipient only; the message goes on without it', async (t) => {
    const seen: string[][] = [];
    const rcptCheck: Check = {
      name: 'rcpt',
      envRcpt(_ctx, rcpt) {
        if (rcpt === '<spamtrap@example.net>') return { verdict: { kind: 'reject' } };
        if (rcpt === '<full@example.net>') return { verdict: { kind: 'replycode', reply: '452 4.2.2 Mailbox full' } };
      },
      endOfMessage(ctx) {
        seen.push([...ctx.message.recipients]);
      },
    };
    // noReply: always, as on a unix socket, so that the hook's effect on NR_* shows.
    const { m, connect } = await setup(t, { checks: [rcptCheck], milter: { noReply: 'always' } });
    const c = await ready(connect);
    const neg = c.negotiated!;
    assert.equal(neg.protocol & (Proto.NOMAIL | Proto.NORCPT), 0, 'the envelope is sent');
    assert.equal(neg.protocol & Proto.NR_RCPT, 0, 'RCPT needs a reply');
    assert.equal(neg.protocol & Proto.NR_MAIL, Proto.NR_MAIL, 'MAIL still does not');
    c.send({ kind: 'mail', sender: '<alice@example.org>', args: [] });
    const rcpt = async (recipient: string) => (await c.request({ kind: 'rcpt', recipient, args: [] })).response;
    assert.deepEqual(await rcpt('<bob@example.net>'), { kind: 'continue' });
    assert.deepEqual(await rcpt('<spamtrap@example.net>'), { kind: 'reject' });
    assert.deepEqual(await rcpt('<full@example.net>'), { kind: 'replycode', reply: '452 4.2.2 Mailbox full' });
    assert.deepEqual(await rcpt('<carol@example.net>'), { kind: 'continue' });
    c.send({ kind: 'header', name: 'Subject', value: ' hi' });
    c.send({ kind: 'eoh' });
    const eom = await c.request({ kind: 'eom', chunk: Buffer.alloc(0) });
    assert.deepEqual(eom.response, { kind: 'accept' });
    assert.deepEqual(seen, [['<bob@example.net>', '<carol@example.net>']]);
    // A recipient verdict is not the message's verdict.
    assert.equal(await counter(m, 'ceerion_milter_verdicts_total', { verdict: 'reject' }), 0);
    assert.equal(await counter(m, 'ceerion_milter_verdicts_total', { verdict: 'accept' }), 1);
  });

  test('an envFrom hook makes MAIL need a reply; its reject ends that message only', async (t) => {
    const fromCheck: Check = {
      name: 'from',
      envFrom(ctx) {
        if (ctx.message.sender === '<spammer@example.com>') return { verdict: { kind: 'reject' } };
      },
    };
    const { m, connect } = await setup(t, { checks: [fromCheck], milter: { noReply: 'always' } });
    const c = await ready(connect);
    assert.equal(c.negotiated!.protocol & (Proto.NOMAIL | Proto.NORCPT), 0, 'the envelope is sent');
    assert.equal(c.negotiated!.protocol & Proto.NR_MAIL, 0);
    assert.equal(c.negotiated!.protocol & Proto.NR_RCPT, Proto.NR_RCPT);
    assert.deepEqual(
      (await c.request({ kind: 'mail', sender: '<alice@example.org>', args: ['BODY=8BITMIME'] })).response,
      { kind: 'continue' },
    );
    c.abort();
    const rejected = await c.message(spec({ from: '<spammer@example.com>' }));
    assert.deepEqual({ stage: rejected.stage, verdict: rejected.verdict }, { stage: 'mail', verdict: { kind: 'reject' } });
    const ok = await c.message(spec());
    assert.equal(ok.verdict.kind, 'accept');
    assert.match(traceOf(ok.modifications) ?? '', /ref=[0-9a-f]{10}\.3$/);
    assert.equal(await counter(m, 'ceerion_milter_verdicts_total', { verdict: 'reject' }), 1);
    assert.equal(await counter(m, 'ceerion_milter_messages_total'), 3);
  });
});

const EVERY_MOD: Modification[] = [
  { kind: 'addheader', name: 'X-Spam-Score', value: '1.5' },
  { kind: 'chgfrom', from: '<bounce@example.org>', args: 'SIZE=100' },
  { kind: 'addrcpt', rcpt: '<archive@example.org>' },
  { kind: 'delrcpt', rcpt: '<bob@example.net>' },
  { kind: 'quarantine', reason: 'looks odd' },
];
const modifier: Check = {
  name: 'modifier',
  actions: Action.ADDHDRS | Action.CHGFROM | Action.ADDRCPT | Action.DELRCPT | Action.QUARANTINE,
  endOfMessage: () => ({ modifications: EVERY_MOD }),
};

describe('end-of-message modifications', () => {
  test('all modifications and the verdict arrive in one TCP write', async (t) => {
    // noReply: always, so that Postfix sends the whole message without waiting.
    const { m } = await setup(t, { checks: [modifier], milter: { noReply: 'always' } });
    const sock = net.connect(m.server.port, '127.0.0.1');
    t.after(() => sock.destroy());
    await once(sock, 'connect');
    sock.setNoDelay(true);
    const events: Buffer[] = [];
    let wake: (() => void) | undefined;
    sock.on('data', (chunk: Buffer) => {
      events.push(chunk);
      wake?.();
    });
    const nextEvent = async () => {
      while (events.length === 0) await new Promise<void>((r) => (wake = r));
      return events.shift()!;
    };
    const decode = (b: Buffer) => {
      const d = new FrameDecoder();
      const out = d.push(b).map(parseResponse);
      assert.equal(d.pendingBytes, 0, 'only whole frames');
      return out;
    };

    sock.write(encodeCommand({ kind: 'optneg', ...POSTFIX_OFFER }));
    const [optneg] = decode(await nextEvent());
    assert.ok(optneg?.kind === 'optneg');
    // Negotiated: no CONNECT, HELO, MAIL, RCPT, EOH or body; headers without a reply.
    const sent = Proto.NOCONNECT | Proto.NOHELO | Proto.NOMAIL | Proto.NORCPT | Proto.NOEOH | Proto.NOBODY | Proto.NR_HDR;
    assert.equal(optneg.protocol & sent, sent);
    // So Postfix sends all of this without waiting.
    const commands: Command[] = [
      { kind: 'header', name: 'X-Ceerion-Milter', value: ' forged' },
      { kind: 'header', name: 'Subject', value: ' hi' },
      { kind: 'macro', forCommand: Cmd.BODYEOB, macros: [['i', 'ONEWRITE']] },
      { kind: 'eom', chunk: Buffer.alloc(0) },
    ];
    const batch = Buffer.concat(commands.map((cmd) => encodeCommand(cmd)));
    // Count the server side's writes too: one data event could also be several writes coalesced.
    const port = m.server.port;
    let serverWrites = 0;
    const proto = net.Socket.prototype as unknown as { write: (...a: unknown[]) => boolean };
    const inherited = proto.write;
    proto.write = function (this: net.Socket, ...args: unknown[]) {
      if (this.localPort === port) serverWrites++;
      return inherited.apply(this, args);
    };
    let answer: Buffer;
    try {
      sock.write(batch);
      answer = await nextEvent();
    } finally {
      delete (proto as { write?: unknown }).write;
    }
    assert.equal(proto.write, inherited);
    const responses = decode(answer);
    assert.deepEqual(
      responses.map((r) => r.kind),
      ['addheader', 'chgfrom', 'addrcpt', 'delrcpt', 'quarantine', 'chgheader', 'insheader', 'accept'],
    );
    assert.deepEqual(responses.slice(0, 5), [{ ...EVERY_MOD[0]!, value: ' 1.5' }, ...EVERY_MOD.slice(1)]);
    const trace = responses[6] as Extract<Modification, { kind: 'insheader' }>;
    assert.match(trace.value, /verdict=quarantine;/);
    assert.match(trace.value, /queue-id=ONEWRITE;/);
    assert.equal(serverWrites, 1);

    // Nothing else follows: QUIT, and the server's FIN comes with at most the PROGRESS with which
    // it acknowledges a segment that needs no reply.
    sock.write(encodeCommand({ kind: 'quit' }));
    await once(sock, 'end');
    assert.deepEqual(
      decode(Buffer.concat(events)).filter((r) => r.kind !== 'progress'),
      [],
    );
  });

  test('a modification the MTA did not allow is dropped; the rest still arrive', async (t) => {
    const { connect } = await setup(t, { checks: [modifier] });
    const c = await ready(connect, { ...POSTFIX_OFFER, actions: ALL_ACTIONS & ~(Action.ADDRCPT | Action.QUARANTINE) });
    assert.equal(c.negotiated!.actions & (Action.ADDRCPT | Action.QUARANTINE), 0);
    const r = await c.message(spec());
    assert.equal(r.verdict.kind, 'accept');
    assert.deepEqual(
      r.modifications.map((x) => x.kind),
      ['addheader', 'chgfrom', 'delrcpt', 'insheader'],
    );
    // The header value got its leading space (HDR_LEADSPC); envelope values did not.
    assert.deepEqual(r.modifications[0], { kind: 'addheader', name: 'X-Spam-Score', value: ' 1.5' });
    assert.deepEqual(r.modifications[1], EVERY_MOD[1]);
  });
});
