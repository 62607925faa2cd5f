/**
 * Through Postfix: smtp-source → private Postfix → smtp-sink, with our milter (separate
 * `ceerion milter` process, trace check) and with no milter, runs alternated in one invocation,
 * over TCP and over a unix socket, with 20 SMTP sessions and with 1. Prints throughput (messages
 * accepted per second at smtp-source) and the with/without ratio. Target: ratio ≥ 0.75 at 20 sessions.
 * The 1-session rows show whether the milter stalls per message (Nagle + delayed ACK on TCP).
 *
 *   node --import tsx bench/milter/postfix.ts [--rounds 3] [--messages 2000] [--single 500]
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startPostfix, type PostfixInstance } from '../../test/harness/postfix.ts';
import { freePort, startMilterProcess, table } from '../lib/stats.ts';

const exec = promisify(execFile);
const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => Number(argv[argv.indexOf(`--${name}`) + 1] || 0) || dflt;
const ROUNDS = opt('rounds', 3);
const MANY = opt('messages', 2000);
const SINGLE = opt('single', 500);

async function smtpSink(): Promise<{ port: number; stop(): void }> {
  const port = await freePort();
  // smtp-sink refuses to run as root without dropping privileges.
  const args = os.userInfo().uid === 0 ? ['-u', 'postfix'] : [];
  const child = spawn('smtp-sink', [...args, `127.0.0.1:${port}`, '1000'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  return { port, stop: () => child.kill() };
}

async function drain(pf: PostfixInstance): Promise<void> {
  const deadline = Date.now() + 120_000;
  while ((await pf.queueSize()) > 0) {
    if (Date.now() > deadline) throw new Error('queue did not drain');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Messages per second accepted by Postfix from smtp-source. */
async function inject(pf: PostfixInstance, sessions: number, messages: number): Promise<number> {
  const started = performance.now();
  await exec('smtp-source', ['-s', String(sessions), '-m', String(messages), '-l', '10240', '-d', '-f', 'alice@example.com', '-t', 'bob@example.org', '-S', 'bench', `127.0.0.1:${pf.smtpPort}`]);
  const rate = messages / ((performance.now() - started) / 1000);
  await drain(pf);
  return rate;
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-bench-pf-'));
chmodSync(dir, 0o755); // Postfix's smtpd (user postfix) must reach the socket
const sink = await smtpSink();
const tcpListen = `inet:127.0.0.1:${await freePort()}`;
const unixListen = `unix:${path.join(dir, 'milter.sock')}`;
const milters = [await startMilterProcess(tcpListen), await startMilterProcess(unixListen)];
const plain = await startPostfix({ relayPort: sink.port });
const viaTcp = await startPostfix({ milter: tcpListen, relayPort: sink.port });
const viaUnix = await startPostfix({ milter: unixListen, relayPort: sink.port });
const rows: Array<Array<string | number>> = [];
try {
  for (const [sessions, messages] of [[20, MANY], [1, SINGLE]] as const) {
    await inject(plain, sessions, Math.min(200, messages)); // warm-up
    await inject(viaTcp, sessions, Math.min(200, messages));
    await inject(viaUnix, sessions, Math.min(200, messages));
    const runs = { none: [] as number[], tcp: [] as number[], unix: [] as number[] };
    const cpu = { tcp: 0, unix: 0 };
    const measured = async (t: 'tcp' | 'unix', pf: PostfixInstance, pid: number) => {
      const before = cpuSeconds(pid);
      runs[t].push(await inject(pf, sessions, messages));
      cpu[t] += cpuSeconds(pid) - before;
    };
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate so that drift on the machine hits all three alike.
      runs.none.push(await inject(plain, sessions, messages));
      await measured('tcp', viaTcp, milters[0]!.child.pid!);
      runs.none.push(await inject(plain, sessions, messages));
      await measured('unix', viaUnix, milters[1]!.child.pid!);
    }
    const none = median(runs.none);
    for (const t of ['tcp', 'unix'] as const) {
      const rate = median(runs[t]);
      const target = sessions === 20 ? (rate / none >= 0.75 ? 'yes' : 'NO') : '-';
      const cpuMs = (cpu[t] * 1000) / (ROUNDS * messages);
      rows.push([t, sessions, messages, none, rate, rate / none, 1000 / rate - 1000 / none, cpuMs, target]);
    }
  }
} finally {
  for (const pf of [plain, viaTcp, viaUnix]) await pf.stop();
  for (const m of milters) await m.stop();
  sink.stop();
  rmSync(dir, { recursive: true, force: true });
}
console.log(`\nThrough Postfix ${(await exec('postconf', ['-d', '-h', 'mail_version'])).stdout.trim()}: smtp-source (10 KB messages) → Postfix → smtp-sink; median of ${ROUNDS} alternated rounds, ${os.cpus().length} cores\n`);
console.log(table(['milter transport', 'sessions', 'messages/run', 'no milter msg/s', 'with milter msg/s', 'ratio', 'added ms/msg', 'milter CPU ms/msg', 'ratio ≥ 0.75'], rows));
console.log('\nAnchors measured on this machine class: OpenDKIM verify (unix socket) 0.66, rspamd 0.60; Postfix per-milter CPU caps any milter near 0.72–0.82.');
