// Interop: OpenDKIM's miltertest (Debian package `miltertest`) plays the MTA against our milter and
// runs test/milter/interop/full-session.lua, once over TCP and once over a unix socket. Negative
// controls prove the script's checks can fail. miltertest is required: without it these tests fail
// (they do not skip), telling you to `apt-get install miltertest`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, type Logger } from '../../core/log.ts';
import type { ConnectInfo } from '../../milter/handler.ts';
import type { HeaderField } from '../../milter/headers.ts';
import { Action } from '../../milter/protocol/constants.ts';
import type { Check } from '../../milter/checks/types.ts';
import { startTestMilter, type TestMilter } from '../helpers/milter.ts';

const SCRIPT = fileURLToPath(new URL('./interop/full-session.lua', import.meta.url));
const MILTERTEST = 'miltertest';
/** miltertest's own read timeout is 10 s per reply; this only guards against a hung process. */
const RUN_TIMEOUT_MS = 60_000;

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Run miltertest asynchronously: the milter lives in this process, so a synchronous spawn would
 * block its event loop and miltertest would time out waiting for the option negotiation reply.
 */
function runMiltertest(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      MILTERTEST,
      args,
      { env: { ...process.env, ...env }, encoding: 'utf8', timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err?.code === 'ENOENT') {
          reject(
            new Error(
              `${MILTERTEST} is not installed (not found on PATH). This interop test needs OpenDKIM's milter ` +
                `test client: apt-get install miltertest`,
            ),
          );
          return;
        }
        // Anything but "ran and exited" or "killed by a signal" (e.g. EACCES) is a setup failure.
        if (err && typeof err.code !== 'number' && !err.signal) {
          reject(err);
          return;
        }
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, signal: err?.signal ?? null, stdout, stderr });
      },
    );
  });
}

/** Fails the calling test with install instructions when miltertest is missing. */
async function requireMiltertest(): Promise<void> {
  const r = await runMiltertest(['-V']);
  assert.equal(r.code, 0, `\`${MILTERTEST} -V\` failed; reinstall with: apt-get install miltertest\n${r.stderr}`);
  assert.match(r.stdout, /OpenDKIM milter test facility/, `unexpected \`${MILTERTEST} -V\` output: ${r.stdout}`);
}

/** The milter's logs, kept in memory and shown only when a test fails. */
function memoryLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger('debug', 'milter', { write: (s: string) => void lines.push(s.trimEnd()) }), lines };
}

/** miltertest notation: `inet:PORT@HOST` (it has no `inet:HOST:PORT` form) or `unix:/path`. */
function miltertestSocket(m: TestMilter): string {
  const listen = m.config.milter.listen;
  return listen.startsWith('unix:') ? listen : `inet:${m.server.port}@127.0.0.1`;
}

function report(r: RunResult, logs: string[]): string {
  return [
    `miltertest exit code ${r.code}${r.signal ? ` (signal ${r.signal})` : ''}`,
    '--- miltertest stdout ---',
    r.stdout.trimEnd(),
    '--- miltertest stderr ---',
    r.stderr.trimEnd(),
    '--- milter log ---',
    ...logs,
  ].join('\n');
}

interface Seen {
  info: ConnectInfo | undefined;
  helo: string | undefined;
  sender: string | undefined;
  senderArgs: string[];
  recipients: string[];
  headers: HeaderField[];
  queueId: string | undefined;
  authAuthen: string | undefined;
  tlsVersion: string | undefined;
}

/**
 * What the authentication checks (SPF: connect, HELO, MAIL; DKIM: headers and body) will read.
 * The trace check alone reads only headers, and the milter then negotiates the other stages away
 * (SMFIP_NO*): miltertest rightly refuses to send a stage that was negotiated away, so the full
 * session this test drives needs checks that read every stage.
 */
const READS_EVERYTHING = { wantsConnection: true, wantsEnvelope: true, wantsHeaders: true, wantsBody: true } as const;

/** Records what the server saw at each end of message; it changes nothing. */
function recorder(seen: Seen[]): Check {
  return {
    name: 'recorder',
    ...READS_EVERYTHING,
    endOfMessage({ message: m }) {
      seen.push({
        info: m.connection.info,
        helo: m.connection.helo,
        sender: m.sender,
        senderArgs: [...m.senderArgs],
        recipients: [...m.recipients],
        headers: m.headers.map((h) => ({ ...h })),
        queueId: m.queueId,
        authAuthen: m.macro('{auth_authen}'),
        tlsVersion: m.macro('{tls_version}'),
      });
    },
  };
}

async function runScriptAgainst(
  t: { after(fn: () => unknown): void },
  opts: { listen?: string; checks?: Check[]; milter?: Record<string, unknown> },
): Promise<{ result: RunResult; logs: string[] }> {
  await requireMiltertest();
  const { log, lines } = memoryLogger();
  const m = await startTestMilter({ log, ...opts });
  t.after(() => m.stop());
  const result = await runMiltertest(['-vv', '-s', SCRIPT], { MILTER_SOCKET: miltertestSocket(m) });
  return { result, logs: lines };
}

function assertServerView(seen: Seen[], why: string): void {
  assert.equal(seen.length, 2, `expected 2 completed messages (1 and 3; 2 was aborted), got ${seen.length}\n${why}`);
  const [m1, m3] = seen as [Seen, Seen];
  assert.deepEqual(m1.info, { hostname: 'mail.example.net', family: '6', port: 12345, address: '2001:db8::25' }, why);
  assert.equal(m1.helo, 'mail.example.net', why);
  assert.equal(m1.tlsVersion, 'TLSv1.3', why);
  assert.equal(m1.sender, '<alice@example.net>', why);
  assert.deepEqual(m1.senderArgs, ['SIZE=512', 'BODY=8BITMIME'], why);
  assert.deepEqual(m1.recipients, ['<bob@example.org>', '<carol@example.org>'], why);
  assert.equal(m1.queueId, '4XyZ1Q', why);
  assert.equal(m1.authAuthen, 'alice', why);
  // miltertest adds the space after the colon itself under SMFIP_HDR_LEADSPC; the handler strips it.
  assert.deepEqual(
    m1.headers.map((h) => `${h.name}: ${h.value}`),
    [
      'X-Ceerion-Milter: ceerion-milter 9.9.9 on evil.example; verdict=accept; spam=no',
      'From: Alice <alice@example.net>',
      'To: Bob <bob@example.org>, carol@example.org',
      'Subject: interop test 1',
      'Date: Tue, 01 Apr 2025 10:00:00 +0000',
      'Message-ID: <interop-1@example.net>',
      'x-ceerion-milter: evil second copy',
    ],
    why,
  );
  // Message 3: same connection (connect info and HELO kept), nothing left over from 1 or 2.
  assert.deepEqual(m3.info, m1.info, why);
  assert.equal(m3.helo, 'mail.example.net', why);
  assert.equal(m3.tlsVersion, 'TLSv1.3', why);
  assert.equal(m3.sender, '<dave@example.net>', why);
  assert.deepEqual(m3.recipients, ['<erin@example.org>'], why);
  assert.equal(m3.queueId, '6DeF3S', why);
  assert.equal(m3.authAuthen, undefined, `message 1's {auth_authen} leaked into message 3\n${why}`);
  assert.deepEqual(
    m3.headers.map((h) => h.name),
    ['From', 'To', 'Subject', 'Message-ID'],
    `headers of the aborted message 2 leaked into message 3\n${why}`,
  );
}

for (const transport of ['tcp', 'unix'] as const) {
  test(`miltertest drives a full session over ${transport === 'tcp' ? 'TCP' : 'a unix socket'}`, async (t) => {
    let listen: string | undefined;
    if (transport === 'unix') {
      const dir = await mkdtemp(path.join(tmpdir(), 'ceerion-miltertest-'));
      t.after(() => rm(dir, { recursive: true, force: true }));
      listen = `unix:${path.join(dir, 'milter.sock')}`;
    }
    const seen: Seen[] = [];
    const { result, logs } = await runScriptAgainst(t, { ...(listen ? { listen } : {}), checks: [recorder(seen)] });
    const why = report(result, logs);
    assert.equal(result.code, 0, why);
    assert.match(result.stdout, /message 1 accepted, trace header inserted/, why);
    assert.match(result.stdout, /message 2 aborted/, why);
    assert.match(result.stdout, /message 3 accepted on the same connection/, why);
    assert.match(result.stdout, /interop session complete/, why);
    // What miltertest reports the milter negotiated (see the comments in full-session.lua).
    assert.match(result.stdout, /negotiated: .*SMFIP_NR_HDR/, why);
    assert.match(result.stdout, /negotiated: .*SMFIP_HDR_LEADSPC/, why);
    if (transport === 'unix') assert.match(result.stdout, /connected to 'unix:\//, why);
    else assert.match(result.stdout, /connected to 'inet:\d+@127\.0\.0\.1'/, why);
    assertServerView(seen, why);
  });
}

test('negative control: the script fails when the milter rejects the message', async (t) => {
  const reject: Check = { name: 'reject-all', ...READS_EVERYTHING, endOfMessage: () => ({ verdict: { kind: 'reject' } }) };
  const { result, logs } = await runScriptAgainst(t, { checks: [reject] });
  const why = report(result, logs);
  assert.notEqual(result.code, 0, `miltertest passed against a rejecting milter\n${why}`);
  assert.equal(result.signal, null, why);
  // It failed at the verdict check, not earlier (connection, negotiation) for some unrelated reason.
  assert.match(result.stderr, /end of message 1: expected SMFIR_ACCEPT, got SMFIR_REJECT/, why);
});

test('negative control: the script fails when no trace header is inserted', async (t) => {
  // Trace check off; a stand-in reads headers and may change them, so the negotiation is the same,
  // but it accepts without touching the message.
  const silent: Check = {
    name: 'silent',
    actions: Action.ADDHDRS | Action.CHGHDRS,
    ...READS_EVERYTHING,
    endOfMessage: () => undefined,
  };
  const { result, logs } = await runScriptAgainst(t, { checks: [silent], milter: { checks: { trace: { enabled: false } } } });
  const why = report(result, logs);
  assert.notEqual(result.code, 0, `miltertest passed against a milter that adds no trace header\n${why}`);
  assert.equal(result.signal, null, why);
  assert.match(result.stdout, /EOM sent on fd \d+, reply 'a'/, why);
  assert.match(result.stderr, /message 1: X-Ceerion-Milter was not inserted/, why);
});
