/**
 * The `ceerion` CLI as an operator runs it: a real child process (`node bin/ceerion.mjs`), real
 * ports, JSON logs on stdout, Prometheus metrics over HTTP, SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LOCAL_CONNECT, MilterClient } from '../../milter/client/milter-client.ts';
import { Cmd } from '../../milter/protocol/constants.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/ceerion.mjs');

/** The parent's environment without CEERION_* settings or the test runner's own variables. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST')),
  );
  return { ...env, ...extra };
}

function spawnCli(t: TestContext, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

async function run(t: TestContext, args: string[], env: Record<string, string> = {}) {
  const child = spawnCli(t, args, env);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const outcome = await Promise.race([exited, sleep(20_000, 'timeout' as const, { ref: false })]);
  assert.notEqual(outcome, 'timeout', `ceerion ${args.join(' ')} did not exit`);
  const [code, signal] = outcome as [number | null, NodeJS.Signals | null];
  return { code, signal, stdout, stderr };
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

type LogLine = Record<string, unknown> & { msg?: string };

/** JSON log lines from a child's stdout, with a way to wait for one. */
function logLines(child: ChildProcess) {
  const lines: LogLine[] = [];
  const raw: string[] = [];
  let notify = () => {};
  createInterface({ input: child.stdout! }).on('line', (line) => {
    raw.push(line);
    lines.push(JSON.parse(line) as LogLine);
    notify();
  });
  const waitFor = async (pred: (l: LogLine) => boolean, what: string, ms = 15_000): Promise<LogLine> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = lines.find(pred);
      if (found) return found;
      if (child.exitCode !== null || Date.now() > deadline) assert.fail(`no log line ${what}; got ${raw.join('\n')}`);
      await Promise.race([new Promise<void>((r) => (notify = r)), sleep(100, undefined, { ref: false })]);
    }
  };
  return { lines, raw, waitFor };
}

describe('ceerion CLI', () => {
  test('--help lists the commands', async (t) => {
    const { code, stdout } = await run(t, ['--help']);
    assert.equal(code, 0);
    assert.match(stdout, /^\s+milter \[options\]/m);
    assert.match(stdout, /^\s+start \[options\]/m);
    assert.match(stdout, /^\s+postfix-config \[options\]/m);
  });

  test('milter: serves a message, exposes metrics, logs conn and qid, exits 0 on SIGTERM', async (t) => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const child = spawnCli(t, [
      'milter',
      '--listen',
      `inet:127.0.0.1:${port}`,
      '--metrics-port',
      String(metricsPort),
      '--log-level',
      'debug',
    ]);
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const log = logLines(child);
    const listening = await log.waitFor((l) => l.msg === 'milter listening', '"milter listening"');
    assert.equal(listening.listen, `inet:127.0.0.1:${port}`);
    await log.waitFor((l) => l.msg === 'metrics endpoint listening', '"metrics endpoint listening"');

    // One whole message.
    const c = await MilterClient.connect(`inet:127.0.0.1:${port}`);
    t.after(() => c.destroy());
    await c.negotiate();
    await c.connectStage(LOCAL_CONNECT, [['j', 'mx.example']]);
    await c.helo('client.example');
    const r = await c.message({
      from: '<alice@example.org>',
      rcpts: ['<bob@example.net>'],
      headers: [['Subject', 'cli']],
      body: 'hello\r\n',
      macros: { mail: [['i', 'CLIQ1']], eom: [['i', 'CLIQ1']] },
    });
    assert.equal(r.verdict.kind, 'accept');
    const inserted = (name: string) => r.modifications.find((m) => m.kind === 'insheader' && m.name === name);
    const trace = inserted('X-Ceerion-Milter');
    assert.match(trace?.kind === 'insheader' ? trace.value : '', /queue-id=CLIQ1;/);
    // The default configuration authenticates inbound mail (against the system's DNS here).
    const results = inserted('Authentication-Results');
    assert.match(results?.kind === 'insheader' ? results.value : '', /spf=\w+/);
    await c.quit();

    const scrape = async () => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      return res.text();
    };
    const metrics = await scrape();
    assert.match(metrics, /^ceerion_milter_messages_total 1$/m);
    assert.match(metrics, /^ceerion_milter_verdicts_total\{verdict="accept"\} 1$/m);
    assert.match(metrics, /^ceerion_milter_sessions_total 1$/m);
    assert.match(metrics, /^ceerion_milter_end_of_message_seconds_count 1$/m);
    assert.match(metrics, /^ceerion_process_cpu_user_seconds_total /m, 'process metrics are collected too');

    // A second connection breaks the protocol once its queue id is known.
    const bad = await MilterClient.connect(`inet:127.0.0.1:${port}`);
    t.after(() => bad.destroy());
    await bad.negotiate();
    // The macro and the bad frame leave in one segment: frames before the bad one still count.
    bad.send({ kind: 'macro', forCommand: Cmd.MAIL, macros: [['i', 'CLIQ2']] });
    bad.sendRaw(Buffer.alloc(4)); // a zero-length frame
    await bad.waitClosed();
    await log.waitFor((l) => l.msg === 'milter protocol error, closing connection', 'for the protocol error');

    const after = await scrape();
    assert.match(after, /^ceerion_milter_errors_total\{kind="protocol"\} 1$/m);
    assert.match(after, /^ceerion_milter_sessions_total 2$/m);
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/nope`)).status, 404);

    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    child.kill('SIGTERM');
    const outcome = await Promise.race([exited, sleep(5000, 'timeout' as const, { ref: false })]);
    assert.notEqual(outcome, 'timeout', 'exits within 5 s of SIGTERM');
    assert.deepEqual(outcome, [0, null]);
    assert.equal(stderr, '');
    // Everything was flushed before exit.
    assert.ok(log.lines.some((l) => l.msg === 'service stopped' && l.stopped === 'milter'));

    // Logs: every line about a connection or a message carries its conn.
    const sessionLevel = [
      'MTA connected',
      'negotiated',
      'message verdict',
      'closing milter connection',
      'dropping milter connection',
      'milter protocol error, closing connection',
    ];
    for (const msg of ['MTA connected', 'negotiated', 'message verdict', 'closing milter connection']) {
      assert.ok(log.lines.some((l) => l.msg === msg), `a "${msg}" line at debug level`);
    }
    for (const line of log.lines) {
      assert.equal(line.service, 'milter', JSON.stringify(line));
      const aboutSession = sessionLevel.includes(line.msg ?? '') || 'qid' in line || 'ref' in line;
      if (aboutSession) assert.match(String(line.conn), /^[0-9a-f]{10}$/, JSON.stringify(line));
    }
    // Once a connection's queue id is known, its lines carry it until the message ends.
    for (const conn of new Set(log.lines.map((l) => l.conn).filter(Boolean))) {
      const own = log.lines.filter((l) => l.conn === conn);
      const first = own.findIndex((l) => 'qid' in l);
      assert.ok(first >= 0, `conn ${String(conn)} logged its queue id`);
      const end = own.findIndex((l, i) => i >= first && /^(message verdict|milter protocol error)/.test(l.msg ?? ''));
      assert.ok(end >= first);
      for (const l of own.slice(first, end + 1)) assert.ok(typeof l.qid === 'string', JSON.stringify(l));
    }
    const verdict = log.lines.filter((l) => l.msg === 'message verdict');
    assert.equal(verdict.length, 1);
    assert.equal(verdict[0]!.qid, 'CLIQ1');
    assert.equal(verdict[0]!.verdict, 'accept');
    assert.match(String(verdict[0]!.ref), new RegExp(`^${String(verdict[0]!.conn)}\\.1$`));
    const goodConn = verdict[0]!.conn;
    const connected = log.lines.filter((l) => l.msg === 'MTA connected');
    assert.equal(connected.length, 2);
    assert.equal(connected[0]!.conn, goodConn);
    const error = log.lines.find((l) => l.msg === 'milter protocol error, closing connection')!;
    assert.equal(error.qid, 'CLIQ2');
    assert.equal(error.conn, connected[1]!.conn);
    assert.notEqual(error.conn, goodConn);
    // Each key appears once per line (pino does not de-duplicate a child's bindings).
    for (const line of log.raw) assert.ok((line.match(/"qid":/g) ?? []).length <= 1, line);
    for (const line of log.raw) assert.ok((line.match(/"conn":/g) ?? []).length <= 1, line);
  });

  test('SIGTERM still exits 0 when the reader of the logs has gone away', async (t) => {
    const port = await freePort();
    const child = spawnCli(t, ['milter', '--listen', `inet:127.0.0.1:${port}`, '--metrics-port', '0']);
    const log = logLines(child);
    await log.waitFor((l) => l.msg === 'milter listening', '"milter listening"');
    // Close our end of the stdout pipe: the shutdown log lines now fail with EPIPE.
    child.stdout!.destroy();
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    child.kill('SIGTERM');
    const outcome = await Promise.race([exited, sleep(5000, 'timeout' as const, { ref: false })]);
    assert.notEqual(outcome, 'timeout', 'exits within 5 s of SIGTERM');
    assert.deepEqual(outcome, [0, null]);
  });

  test('a bad config value exits 2 naming the key', async (t) => {
    const flag = await run(t, ['milter', '--listen', 'tcp:1', '--metrics-port', '0']);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /milter\.listen = "tcp:1"/);
    assert.equal(flag.stdout, '');

    const env = await run(t, ['milter', '--metrics-port', '0'], { CEERION_MILTER_IDLE_TIMEOUT_MS: 'abc' });
    assert.equal(env.code, 2);
    assert.match(env.stderr, /CEERION_MILTER_IDLE_TIMEOUT_MS = "abc": expected a number/);

    const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'ceerion.yaml');
    writeFileSync(file, 'milter:\n  idleTimeoutMs: -1\n');
    const fromFile = await run(t, ['milter', '--config', file, '--metrics-port', '0']);
    assert.equal(fromFile.code, 2);
    assert.match(fromFile.stderr, /milter\.idleTimeoutMs = -1/);
  });

  test('postfix-config prints the main.cf lines with the chroot-relative socket', async (t) => {
    const { code, stdout } = await run(t, ['postfix-config', '--listen', 'unix:/var/spool/postfix/ceerion/milter.sock']);
    assert.equal(code, 0);
    assert.match(stdout, /^smtpd_milters = unix:\/ceerion\/milter\.sock$/m);
    assert.match(stdout, /^milter_protocol = 6$/m);
    assert.match(stdout, /^milter_mail_macros = .*\bi\b/m);
  });
});
