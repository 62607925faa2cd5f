/**
 * Milter sessions over real sockets (TCP on port 0 and a unix socket in a temp dir), driven by our
 * own MilterClient: negotiation, connect families, the trace header, macros, lower MTA versions,
 * ABORT, QUIT and QUIT_NC. Checks and verdicts: session-checks.test.ts; bad input, idle timeout,
 * shutdown and load: session-server.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { Check } from '../../milter/checks/types.ts';
import { LOCAL_CONNECT, POSTFIX_OFFER, type MessageSpec } from '../../milter/client/milter-client.ts';
import { REQUESTED_MACROS } from '../../milter/pipeline-handler.ts';
import { Action, Cmd, Family, MacroStage, Proto } from '../../milter/protocol/constants.ts';
import { encodeFrame } from '../../milter/protocol/framing.ts';
import type { Modification } from '../../milter/protocol/responses.ts';
import { counter, messageSpec, ready, setup, type StartOptions } from '../helpers/session.ts';

/** The shared message with this file's From header and queue id. */
const spec = (over: Partial<MessageSpec> = {}): MessageSpec =>
  messageSpec({
    headers: [
      ['From', 'Alice <alice@example.org>'],
      ['Subject', 'hello'],
    ],
    macros: { mail: [['i', '4XyZ1abc']] },
    ...over,
  });

function traceHeader(mods: Modification[]): Extract<Modification, { kind: 'insheader' }> {
  const ins = mods.filter((m) => m.kind === 'insheader');
  assert.equal(ins.length, 1, `one insheader in ${JSON.stringify(mods)}`);
  return ins[0] as Extract<Modification, { kind: 'insheader' }>;
}

/**
 * What the pipeline handler negotiates with Postfix's offer when only the trace header check runs:
 * it reads headers and nothing else, so every other stage is negotiated away (SMFIP_NO*).
 */
const TRACE_ONLY_SKIPS =
  Proto.HDR_LEADSPC |
  Proto.SKIP |
  Proto.NOCONNECT |
  Proto.NOHELO |
  Proto.NOMAIL |
  Proto.NORCPT |
  Proto.NODATA |
  Proto.NOUNKNOWN |
  Proto.NOEOH |
  Proto.NOBODY;
/** No-reply flags for every stage no check answers (unix sockets, or noReply: always). */
const ALL_NO_REPLY =
  Proto.NR_CONN |
  Proto.NR_HELO |
  Proto.NR_MAIL |
  Proto.NR_RCPT |
  Proto.NR_DATA |
  Proto.NR_UNKN |
  Proto.NR_HDR |
  Proto.NR_EOH |
  Proto.NR_BODY;

async function fullSession(t: TestContext, protocol: number, opts: StartOptions = {}) {
  const { m, connect } = await setup(t, opts);
  const c = await connect();
  const neg = await c.negotiate();
  assert.equal(neg.version, 6);
  assert.equal(neg.protocol, protocol);
  assert.equal(neg.actions, Action.ADDHDRS | Action.CHGHDRS | Action.SETSYMLIST);
  assert.deepEqual(neg.macros, REQUESTED_MACROS);
  assert.ok(neg.macros[MacroStage.CONNECT]?.includes('j'));
  assert.ok(neg.macros[MacroStage.ENVFROM]?.includes('i'));
  assert.ok(neg.macros[MacroStage.ENVFROM]?.includes('{auth_authen}'));

  // NOCONNECT / NOHELO: not sent at all, exactly as Postfix does.
  assert.equal(await c.connectStage(LOCAL_CONNECT, [['j', 'mx.example']]), undefined);
  assert.equal(await c.helo('client.example'), undefined);
  const r = await c.message(
    spec({
      headers: [
        ['X-Ceerion-Milter', 'forged by the sender'],
        ['From', 'Alice <alice@example.org>'],
        ['x-ceerion-milter', 'another forgery'],
        ['Subject', 'hello'],
      ],
      // With NOMAIL, Postfix sends the queue id with the end-of-message macros only.
      macros: { eom: [['i', '4XyZ1abc']] },
    }),
  );
  assert.equal(r.stage, 'eom');
  assert.deepEqual(r.verdict, { kind: 'accept' });
  assert.equal(r.progress, 0);
  // Forged copies go first, highest index first so the lower index does not shift.
  assert.deepEqual(r.modifications.slice(0, 2), [
    { kind: 'chgheader', index: 2, name: 'X-Ceerion-Milter', value: '' },
    { kind: 'chgheader', index: 1, name: 'X-Ceerion-Milter', value: '' },
  ]);
  assert.equal(r.modifications.length, 3);
  const ins = r.modifications[2]!;
  assert.equal(ins.kind, 'insheader');
  const trace = traceHeader(r.modifications);
  assert.equal(trace.index, 0);
  assert.equal(trace.name, 'X-Ceerion-Milter');
  // HDR_LEADSPC was negotiated, so we supply the space after the colon ourselves.
  assert.match(trace.value, /^ ceerion-milter \S+ on mx\.test; verdict=accept;/);
  assert.ok(trace.value.includes('\n\t'), 'folded');
  assert.ok(!trace.value.includes('\r'), 'Postfix adds the CR itself');
  assert.match(trace.value, /queue-id=4XyZ1abc;/);
  assert.match(trace.value, /ref=[0-9a-f]{10}\.1$/);
  for (const line of `X-Ceerion-Milter:${trace.value}`.split('\n')) assert.ok(line.length <= 78, line);

  assert.equal(await counter(m, 'ceerion_milter_messages_total'), 1);
  assert.equal(await counter(m, 'ceerion_milter_verdicts_total', { verdict: 'accept' }), 1);
  await c.quit();
  assert.ok(c.closed);
  return m;
}

describe('full session', () => {
  test('over TCP on an ephemeral port, by default the unanswered stages are negotiated NR_*', async (t) => {
    const m = await fullSession(t, TRACE_ONLY_SKIPS | ALL_NO_REPLY);
    assert.match(m.address, /^inet:127\.0\.0\.1:\d+$/);
    assert.notEqual(m.server.port, 0);
  });

  test('over TCP with noReply: auto or never, every stage the MTA sends is answered (no NR_*)', async (t) => {
    await fullSession(t, TRACE_ONLY_SKIPS, { milter: { noReply: 'auto' } });
    await fullSession(t, TRACE_ONLY_SKIPS, { milter: { noReply: 'never' } });
  });

  test('over a unix socket in a temp dir; the socket gets its mode and is removed on stop', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ceerion-session-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const sock = path.join(dir, 'sub', 'milter.sock');
    const m = await fullSession(t, TRACE_ONLY_SKIPS | ALL_NO_REPLY, { listen: `unix:${sock}` });
    assert.equal(m.address, `unix:${sock}`);
    assert.ok(statSync(sock).isSocket());
    assert.equal(statSync(sock).mode & 0o777, 0o666);
    await m.stop();
    assert.throws(() => statSync(sock), { code: 'ENOENT' });
  });

  test('connect families 4, 6, L and U reach the checks, and the first message is .1', async (t) => {
    const seen: unknown[] = [];
    const probe: Check = {
      name: 'probe',
      connect(ctx) {
        seen.push(ctx.message.connection.info);
        if (ctx.message.connection.info?.hostname === 'blocked.example') return { verdict: { kind: 'reject' } };
      },
    };
    const { connect } = await setup(t, { checks: [probe] });
    const peers = [
      { hostname: 'v4.example', family: Family.INET, port: 40000, address: '192.0.2.10' },
      { hostname: 'v6.example', family: Family.INET6, port: 40001, address: '2001:db8::10' },
      { hostname: 'localhost', family: Family.UNIX, port: 0, address: '/run/client.sock' },
      { hostname: 'unknown', family: Family.UNKNOWN, port: 0, address: '' },
    ];
    for (const peer of peers) {
      const c = await connect();
      const neg = await c.negotiate();
      assert.equal(neg.protocol & Proto.NR_CONN, 0, 'a connect hook needs the CONNECT reply');
      assert.deepEqual(await c.connectStage(peer), { kind: 'continue' });
      await c.helo('client.example');
      const r = await c.message(spec());
      assert.equal(r.verdict.kind, 'accept', peer.family);
      // A state that the connect check saw must not use up the first message's number.
      assert.match(traceHeader(r.modifications).value, /ref=[0-9a-f]{10}\.1$/);
      await c.quit();
    }
    assert.deepEqual(seen, peers);

    const c = await connect();
    await c.negotiate();
    assert.deepEqual(await c.connectStage({ ...LOCAL_CONNECT, hostname: 'blocked.example' }), { kind: 'reject' });
  });
});

describe('macros', () => {
  test('accumulate across stages and packets, empty packets pass, mail-stage ones end with the message', async (t) => {
    const seen: Array<Record<string, string | undefined>> = [];
    const probe: Check = {
      name: 'probe',
      // Postfix sends no macros for a stage negotiated away, so ask for the connection and envelope.
      wantsConnection: true,
      wantsEnvelope: true,
      endOfMessage({ message: m }) {
        seen.push({
          j: m.macro('j'),
          daemon: m.macro('{daemon_name}'),
          tls: m.macro('{tls_version}'),
          auth: m.macro('{auth_authen}'),
          rcpt: m.macro('{rcpt_addr}'),
          i: m.queueId,
          x: m.macro('x'),
        });
      },
    };
    const { connect } = await setup(t, { checks: [probe] });
    const c = await connect();
    await c.negotiate();
    await c.connectStage(LOCAL_CONNECT, [
      ['j', 'mx.example'],
      ['{daemon_name}', 'smtpd'],
      ['x', 'connect'],
    ]);
    // Empty macro packets: one with a command byte and no pairs, one with no payload at all.
    c.send({ kind: 'macro', forCommand: Cmd.HELO, macros: [] });
    c.sendRaw(encodeFrame(Cmd.MACRO));
    await c.helo('client.example', [['{tls_version}', 'TLSv1.3']]);
    // Two packets for the same stage: the second must not wipe the first.
    c.macros(Cmd.MAIL, [['{auth_authen}', 'alice']]);
    const first = await c.message(
      spec({
        macros: {
          mail: [
            ['i', 'QID1'],
            ['x', 'mail'],
          ],
          rcpt: [['{rcpt_addr}', 'bob@example.net']],
        },
      }),
    );
    assert.equal(first.verdict.kind, 'accept');
    assert.match(traceHeader(first.modifications).value, /queue-id=QID1;/);

    const second = await c.message(spec({ macros: {} }));
    assert.equal(second.verdict.kind, 'accept');
    assert.doesNotMatch(traceHeader(second.modifications).value, /queue-id=/);
    assert.deepEqual(seen, [
      { j: 'mx.example', daemon: 'smtpd', tls: 'TLSv1.3', auth: 'alice', rcpt: 'bob@example.net', i: 'QID1', x: 'mail' },
      { j: 'mx.example', daemon: 'smtpd', tls: 'TLSv1.3', auth: undefined, rcpt: undefined, i: undefined, x: 'connect' },
    ]);
    assert.equal(c.closed, false);
  });
});

describe('lower MTA versions', () => {
  test('version 2 with no NR flags: a reply at every stage, no symlist, no leading space', async (t) => {
    const { connect } = await setup(t);
    const c = await connect();
    const neg = await c.negotiate({ version: 2, actions: Action.ADDHDRS | Action.CHGHDRS, protocol: 0 });
    assert.deepEqual(neg, { version: 2, actions: Action.ADDHDRS | Action.CHGHDRS, protocol: 0, macros: {} });
    const cont = { kind: 'continue' };
    // The client must wait at every stage now; each request resolves only on the server's reply.
    assert.deepEqual((await c.request({ kind: 'connect', ...LOCAL_CONNECT })).response, cont);
    assert.deepEqual((await c.request({ kind: 'helo', hostname: 'client.example' })).response, cont);
    c.macros(Cmd.MAIL, [['i', 'OLDQ1']]);
    assert.deepEqual((await c.request({ kind: 'mail', sender: '<a@example.org>', args: ['SIZE=100'] })).response, cont);
    assert.deepEqual((await c.request({ kind: 'rcpt', recipient: '<b@example.net>', args: [] })).response, cont);
    assert.deepEqual((await c.request({ kind: 'data' })).response, cont);
    assert.deepEqual((await c.request({ kind: 'header', name: 'X-Ceerion-Milter', value: 'forged' })).response, cont);
    assert.deepEqual((await c.request({ kind: 'header', name: 'Subject', value: 'old' })).response, cont);
    assert.deepEqual((await c.request({ kind: 'eoh' })).response, cont);
    assert.deepEqual((await c.request({ kind: 'body', chunk: Buffer.from('body\r\n') })).response, cont);
    assert.deepEqual((await c.request({ kind: 'unknown', command: 'XYZZY' })).response, cont);
    const eom = await c.request({ kind: 'eom', chunk: Buffer.alloc(0) });
    assert.deepEqual(eom.response, { kind: 'accept' });
    assert.deepEqual(eom.modifications[0], { kind: 'chgheader', index: 1, name: 'X-Ceerion-Milter', value: '' });
    const trace = traceHeader(eom.modifications);
    assert.match(trace.value, /^ceerion-milter /, 'no HDR_LEADSPC: the MTA adds the space');
    assert.match(trace.value, /queue-id=OLDQ1;/);
  });

  test('versions 3 to 5 and a newer offer run end to end with the client honouring the flags', async (t) => {
    const { connect } = await setup(t);
    for (const version of [3, 4, 5, 7]) {
      const c = await connect();
      const neg = await c.negotiate({ ...POSTFIX_OFFER, version });
      assert.equal(neg.version, Math.min(version, 6));
      assert.equal(neg.actions & Action.SETSYMLIST, version >= 6 ? Action.SETSYMLIST : 0);
      await c.connectStage(LOCAL_CONNECT);
      await c.helo('client.example');
      const r = await c.message(spec());
      assert.equal(r.verdict.kind, 'accept', `version ${version}`);
      await c.quit();
    }
  });

  test('version 1 is refused by closing the connection', async (t) => {
    const { m, connect } = await setup(t);
    const c = await connect();
    await assert.rejects(c.negotiate({ ...POSTFIX_OFFER, version: 1 }));
    assert.ok(c.closed);
    assert.equal(await counter(m, 'ceerion_milter_errors_total', { kind: 'protocol' }), 1);
  });
});

describe('ABORT, QUIT and QUIT_NC', () => {
  test('ABORT mid-message resets the message and keeps the connection; the next message is .2', async (t) => {
    // Every stage answered, so the header's reply proves the server had it before the ABORT.
    const { m, connect } = await setup(t, { milter: { noReply: 'never' } });
    const c = await ready(connect);
    c.macros(Cmd.MAIL, [['i', 'ABORTED1']]);
    await c.stage('mail', { kind: 'mail', sender: '<a@example.org>', args: [] });
    await c.stage('rcpt', { kind: 'rcpt', recipient: '<b@example.net>', args: [] });
    assert.deepEqual(await c.stage('header', { kind: 'header', name: 'X-Ceerion-Milter', value: ' forged' }), {
      kind: 'continue',
    });
    // RSET: Postfix sends ABORT and waits for nothing.
    c.abort();
    const r = await c.message(spec({ macros: {} }));
    assert.equal(r.verdict.kind, 'accept');
    // The aborted message's forged header and queue id are gone with it.
    assert.deepEqual(
      r.modifications.map((x) => x.kind),
      ['insheader'],
    );
    const trace = traceHeader(r.modifications).value;
    assert.match(trace, /ref=[0-9a-f]{10}\.2$/);
    assert.doesNotMatch(trace, /ABORTED1/);
    assert.equal(c.closed, false);
    assert.equal(await counter(m, 'ceerion_milter_messages_total'), 2);
    assert.equal(await counter(m, 'ceerion_milter_verdicts_total'), 1);
  });

  test('QUIT closes the connection', async (t) => {
    const { m, connect } = await setup(t);
    const c = await connect();
    await c.negotiate();
    await c.connectStage(LOCAL_CONNECT);
    assert.equal(m.server.activeSessions, 1);
    await c.quit();
    assert.ok(c.closed);
    assert.equal(m.server.activeSessions, 0);
    assert.equal(await counter(m, 'ceerion_milter_sessions_active'), 0);
    assert.equal(await counter(m, 'ceerion_milter_sessions_total'), 1);
  });

  test('QUIT_NC keeps the socket: a new SMTP connection follows with fresh macros', async (t) => {
    const seen: Array<string | undefined> = [];
    const probe: Check = {
      name: 'probe',
      wantsConnection: true,
      endOfMessage(ctx) {
        seen.push(ctx.message.macro('j'));
      },
    };
    const { m, connect } = await setup(t, { checks: [probe] });
    const c = await connect();
    await c.negotiate();
    await c.connectStage(LOCAL_CONNECT, [['j', 'first.example']]);
    assert.equal((await c.message(spec())).verdict.kind, 'accept');
    c.send({ kind: 'quitNewConnection' });
    // Negotiation is kept: no new OPTNEG, straight to CONNECT.
    await c.connectStage({ ...LOCAL_CONNECT, address: '192.0.2.99' });
    const r = await c.message(spec());
    assert.equal(r.verdict.kind, 'accept');
    assert.equal(c.closed, false);
    assert.deepEqual(seen, ['first.example', undefined]);
    assert.equal(m.server.activeSessions, 1);
    assert.equal(await counter(m, 'ceerion_milter_sessions_total'), 1);
  });
});
