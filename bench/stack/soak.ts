/**
 * Load soak through the whole native stack (Postfix → milter + policyd → LMTP indexer → Dovecot):
 * 1. capacity: smtp-source at full speed (10 sessions) for `capacitySeconds`; capacity = messages
 *    delivered into Dovecot per second, from the first send to the last delivery;
 * 2. soak: `minutes` at 80% of that rate, paced per second (one smtp-source run per second);
 * 3. drain, then count: messages sent (smtp-source runs that exited 0) = messages in IMAP (INBOX +
 *    Junk) = distinct messages there (no loss, no duplicate), and each service's RSS every 10 s,
 *    growth after warm-up (the first quarter).
 * Rate limits are turned off for the run (all traffic comes from 127.0.0.1).
 *
 *   node --import tsx bench/stack/soak.ts [minutes=10] [capacitySeconds=30]
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ImapFlow } from 'imapflow';
import { table } from '../../core/text-table.ts';
import type { StackCredentials, StackState } from '../../stack/contracts.ts';
import { isolatedStackEnv } from '../../test/harness/stack-env.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const minutes = Number(process.argv[2] ?? 10);
const capacitySeconds = Number(process.argv[3] ?? 30);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-soak-'));
await chmod(dir, 0o755);
const varDir = path.join(dir, 'var');
const env = await isolatedStackEnv({ CEERION_STACK_VAR_DIR: varDir, CEERION_POLICYD_LIMITS_CLIENT_IP_COUNT: '0', CEERION_POLICYD_LIMITS_SASL_USER_COUNT: '0', CEERION_LOG_LEVEL: 'warn' });
const readState = async (): Promise<StackState | undefined> => JSON.parse(await readFile(path.join(varDir, 'run/stack.json'), 'utf8').catch(() => 'null')) ?? undefined;

const stack = spawn(process.execPath, ['--max-semi-space-size=2', path.join(ROOT, 'bin/ceerion.mjs'), 'start'], { env, stdio: 'ignore' });
let state: StackState | undefined;
for (;;) {
  state = await readState();
  if (state?.ready && state.classifierModel !== 'training') break;
  if (stack.exitCode !== null) throw new Error(`start failed; see ${varDir}/log`);
  await sleep(200);
}
const creds = JSON.parse(await readFile(path.join(varDir, 'run/credentials.json'), 'utf8')) as StackCredentials;
const smtp = `${state.endpoints.smtp!.host}:${state.endpoints.smtp!.port}`;
// ~40,000 messages of 2 KB would fill the default 100 MB quota (quota.conf), after which Dovecot
// answers 552 and Postfix bounces: the soak measures the pipeline, so the account gets 1 TB.
const quota = spawnSync(process.execPath, [path.join(ROOT, 'bin/ceerion.mjs'), 'account', 'quota', 'set', creds.user, '1T', '--no-flush'], {
  env: { ...env, CEERION_DATABASE_URL: state.endpoints.databaseUrl },
  encoding: 'utf8',
});
if (quota.status !== 0) throw new Error(`quota set failed: ${quota.stderr}`);

/** smtp-source: `messages` messages over `sessions` sessions; resolves with its wall time (ms) and success. */
function source(messages: number, sessions: number): Promise<{ ms: number; ok: boolean }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const c = spawn('smtp-source', ['-s', String(sessions), '-m', String(messages), '-l', '2048', '-f', 'load@example.org', '-t', creds.user, '-S', 'soak', smtp], { stdio: 'ignore' });
    c.once('close', (code) => resolve({ ms: performance.now() - t0, ok: code === 0 }));
  });
}

async function delivered(): Promise<number> {
  const log = await readFile(path.join(varDir, 'log/postfix.log'), 'utf8').catch(() => '');
  return (log.match(/\/lmtp\[\d+\]: [0-9A-F]+: to=<[^>]+>.*status=sent/g) ?? []).length;
}

async function waitDelivered(n: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let d = await delivered();
  while (d < n && Date.now() < deadline) {
    await sleep(250);
    d = await delivered();
  }
  return d;
}

function rssKb(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

// 1. Capacity.
const base = await delivered();
const capT0 = performance.now();
let capSent = 0;
while (performance.now() - capT0 < capacitySeconds * 1000) {
  const r = await source(200, 10);
  if (r.ok) capSent += 200;
}
const capDelivered = (await waitDelivered(base + capSent, 120_000)) - base;
const capacity = capDelivered / ((performance.now() - capT0) / 1000);
const rate = 0.8 * capacity;
process.stdout.write(`capacity: ${capDelivered} delivered in ${((performance.now() - capT0) / 1000).toFixed(1)} s = ${capacity.toFixed(1)} msg/s; soak at ${rate.toFixed(1)} msg/s for ${minutes} min\n`);

// 2. Soak, paced per second; RSS every 10 s.
const suite = (await readState())!.services;
const rss: Record<string, number[]> = Object.fromEntries(suite.map((s) => [s.name, []]));
const batchMs: number[] = [];
let soakSent = 0;
let failedRuns = 0;
let owed = 0;
const soakT0 = performance.now();
const inflight: Array<Promise<void>> = [];
for (let second = 0; second < minutes * 60; second++) {
  owed += rate;
  const n = Math.floor(owed);
  owed -= n;
  if (n > 0) {
    inflight.push(
      source(n, Math.min(n, 4)).then((r) => {
        if (r.ok) {
          soakSent += n;
          batchMs.push(r.ms / Math.ceil(n / Math.min(n, 4)));
        } else failedRuns++;
      }),
    );
  }
  if (second % 10 === 0) for (const s of suite) rss[s.name]!.push(rssKb(s.pid));
  const next = soakT0 + (second + 1) * 1000;
  await sleep(Math.max(0, next - performance.now()));
}
await Promise.all(inflight);
const soakSeconds = (performance.now() - soakT0) / 1000;
const total = capSent + soakSent;
const finalDelivered = (await waitDelivered(base + total, 300_000)) - base;

// 3. Count in IMAP.
const imap = new ImapFlow({ host: state.endpoints.imap!.host, port: state.endpoints.imap!.port, secure: false, auth: { user: creds.user, pass: creds.password }, logger: false });
await imap.connect();
let inImap = 0;
const ids = new Set<string>();
for (const box of ['INBOX', 'Junk']) {
  const count = await imap.status(box, { messages: true }).then(
    (st) => (st ? (st.messages ?? 0) : 0),
    () => 0,
  );
  inImap += count;
  if (count) {
    await imap.mailboxOpen(box, { readOnly: true });
    for await (const m of imap.fetch('1:*', { envelope: true })) ids.add(m.envelope?.messageId ?? `uid:${box}:${m.uid}`);
  }
}
await imap.logout();
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))] ?? NaN;
const log = await readFile(path.join(varDir, 'log/postfix.log'), 'utf8');
const delays = [...log.matchAll(/\/lmtp\[\d+\]: [0-9A-F]+: to=<[^>]+>.*delay=([\d.]+),.*status=sent/g)].map((m) => Number(m[1]) * 1000);

process.stdout.write(
  table(
    ['figure', 'value'],
    [
      ['capacity (delivered/s, 10 sessions)', capacity.toFixed(1)],
      ['soak rate target (80%)', rate.toFixed(1)],
      ['soak throughput (sent/s)', (soakSent / soakSeconds).toFixed(1)],
      ['soak duration (s)', soakSeconds.toFixed(0)],
      ['sent (smtp-source, capacity + soak)', String(total)],
      ['failed smtp-source runs', String(failedRuns)],
      ['delivered (Postfix log, status=sent)', String(finalDelivered)],
      ['in IMAP (INBOX + Junk)', String(inImap)],
      ['distinct Message-IDs in IMAP', String(ids.size)],
      ['lost', String(total - inImap)],
      ['Postfix delay p50 / p99 (ms)', `${pct(delays, 50).toFixed(0)} / ${pct(delays, 99).toFixed(0)}`],
      ['SMTP time per message p50 / p99 (ms)', `${pct(batchMs, 50).toFixed(0)} / ${pct(batchMs, 99).toFixed(0)}`],
    ],
  ) + '\n',
);
const rows = Object.entries(rss).map(([name, xs]) => {
  const warm = xs.slice(Math.floor(xs.length / 4));
  const first = warm[0] ?? NaN;
  const last = warm.at(-1) ?? NaN;
  const max = Math.max(...warm);
  return [name, (first / 1024).toFixed(1), (last / 1024).toFixed(1), (max / 1024).toFixed(1), `${(((last - first) / first) * 100).toFixed(1)}%`];
});
process.stdout.write(table(['service (main process)', 'RSS after warm-up (MB)', 'RSS at end (MB)', 'max (MB)', 'growth'], rows) + '\n');
const stop = spawn(process.execPath, [path.join(ROOT, 'bin/ceerion.mjs'), 'stop'], { env, stdio: 'ignore' });
await new Promise((r) => stop.once('close', r));
process.stdout.write(`var dir kept for a look: ${varDir}\n`);
