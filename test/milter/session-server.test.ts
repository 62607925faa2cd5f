/**
 * The milter server over real sockets: bad input closes only that connection, idle timeouts,
 * graceful shutdown, unix socket housekeeping and many concurrent connections.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Check } from '../../milter/checks/types.ts';
import { LOCAL_CONNECT, MilterClient, POSTFIX_OFFER, type MessageSpec } from '../../milter/client/milter-client.ts';
import { encodeCommand } from '../../milter/protocol/commands.ts';
import { Cmd } from '../../milter/protocol/constants.ts';
import { encodeFrame } from '../../milter/protocol/framing.ts';
import { startTestMilter } from '../helpers/milter.ts';
import { counter, messageSpec, ready, setup } from '../helpers/session.ts';

/** The shared message with this file's queue id. */
const spec = (over: Partial<MessageSpec> = {}): MessageSpec => messageSpec({ macros: { mail: [['i', 'QSERVER1']] }, ...over });

/** Fails the test instead of hanging it when the server does not close the connection. */
async function closedWithin(c: MilterClient, ms: number, what: string): Promise<void> {
  const timer = sleep(ms, 'timeout' as const, { ref: false });
  const outcome = await Promise.race([c.waitClosed().then(() => 'closed' as const), timer]);
  assert.equal(outcome, 'closed', `${what}: connection still open after ${ms} ms`);
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

describe('bad input over a real socket', () => {
  const cases: Array<{ name: string; negotiated: boolean; bytes: Buffer }> = [
    { name: 'oversized declared length', negotiated: true, bytes: Buffer.concat([u32(1024 * 1024 + 2), Buffer.from('B')]) },
    { name: 'zero-length frame', negotiated: true, bytes: u32(0) },
    { name: 'unknown command', negotiated: true, bytes: encodeFrame(0x7a, Buffer.from('x\0')) },
    { name: 'command before OPTNEG', negotiated: false, bytes: encodeCommand({ kind: 'helo', hostname: 'early' }) },
    { name: 'garbage bytes', negotiated: false, bytes: Buffer.from('GET / HTTP/1.1\r\nHost: milter\r\n\r\n') },
    { name: 'macro with no name', negotiated: true, bytes: encodeFrame(Cmd.MACRO, Buffer.from('C\0value\0')) },
    { name: 'macro with no value', negotiated: true, bytes: encodeFrame(Cmd.MACRO, Buffer.from('Cj\0')) },
    { name: 'repeated OPTNEG', negotiated: true, bytes: encodeCommand({ kind: 'optneg', ...POSTFIX_OFFER }) },
    { name: 'short OPTNEG', negotiated: false, bytes: encodeFrame(Cmd.OPTNEG, u32(6)) },
    { name: 'CONNECT without a family', negotiated: true, bytes: encodeFrame(Cmd.CONNECT, Buffer.from('host\0')) },
    { name: 'CONNECT with a bad family', negotiated: true, bytes: encodeFrame(Cmd.CONNECT, Buffer.from('host\0X\0\0a\0')) },
    { name: 'unterminated string', negotiated: true, bytes: encodeFrame(Cmd.HELO, Buffer.from('no-nul')) },
    { name: 'header with no name', negotiated: true, bytes: encodeFrame(Cmd.HEADER, Buffer.from('\0value\0')) },
  ];

  test('each closes only its own connection, counts a protocol error, and a concurrent message completes', async (t) => {
    const { m, connect } = await setup(t);
    // A good session in the middle of a message.
    const good = await ready(connect);
    await good.stage('mail', { kind: 'mail', sender: '<alice@example.org>', args: [] });
    await good.stage('rcpt', { kind: 'rcpt', recipient: '<bob@example.net>', args: [] });
    await good.stage('header', { kind: 'header', name: 'Subject', value: ' still here' });

    for (const [i, bad] of cases.entries()) {
      const c = await connect();
      if (bad.negotiated) {
        await c.negotiate();
        await c.connectStage(LOCAL_CONNECT);
      }
      c.sendRaw(bad.bytes);
      await closedWithin(c, 3000, bad.name);
      assert.equal(await counter(m, 'ceerion_milter_errors_total', { kind: 'protocol' }), i + 1, bad.name);
    }
    assert.equal(good.closed, false);
    assert.equal(m.server.activeSessions, 1);

    await good.stage('eoh', { kind: 'eoh' });
    good.macros(Cmd.BODYEOB, [['i', 'GOOD1']]);
    const eom = await good.request({ kind: 'eom', chunk: Buffer.alloc(0) });
    assert.deepEqual(eom.response, { kind: 'accept' });
    const trace = eom.modifications.find((x) => x.kind === 'insheader');
    assert.match(trace?.kind === 'insheader' ? trace.value : '', /queue-id=GOOD1;/);
    assert.equal(await counter(m, 'ceerion_milter_errors_total'), cases.length);
  });

  test('an oversized frame is refused from its header, before the payload is sent', async (t) => {
    // Every stage answered, so the header frame's reply proves it was accepted.
    const { m, connect } = await setup(t, { milter: { maxFrameBytes: 65540, noReply: 'never' } });
    const c = await connect();
    await c.negotiate();
    c.sendRaw(Buffer.concat([u32(65541), Buffer.from('B')]));
    await closedWithin(c, 3000, 'oversized header only');
    // Exactly the cap is fine: a header frame declaring 65540 bytes.
    const ok = await connect();
    await ok.negotiate();
    const value = 'v'.repeat(65540 - 1 - 'Subject\0'.length - 1);
    const r = await ok.request({ kind: 'header', name: 'Subject', value });
    assert.equal(r.response.kind, 'continue');
    assert.equal(await counter(m, 'ceerion_milter_errors_total', { kind: 'protocol' }), 1);
  });
});

describe('idle timeout', () => {
  test('an idle connection is closed after idleTimeoutMs', async (t) => {
    const { m, connect } = await setup(t, { milter: { idleTimeoutMs: 100 } });
    const c = await connect();
    await c.negotiate();
    const started = performance.now();
    await closedWithin(c, 3000, 'idle');
    assert.ok(performance.now() - started >= 80, 'not before the timeout');
    assert.equal(await counter(m, 'ceerion_milter_errors_total', { kind: 'idle_timeout' }), 1);
  });

  test('a connection whose check runs long is not closed by the idle timer', async (t) => {
    const slow: Check = {
      name: 'slow',
      async endOfMessage() {
        await sleep(500);
      },
    };
    const { m, connect } = await setup(t, { checks: [slow], milter: { idleTimeoutMs: 100 } });
    const c = await ready(connect);
    const r = await c.message(spec());
    assert.equal(r.verdict.kind, 'accept');
    assert.equal(r.progress, 0, 'no traffic kept the timer alive');
    assert.equal(c.closed, false);
    assert.equal(await counter(m, 'ceerion_milter_errors_total', { kind: 'idle_timeout' }), 0);
    // Once the verdict is out, the MTA's silence counts again.
    await closedWithin(c, 3000, 'idle after the verdict');
    assert.equal(await counter(m, 'ceerion_milter_errors_total', { kind: 'idle_timeout' }), 1);
  });
});

describe('graceful shutdown', () => {
  test('stop() lets the in-flight message finish, closes idle sessions, refuses new connections', async (t) => {
    const started = deferred();
    const slow: Check = {
      name: 'slow',
      async endOfMessage() {
        started.resolve();
        await sleep(300);
        return { summary: 'slow=done' };
      },
    };
    const { m, connect } = await setup(t, { checks: [slow] });
    const busy = await ready(connect);
    const idle = await ready(connect);
    let settled = false;
    const inFlight = busy.message(spec()).finally(() => (settled = true));
    await started.promise;

    const stopStarted = performance.now();
    const stopping = m.server.stop(5000);
    await closedWithin(idle, 1000, 'idle session on stop');
    assert.equal(settled, false, 'the idle session closed before the busy one finished');
    await assert.rejects(MilterClient.connect(m.address), { code: 'ECONNREFUSED' });

    const r = await inFlight;
    assert.equal(r.verdict.kind, 'accept');
    assert.match(r.modifications.find((x) => x.kind === 'insheader')?.value ?? '', /slow=done/);
    await closedWithin(busy, 1000, 'busy session after its verdict');
    await stopping;
    assert.ok(performance.now() - stopStarted < 4000, 'did not wait for the grace period');
    assert.equal(m.server.activeSessions, 0);
  });

  test('a session stuck past the grace period is force-closed', async (t) => {
    const started = deferred();
    let aborted = false;
    const stuck: Check = {
      name: 'stuck',
      timeoutMs: 60_000,
      async endOfMessage(ctx) {
        started.resolve();
        await new Promise<void>((resolve) =>
          ctx.signal.addEventListener('abort', () => {
            aborted = true;
            resolve();
          }),
        );
      },
    };
    const { m, connect } = await setup(t, { checks: [stuck] });
    const c = await ready(connect);
    const inFlight = c.message(spec());
    await started.promise;
    const stopStarted = performance.now();
    await m.server.stop(100);
    const elapsed = performance.now() - stopStarted;
    assert.ok(elapsed >= 90 && elapsed < 2000, `stop took ${elapsed} ms`);
    await assert.rejects(inFlight, /closed the connection/);
    assert.ok(c.closed);
    assert.ok(aborted, "the check's signal was aborted");
    assert.equal(m.server.activeSessions, 0);
  });
});

describe('unix socket housekeeping', () => {
  function tempDir(t: TestContext): string {
    const dir = mkdtempSync(path.join(tmpdir(), 'ceerion-server-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  test('socketMode is applied', async (t) => {
    const sock = path.join(tempDir(t), 'milter.sock');
    await setup(t, { listen: `unix:${sock}`, milter: { socketMode: '0660' } });
    assert.equal(statSync(sock).mode & 0o777, 0o660);
  });

  test('a regular file in the way is refused and left alone', async (t) => {
    const sock = path.join(tempDir(t), 'milter.sock');
    writeFileSync(sock, 'precious');
    await assert.rejects(startTestMilter({ listen: `unix:${sock}` }), /exists and is not a socket/);
    assert.equal(readFileSync(sock, 'utf8'), 'precious');
  });

  test('a stale socket left by a killed process is replaced', async (t) => {
    const sock = path.join(tempDir(t), 'milter.sock');
    const child = spawn(process.execPath, [
      '-e',
      "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))",
      sock,
    ]);
    const [, signal] = await once(child, 'exit');
    assert.equal(signal, 'SIGKILL');
    assert.ok(statSync(sock).isSocket(), 'the killed process left its socket behind');
    const { connect } = await setup(t, { listen: `unix:${sock}` });
    const c = await ready(connect);
    assert.equal((await c.message(spec())).verdict.kind, 'accept');
  });
});

describe('load', () => {
  test('64 concurrent connections, 4 messages each, are all accepted', async (t) => {
    const { m, connect } = await setup(t);
    const perConnection = 4;
    const sessions = await Promise.all(
      Array.from({ length: 64 }, async (_, n) => {
        const c = await ready(connect);
        const refs: string[] = [];
        for (let k = 0; k < perConnection; k++) {
          const r = await c.message(spec({ macros: { eom: [['i', `Q${n}x${k}`]] }, body: `message ${k}\r\n`.repeat(50) }));
          assert.equal(r.verdict.kind, 'accept');
          const trace = r.modifications.find((x) => x.kind === 'insheader')?.value ?? '';
          assert.match(trace, new RegExp(`queue-id=Q${n}x${k};`));
          refs.push(/ref=([0-9a-f]{10}\.\d+)/.exec(trace)?.[1] ?? '');
        }
        await c.quit();
        return refs;
      }),
    );
    const conns = new Set(sessions.map((refs) => refs[0]!.split('.')[0]));
    assert.equal(conns.size, 64, 'one connection id per connection');
    for (const refs of sessions) {
      const conn = refs[0]!.split('.')[0];
      assert.deepEqual(refs, [1, 2, 3, 4].map((k) => `${conn}.${k}`));
    }
    assert.equal(await counter(m, 'ceerion_milter_messages_total'), 64 * perConnection);
    assert.equal(await counter(m, 'ceerion_milter_verdicts_total', { verdict: 'accept' }), 64 * perConnection);
    assert.equal(await counter(m, 'ceerion_milter_sessions_total'), 64);
    assert.equal(await counter(m, 'ceerion_milter_errors_total'), 0);
    assert.equal(m.server.activeSessions, 0);
  });
});
