/**
 * The delivery path with `ceerion lmtp` in its own process, a private Dovecot (accounts in
 * PostgreSQL) behind it and a WebSocket client in front:
 * - Real-time latency: from our 250 reply reaching the LMTP client (Postfix's place) to the
 *   new-mail event reaching a WebSocket client, over --messages 10 KB messages sent one after
 *   another. Target: p95 < 250 ms. The index row and its event are committed before we answer, so
 *   the event can arrive before the 250 does: such samples count as 0.
 * - Memory: the indexer process's peak RSS (VmHWM) at rest and after a 50 MB message to two
 *   recipients. Target: under 200 MB.
 *
 *   node --import tsx bench/lmtp/path.ts [--messages 500]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createPool } from '../../core/db/pool.ts';
import { createToken } from '../../lmtp-indexer/auth/tokens.ts';
import { EventsClient } from '../../lmtp-indexer/events/client.ts';
import { migrateIndex } from '../../lmtp-indexer/index/schema.ts';
import { startDovecot } from '../../test/harness/dovecot.ts';
import { dropSchema, SHARED_DATABASE_URL } from '../../test/harness/postgres.ts';
import { lmtpSend } from '../../test/helpers/lmtp-client.ts';
import { addAccount } from '../../test/lmtp-indexer/dovecot/stack.ts';
import { freePort, percentile, table } from '../lib/stats.ts';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => Number(argv[argv.indexOf(`--${name}`) + 1] || 0) || dflt;
const MESSAGES = opt('messages', 500);
const ROOT = path.resolve(import.meta.dirname, '../..');

const schema = `bench_lmtp_path_${process.pid}`;
const database = { url: SHARED_DATABASE_URL, schema };
const pool = createPool(database);
await migrateIndex(pool);
for (const u of ['alice', 'bob']) await addAccount(pool, { address: `${u}@example.test`, password: 'pw' });
const token = await createToken(pool, 'alice@example.test');
const dovecot = await startDovecot({ sqlAccounts: database, lmtp: true, quota: { defaultRule: '*:storage=10G' } });
const work = await mkdtemp(path.join(os.tmpdir(), 'ceerion-bench-path-'));
const lmtpPort = await freePort();
const httpPort = await freePort();
const child = spawn(process.execPath, ['--max-semi-space-size=2', path.join(ROOT, 'bin/ceerion.mjs'), 'lmtp'], {
  env: {
    ...process.env,
    CEERION_DATABASE_URL: database.url,
    CEERION_DATABASE_SCHEMA: schema,
    CEERION_LMTP_LISTEN: `inet:127.0.0.1:${lmtpPort}`,
    CEERION_LMTP_DOVECOT_ADDRESS: `inet:127.0.0.1:${dovecot.lmtpPort}`,
    CEERION_LMTP_SPOOL_DIR: path.join(work, 'spool'),
    CEERION_LMTP_INDEX_BACKLOG_DIR: path.join(work, 'backlog'),
    CEERION_LMTP_HTTP_PORT: String(httpPort),
    CEERION_METRICS_ENABLED: 'false',
    CEERION_LOG_LEVEL: 'warn',
  },
  stdio: ['ignore', 'inherit', 'inherit'],
});
const hwm = (): number => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;
const rss = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;

async function ready(): Promise<void> {
  const until = Date.now() + 60_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(lmtpPort, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error('ceerion lmtp did not start');
    await new Promise((r) => setTimeout(r, 200));
  }
}

const body = (i: number) => `From: a@example.net\r\nTo: alice@example.test\r\nSubject: latency ${i}\r\nMessage-ID: <lat-${i}-${process.pid}@example.net>\r\n\r\n${'The quick brown fox jumps over the lazy dog. '.repeat(230)}\r\n`;

try {
  await ready();
  const ws = await EventsClient.connect({ url: `ws://127.0.0.1:${httpPort}/events`, token });
  const atRest = rss();
  const latencies: number[] = [];
  let early = 0;
  for (let i = 0; i < MESSAGES; i++) {
    const arrived = new Promise<number>((resolve) => {
      const start = ws.events.length;
      const check = setInterval(() => {
        if (ws.events.length > start) {
          clearInterval(check);
          resolve(performance.now());
        }
      }, 0);
    });
    const tr = await lmtpSend({ port: lmtpPort }, { from: 'a@example.net', to: ['alice@example.test'], message: body(i) });
    const replied = performance.now();
    if (tr.results[0]?.code !== 250) throw new Error(`message ${i}: ${tr.results[0]?.line}`);
    const got = await arrived;
    if (got < replied) early++;
    latencies.push(Math.max(0, got - replied));
  }
  ws.close();
  latencies.sort((a, b) => a - b);
  console.log(`\nReal-time: our 250 → WebSocket event, ${MESSAGES} messages (10 KB) sent one after another; ${os.cpus().length} cores\n`);
  console.log(table(['messages', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'event before the 250', 'p95 < 250 ms'], [[MESSAGES, percentile(latencies, 50), percentile(latencies, 95), percentile(latencies, 99), latencies.at(-1)!, early, percentile(latencies, 95) < 250 ? 'yes' : 'NO']]));

  const line = `${'abcdefghij'.repeat(7)}xyz\r\n`;
  const big = Buffer.from(`From: big@example.net\r\nSubject: fifty\r\n\r\n${line.repeat(Math.ceil((50 * 1024 * 1024) / line.length))}`, 'latin1');
  const before = hwm();
  const started = performance.now();
  const tr = await lmtpSend({ port: lmtpPort }, { from: 'big@example.net', to: ['alice@example.test', 'bob@example.test'], message: big }, 300_000);
  const seconds = (performance.now() - started) / 1000;
  if (tr.results.some((r) => r.code !== 250)) throw new Error(`50 MB: ${tr.results.map((r) => r.line).join(' | ')}`);
  console.log(`\nMemory of the ceerion lmtp process (RSS), ${(big.length / 1048576).toFixed(1)} MB message to 2 recipients\n`);
  console.log(table(['RSS at rest MB', 'peak before MB', 'peak after 50 MB message MB', 'delivery s', 'peak < 200 MB'], [[atRest, before, hwm(), seconds, hwm() < 200 ? 'yes' : 'NO']]));
} finally {
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await dovecot.stop();
  await pool.end();
  await dropSchema(SHARED_DATABASE_URL, schema);
  await rm(work, { recursive: true, force: true });
}
