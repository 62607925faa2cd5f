/**
 * Delivery throughput: smtp-source (10 KB messages, 3 recipients each) → private Postfix →
 * either our LMTP indexer → Dovecot LMTP, or Postfix → Dovecot LMTP directly. Runs alternate in
 * one invocation. A run ends when Postfix's queue is empty; every delivery is then counted in the
 * Maildirs, so a run that deferred mail can't pass for a fast one. Target: ratio ≥ 0.8.
 *
 *   node --import tsx bench/lmtp/throughput.ts [--rounds 3] [--messages 1000] [--sessions 10]
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { configSchema } from '../../core/config/schema.ts';
import { createLogger } from '../../core/log.ts';
import { startLmtpService } from '../../lmtp-indexer/service.ts';
import { startDovecot } from '../../test/harness/dovecot.ts';
import { dropSchema, SHARED_DATABASE_URL } from '../../test/harness/postgres.ts';
import { startPostfix, type PostfixInstance } from '../../test/harness/postfix.ts';
import { freePort, table } from '../lib/stats.ts';
import { createPool } from '../../core/db/pool.ts';

const exec = promisify(execFile);
const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => Number(argv[argv.indexOf(`--${name}`) + 1] || 0) || dflt;
const ROUNDS = opt('rounds', 3);
const MESSAGES = opt('messages', 1000);
const SESSIONS = opt('sessions', 10);
const RCPTS = 3;
// smtp-source -r 3 -t bench@… sends to bench@, 2bench@ and 3bench@.
const users = ['bench', '2bench', '3bench'].map((name) => ({ name, password: 'x' }));

const dovecotLmtpPort = await freePort();
const dovecot = await startDovecot({
  users,
  protocols: ['imap', 'lmtp'],
  // Recipients arrive as 1bench@example.test; the passwd-file knows 1bench.
  extraConfig: ['auth_username_format = %Ln', 'service lmtp {', '  inet_listener lmtp {', '    address = 127.0.0.1', `    port = ${dovecotLmtpPort}`, '  }', '}'].join('\n'),
});
const schema = `bench_lmtp_${process.pid}`;
const spool = path.join(dovecot.dir, 'ceerion');
const config = configSchema.parse({
  database: { url: SHARED_DATABASE_URL, schema },
  lmtp: {
    listen: `inet:127.0.0.1:${await freePort()}`,
    spoolDir: path.join(spool, 'spool'),
    dovecot: { address: `inet:127.0.0.1:${dovecotLmtpPort}` },
    index: { backlogDir: path.join(spool, 'backlog') },
    http: { port: 0 },
  },
});
const service = await startLmtpService(config, { log: createLogger('warn', 'lmtp') });

const virtual = (transport: string) => ({
  virtual_mailbox_domains: 'example.test',
  virtual_transport: transport,
  smtpd_reject_unlisted_recipient: 'no',
  lmtp_destination_recipient_limit: '50',
  lmtp_destination_concurrency_limit: '20',
});
const unusedRelay = await freePort();
const viaUs = await startPostfix({ relayPort: unusedRelay, main: virtual(`lmtp:${service.address}`) });
const direct = await startPostfix({ relayPort: unusedRelay, main: virtual(`lmtp:inet:127.0.0.1:${dovecotLmtpPort}`) });

async function delivered(): Promise<number> {
  let n = 0;
  for (const u of users) n += (await readdir(path.join(dovecot.mailRoot, u.name, 'Maildir', 'new')).catch(() => [])).length;
  return n;
}

/** CPU seconds used so far by every process whose command name starts with one of `names`. */
async function cpuOf(names: string[]): Promise<number> {
  let ticks = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (!names.some((n) => comm.startsWith(n))) continue;
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // gone
    }
  }
  return ticks / 100;
}
const GROUPS = { postfix: ['smtpd', 'cleanup', 'qmgr', 'lmtp', 'trivial-rewrite', 'master', 'postlogd', 'anvil', 'bounce', 'smtp-source'], dovecot: ['dovecot', 'auth', 'lmtp', 'anvil', 'config', 'log', 'stats'], postgres: ['postgres'] };
const cpu = { direct: new Map<string, number>(), us: new Map<string, number>() };
async function cpuSnapshot(): Promise<Record<string, number>> {
  const out: Record<string, number> = { ceerion: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6 };
  for (const [k, names] of Object.entries(GROUPS)) out[k] = await cpuOf(names);
  return out;
}

async function run(pf: PostfixInstance, messages: number, account?: Map<string, number>): Promise<number> {
  const cpuBefore = account ? await cpuSnapshot() : undefined;
  const before = 0;
  const started = performance.now();
  await exec('smtp-source', ['-s', String(SESSIONS), '-m', String(messages), '-l', '10240', '-r', String(RCPTS), '-f', 'sender@example.com', '-t', 'bench@example.test', '-S', 'bench', `127.0.0.1:${pf.smtpPort}`]);
  const deadline = Date.now() + 300_000;
  while ((await pf.queueSize()) > 0 || (await delivered()) - before < messages * RCPTS) {
    if (Date.now() > deadline) console.error((await pf.log()).split('\n').filter((l) => /status=(deferred|bounced)/.test(l)).slice(-5).join('\n'));
    if (Date.now() > deadline) throw new Error(`not delivered in time: ${(await delivered()) - before}/${messages * RCPTS}; queue ${await pf.queueSize()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const rate = messages / ((performance.now() - started) / 1000);
  if (account && cpuBefore) {
    const after = await cpuSnapshot();
    for (const k of Object.keys(after)) account.set(k, (account.get(k) ?? 0) + (after[k]! - cpuBefore[k]!));
  }
  // Empty the mailboxes so that the next run (the other path) starts from the same state: Maildir
  // delivery gets slower as a folder fills up, which would favour whichever path runs first.
  for (const u of users) await exec('doveadm', ['-c', dovecot.configFile, 'expunge', '-u', u.name, 'mailbox', 'INBOX', 'all']);
  return rate;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: Array<Array<string | number>> = [];
try {
  await run(direct, 100); // warm-up
  await run(viaUs, 100);
  const runs = { direct: [] as number[], us: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    runs.direct.push(await run(direct, MESSAGES, cpu.direct));
    runs.us.push(await run(viaUs, MESSAGES, cpu.us));
  }
  const d = median(runs.direct);
  const u = median(runs.us);
  rows.push([SESSIONS, MESSAGES, RCPTS, d, u, u / d, u / d >= 0.8 ? 'yes' : 'NO']);
  const pool = createPool(config.database);
  const { rows: count } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM indexed_messages');
  await pool.end();
  console.log(`\nPostfix ${(await exec('postconf', ['-d', '-h', 'mail_version'])).stdout.trim()} → LMTP, 10 KB messages × ${RCPTS} recipients, ${SESSIONS} SMTP sessions; median of ${ROUNDS} alternated rounds; ${os.cpus().length} cores\n`);
  console.log(table(['sessions', 'messages/run', 'rcpts/msg', 'direct to Dovecot msg/s', 'through ceerion msg/s', 'ratio', 'ratio ≥ 0.8'], rows));
  const per = (m: Map<string, number>, k: string) => ((m.get(k) ?? 0) * 1000) / (ROUNDS * MESSAGES);
  console.log('\nCPU ms per message (the bench process hosts the indexer; "lmtp" counts in both Postfix and Dovecot rows):\n');
  console.log(table(['path', 'ceerion (this process)', 'postgres', 'dovecot', 'postfix'], (['direct', 'us'] as const).map((k) => [k === 'us' ? 'through ceerion' : 'direct', per(cpu[k], 'ceerion'), per(cpu[k], 'postgres'), per(cpu[k], 'dovecot'), per(cpu[k], 'postfix')])));
  console.log(`\nindex rows written: ${count[0]!.n} (expected ${(ROUNDS * MESSAGES + 100) * RCPTS}); runs direct ${runs.direct.map((x) => x.toFixed(0)).join('/')}, ours ${runs.us.map((x) => x.toFixed(0)).join('/')}`);
} finally {
  await viaUs.stop();
  await direct.stop();
  await service.stop();
  await dovecot.stop();
  await dropSchema(SHARED_DATABASE_URL, schema);
}
