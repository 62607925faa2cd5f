/**
 * Policy service throughput: our PolicyClient sends Postfix policy requests (RCPT stage, a
 * realistic mix of limits: per client IP + per SASL user + per recipient) to `ceerion policyd`
 * (own process, a private Redis) and to Debian's postfwd2 with the equivalent rate() rules, at 1,
 * 16 and 64 concurrent connections, alternated in one run. Each connection sends one request at
 * a time, as Postfix's smtpd does. Prints requests/s, p50/p99 latency, the ratio to postfwd and
 * Redis round trips per decision (Redis's own command count over the run).
 *
 * Targets (issue): ≥ 20,000 requests/s, p99 < 2 ms, ≥ 3× postfwd, one round trip per decision.
 * Ours runs twice: as shipped (policyd.workers 0, one process per core) and as one process.
 *
 *   node --import tsx bench/policyd/throughput.ts [--requests 40000] [--rounds 2]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { PolicyClient } from '../../policyd/client.ts';
import { workerCount } from '../../policyd/cluster.ts';
import { encodeRequest } from '../../policyd/protocol/codec.ts';
import { canConnect } from '../../test/harness/milter-process.ts';
import { startPolicydProcess } from '../../test/harness/policyd-process.ts';
import { startRedis } from '../../test/harness/redis.ts';
import { freePort, percentile, table } from '../lib/stats.ts';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => Number(argv[argv.indexOf(`--${name}`) + 1] || 0) || dflt;
const REQUESTS = opt('requests', 40_000);
const ROUNDS = opt('rounds', 2);
const CONCURRENCY = (argv.includes('--connections') ? argv[argv.indexOf('--connections') + 1]! : '1,16,64').split(',').map(Number);
/** Extra node flags for our policyd process (e.g. "--cpu-prof --cpu-prof-dir=DIR"). */
const NODE_ARGS = argv.includes('--node-options') ? argv[argv.indexOf('--node-options') + 1]!.split(/\s+/).filter(Boolean) : [];
/** High enough that the mix is mostly allowed, as on a healthy server; a refusal costs the same. */
const LIMIT = 1_000_000;

/** A request as Postfix 3.7 sends it at RCPT: every attribute, realistic values. */
function rcptRequest(i: number): Record<string, string> {
  const ip = `198.51.${(i >> 8) & 255}.${i & 255}`;
  return {
    request: 'smtpd_access_policy',
    protocol_state: 'RCPT',
    protocol_name: 'ESMTP',
    helo_name: `mail${i % 500}.example.net`,
    queue_id: '',
    sender: `sender${i % 2000}@example.net`,
    recipient: `user${i % 5000}@example.org`,
    recipient_count: '0',
    client_address: ip,
    client_name: `mail${i % 500}.example.net`,
    reverse_client_name: `mail${i % 500}.example.net`,
    instance: `${(i * 2654435761) % 0xffffff}.${i}`.replace(/^/, ''),
    sasl_method: 'PLAIN',
    sasl_username: `login${i % 1000}`,
    sasl_sender: '',
    size: '12000',
    ccert_subject: '',
    ccert_issuer: '',
    ccert_fingerprint: '',
    ccert_pubkey_fingerprint: '',
    encryption_protocol: 'TLSv1.3',
    encryption_cipher: 'TLS_AES_256_GCM_SHA384',
    encryption_keysize: '256',
    etrn_domain: '',
    stress: '',
    client_port: String(40000 + (i % 20000)),
    policy_context: '',
    server_address: '127.0.0.1',
    server_port: '25',
    compatibility_level: '3.6',
    mail_version: '3.7.11',
  };
}

/**
 * Requests are encoded once, up front: the client shares the 2 cores with the servers, and
 * Postfix's smtpd (C) spends next to nothing on this. 20,000 distinct requests, cycled.
 */
const ENCODED = Array.from({ length: 20_000 }, (_, i) => encodeRequest(rcptRequest(i)));

interface Result {
  rps: number;
  p50: number;
  p99: number;
}

async function run(address: string, connections: number, total: number): Promise<Result> {
  const clients = await Promise.all(Array.from({ length: connections }, () => PolicyClient.connect(address)));
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    clients.map(async (c) => {
      while (next < total) {
        const req = ENCODED[next++ % ENCODED.length]!;
        const t0 = performance.now();
        await c.requestEncoded(req);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(clients.map((c) => c.close()));
  latencies.sort((a, b) => a - b);
  return { rps: total / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

async function startPostfwd(dir: string): Promise<{ address: string; child: ChildProcess; stop(): Promise<void> }> {
  const bin = spawnSync('sh', ['-c', 'command -v postfwd2']).stdout.toString().trim() || '/usr/sbin/postfwd2';
  const port = await freePort();
  const rules = path.join(dir, 'postfwd.cf');
  // The same three limits as ours: per client address, per SASL login, per recipient.
  writeFileSync(
    rules,
    [
      `id=RATE_IP; protocol_state==RCPT; action=rate(client_address/${LIMIT}/3600/defer_if_permit 4.7.1 Rate limit exceeded, retry later)`,
      `id=RATE_USER; protocol_state==RCPT; sasl_username=!!(^$); action=rate(sasl_username/${LIMIT}/3600/defer_if_permit 4.7.1 Rate limit exceeded, retry later)`,
      `id=RATE_RCPT; protocol_state==RCPT; action=rate(recipient/${LIMIT}/3600/defer_if_permit 4.7.1 Rate limit exceeded, retry later)`,
      'id=DEFAULT; action=dunno',
      '',
    ].join('\n'),
  );
  // postfwd2 keeps rate() state in its cache daemon, which only runs when it daemonises.
  const cachePort = await freePort();
  const pidfile = path.join(dir, 'postfwd.pid');
  const child = spawn(
    bin,
    ['-f', rules, '--server_socket', `tcp:127.0.0.1:${port}`, '--cache_socket', `tcp:127.0.0.1:${cachePort}`, '--user', 'nobody', '--group', 'nogroup', '--pidfile', pidfile, '--cache', '0', '--min_servers', '8', '--max_servers', '64', '--noidlestats', '--norulestats', '-n'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b));
  child.stderr!.on('data', (b: Buffer) => (out += b));
  const address = `inet:127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  while (!(await canConnect(address))) {
    if (Date.now() > deadline) throw new Error(`postfwd2 did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    address,
    child,
    async stop() {
      // The master's pid (the daemon forked away from `child`); it takes its children down.
      const pid = Number(readFileSync(pidfile, 'utf8').trim());
      if (pid > 0) process.kill(pid, 'SIGTERM');
    },
  };
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-bench-policyd-'));
const cleanups: Array<() => Promise<unknown> | unknown> = [() => rmSync(dir, { recursive: true, force: true })];
try {
  const redis = await startRedis();
  cleanups.push(() => redis.close());
  const policyd = (workers?: number) =>
    startPolicydProcess({
      nodeArgs: NODE_ARGS,
      env: {
        CEERION_REDIS_URL: redis.url,
        CEERION_POLICYD_DOMAIN_POLICY: 'false',
        CEERION_AUTH_POLICY_ENABLED: 'false',
        CEERION_POLICYD_LIMITS_CLIENT_IP_COUNT: String(LIMIT),
        CEERION_POLICYD_LIMITS_SASL_USER_COUNT: String(LIMIT),
        CEERION_POLICYD_LIMITS_RECIPIENT_COUNT: String(LIMIT),
        ...(workers ? { CEERION_POLICYD_WORKERS: String(workers) } : {}),
      },
    });
  // The shipped default (policyd.workers 0: one process per core), and one process for comparison.
  const ours = await policyd();
  cleanups.push(() => ours.stop());
  const single = await policyd(1);
  cleanups.push(() => single.stop());
  const postfwd = await startPostfwd(dir);
  cleanups.push(() => postfwd.stop());

  // Sanity: both answer, and ours says DUNNO to an allowed request.
  const probe = await PolicyClient.connect(ours.address);
  const first = await probe.request(rcptRequest(0));
  await probe.close();
  if (first !== 'DUNNO') throw new Error(`unexpected first answer from ours: ${first}`);

  const stats = new Redis(redis.url);
  const evalCount = async () => {
    const info = await stats.info('commandstats');
    // Commands clients sent (the script's own redis.call()s are counted under their names, not here).
    return [...info.matchAll(/^cmdstat_(evalsha|eval|info):calls=(\d+)/gm)].reduce((n, m) => n + Number(m[2]), 0);
  };

  const rows: string[][] = [];
  const summary: Array<{ c: number; ours: Result; single: Result; postfwd: Result; trips: number }> = [];
  for (const c of CONCURRENCY) {
    // Warm-up, then alternate ours ↔ one process ↔ postfwd, best round of each.
    await run(ours.address, c, 2_000);
    await run(single.address, c, 2_000);
    await run(postfwd.address, c, 2_000);
    const o: Result[] = [];
    const one: Result[] = [];
    const p: Result[] = [];
    let trips = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const before = await evalCount();
      o.push(await run(ours.address, c, REQUESTS));
      trips += (await evalCount()) - before - 1; // minus the INFO call itself
      one.push(await run(single.address, c, REQUESTS));
      p.push(await run(postfwd.address, c, Math.min(REQUESTS, 20_000)));
    }
    const best = (xs: Result[]) => xs.reduce((a, b) => (b.rps > a.rps ? b : a));
    summary.push({ c, ours: best(o), single: best(one), postfwd: best(p), trips: trips / (ROUNDS * REQUESTS) });
  }
  await stats.quit();
  const workers = workerCount(0);
  for (const s of summary) {
    const row = (name: string, r: Result, trips: string) => [String(s.c), name, r.rps.toFixed(0), r.p50.toFixed(3), r.p99.toFixed(3), (r.rps / s.postfwd.rps).toFixed(2), trips];
    rows.push(row(`ceerion policyd (default: ${workers} workers)`, s.ours, s.trips.toFixed(3)));
    rows.push(row('ceerion policyd (workers: 1)', s.single, '-'));
    rows.push(row('postfwd2', s.postfwd, '-'));
  }
  console.log(`\nPolicy requests (RCPT; limits per client IP, SASL user and recipient), ${REQUESTS} per round, best of ${ROUNDS}; ${os.cpus().length} cores\n`);
  console.log(table(['connections', 'server', 'requests/s', 'p50 ms', 'p99 ms', '× postfwd', 'Redis commands/decision'], rows));
} finally {
  for (const c of cleanups.reverse()) await c();
}
