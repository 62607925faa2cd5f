/**
 * Inbound authentication through Postfix: a Node SMTP client (20 concurrent sessions) sends really
 * DKIM-signed messages (20 header fields, ~10 KB body) to a private Postfix, which relays to
 * smtp-sink. Three setups, runs alternated in one invocation, median of the rounds:
 * - none: Postfix with no milter;
 * - ours: `ceerion milter` (its own process, TCP, shipped Postfix snippet) with authentication on
 *   (SPF, DKIM, ARC, DMARC + trace header), loopback NOT internal so every message is checked;
 * - pair: OpenDKIM (verify mode) + OpenDMARC (SPF self-validation, RejectFailures), unix sockets,
 *   the usual Debian pair;
 * - dkimOnly: the same OpenDKIM alone (the anchor: "OpenDKIM verify alone measured 0.66
 *   over a unix socket"), to show what that anchor gives on this benchmark's signed mail;
 * - oursUnix and traceOnly: ours over a unix socket, and ours with no checks (the ceiling).
 * Every DNS answer comes from one private dnsmasq with SPF, DKIM and DMARC records for the sending
 * domain; a warm-up round fills the caches. Prints msg/s per setup and the ratios ours/none,
 * pair/none and ours/pair (targets from the issue: ours ≥ pair, ours ≥ 0.6 × none).
 *
 * DNS: OpenDMARC (res_nquery, libspf2) only reads /etc/resolv.conf, which cannot name a port. So
 * the script re-executes itself in a private network + mount namespace (unshare; root): there
 * dnsmasq listens on 127.0.0.1:53 of the namespace's own loopback, and /etc/resolv.conf is
 * bind-mounted, for this namespace only, to "nameserver 127.0.0.1". Nothing on the host's port 53
 * or resolv.conf changes, and no process in the namespace can reach anything but its loopback.
 * Our milter (CEERION_DNS_SERVERS) and OpenDKIM (`Nameservers`, libunbound) are pointed at the same
 * dnsmasq explicitly, without resolv.conf.
 *
 * Why not smtp-source: it cannot send a DKIM-signed message, and DKIM verification must really run.
 *
 *   node --import tsx bench/milter/auth-postfix.ts [--rounds 3] [--messages 2000] [--sessions 20] [--node-options '...']
 */
import { reportMessage, textBody } from '../lib/report-message.ts';
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Resolver } from 'node:dns/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { dnsmasqConfig, type DnsmasqRecords } from '../../test/harness/dnsmasq.ts';
import { startPostfix, type PostfixInstance } from '../../test/harness/postfix.ts';
import { openSmtpSession, sendMail } from '../../test/harness/smtp-client.ts';
import { startSmtpSink } from '../../test/harness/smtp-sink.ts';
import { rsaKey, sign } from '../../test/helpers/signed-mail.ts';
import { freePort, startMilterProcess, table } from '../lib/stats.ts';

const exec = promisify(execFile);
const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => Number(argv[argv.indexOf(`--${name}`) + 1] || 0) || dflt;
const ROUNDS = opt('rounds', 3);
const MESSAGES = opt('messages', 2000);
const SESSIONS = opt('sessions', 20);
const WARMUP = 200;
/** Extra node flags for our milter process only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"). */
const NODE_OPTIONS = argv.includes('--node-options') ? argv[argv.indexOf('--node-options') + 1] ?? '' : '';

const NETNS_FLAG = 'AUTH_BENCH_IN_NETNS';
if (process.env[NETNS_FLAG] !== '1') {
  // Re-run this script inside its own network and mount namespaces (see the header comment).
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync('unshare', ['--net', '--mount', '--propagation', 'private', '--', process.execPath, ...process.execArgv, self, ...argv], {
    stdio: 'inherit',
    env: { ...process.env, [NETNS_FLAG]: '1' },
  });
  if (r.error) throw new Error(`unshare failed (${r.error.message}); this benchmark needs root and util-linux's unshare`);
  process.exit(r.status ?? 1);
}

for (const bin of ['opendkim', 'opendmarc', 'dnsmasq', 'smtp-sink', 'postfix']) {
  const found = spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0 || existsSync(`/usr/sbin/${bin}`);
  if (!found) throw new Error(`${bin} is not installed: apt-get install -y opendkim opendmarc dnsmasq-base postfix`);
}

const DOMAIN = 'sender.example';
const AUTHSERV_ID = 'mx.bench';
/** Neither loopback nor the client: every message is checked (ours, OpenDKIM, OpenDMARC alike). */
const INTERNAL = '10.255.255.0/24';

// ---- the namespace: loopback up, resolv.conf → 127.0.0.1 ----------------------------------------

const work = mkdtempSync(path.join(os.tmpdir(), 'ceerion-bench-auth-'));
chmodSync(work, 0o755); // Postfix's smtpd (user postfix) must reach the milter sockets
execFileSync('ip', ['link', 'set', 'lo', 'up']);
writeFileSync(path.join(work, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:2 attempts:2\n');
execFileSync('mount', ['--bind', path.join(work, 'resolv.conf'), '/etc/resolv.conf']);

// ---- the messages -------------------------------------------------------------------------------

/** 19 header fields; the DKIM-Signature makes 20 (Postfix then adds its Received on top). */
const rawMessage = (variant: number) => reportMessage(DOMAIN, variant, textBody(variant, 10 * 1024));

// ---- dnsmasq on the namespace's 127.0.0.1:53 ----------------------------------------------------

const key = rsaKey();
const records: DnsmasqRecords = {
  ttl: 3600,
  txt: {
    // Postfix's client here is 127.0.0.1.
    [DOMAIN]: ['v=spf1 ip4:127.0.0.1 -all'],
    [`_dmarc.${DOMAIN}`]: [`v=DMARC1; p=reject; rua=mailto:dmarc-reports@${DOMAIN}`],
    [`s1._domainkey.${DOMAIN}`]: [key.txt],
  },
};

interface Daemon {
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

function daemon(cmd: string, args: string[], onOutput?: (chunk: string) => void, keep = true): Daemon {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const take = (b: Buffer) => {
    const s = b.toString();
    if (keep && out.length < 100_000) out += s;
    onOutput?.(s);
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  return {
    child,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

let dnsQueries = 0;
async function startDns(): Promise<Daemon> {
  const conf = path.join(work, 'dnsmasq.conf');
  writeFileSync(conf, dnsmasqConfig(records));
  const d = daemon(
    'dnsmasq',
    ['--keep-in-foreground', '--no-resolv', '--no-hosts', '--port=53', '--listen-address=127.0.0.1', '--bind-interfaces', `--conf-file=${conf}`, '--pid-file', '--log-facility=-', '--log-queries', `--local-ttl=${records.ttl}`, '--user=nobody', '--group=nogroup'],
    // Count queries without keeping the log (it grows with every uncached lookup).
    (s) => (dnsQueries += s.split(' query[').length - 1),
    false,
  );
  const probe = new Resolver({ timeout: 200, tries: 1 });
  probe.setServers(['127.0.0.1:53']);
  for (let i = 0; ; i++) {
    const ok = await probe.resolveTxt(`_dmarc.${DOMAIN}`).then(() => true, () => false);
    if (ok) return d;
    if (i > 50 || d.child.exitCode !== null) throw new Error(`dnsmasq did not start on 127.0.0.1:53: ${d.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---- OpenDKIM + OpenDMARC -----------------------------------------------------------------------

async function waitForSocket(file: string, d: Daemon, name: string): Promise<void> {
  for (let i = 0; !existsSync(file); i++) {
    if (i > 100 || d.child.exitCode !== null) throw new Error(`${name} did not open ${file}:\n${d.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function conf(file: string, settings: Record<string, string>): string {
  writeFileSync(file, Object.entries(settings).map(([k, v]) => `${k} ${v}\n`).join(''));
  return file;
}

async function startPair(): Promise<{ milters: string; daemons: Daemon[] }> {
  const internal = path.join(work, 'internal-hosts');
  writeFileSync(internal, `${INTERNAL}\n`);
  const dkimSock = path.join(work, 'opendkim.sock');
  const dmarcSock = path.join(work, 'opendmarc.sock');
  const dkimConf = conf(path.join(work, 'opendkim.conf'), {
    Mode: 'v',
    Socket: `local:${dkimSock}`,
    UMask: '000',
    Syslog: 'no',
    AuthservID: AUTHSERV_ID,
    // libunbound forwards to these instead of reading resolv.conf.
    Nameservers: '127.0.0.1',
    // Default 127.0.0.1: mail from there would count as outbound (to sign), not inbound.
    InternalHosts: internal,
  });
  const dmarcConf = conf(path.join(work, 'opendmarc.conf'), {
    Socket: `local:${dmarcSock}`,
    UMask: '000',
    Syslog: 'false',
    AuthservID: AUTHSERV_ID,
    TrustedAuthservIDs: AUTHSERV_ID, // OpenDKIM's results
    // Default 127.0.0.1 only: our client would be ignored.
    IgnoreHosts: internal,
    SPFSelfValidate: 'true',
    SPFIgnoreResults: 'true',
    RejectFailures: 'true',
    FailureReports: 'false',
    PublicSuffixList: '/usr/share/publicsuffix/public_suffix_list.dat',
  });
  const dkim = daemon('opendkim', ['-f', '-x', dkimConf]);
  const dmarc = daemon('opendmarc', ['-f', '-c', dmarcConf]);
  await waitForSocket(dkimSock, dkim, 'opendkim');
  await waitForSocket(dmarcSock, dmarc, 'opendmarc');
  return { milters: `unix:${dkimSock}, unix:${dmarcSock}`, daemons: [dkim, dmarc] };
}

// ---- measuring ----------------------------------------------------------------------------------

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // all threads, in USER_HZ = 100 ticks
}

/** Busy and total CPU time of the whole machine so far (jiffies, all cores), from /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total }; // minus idle and iowait
}

async function drain(pf: PostfixInstance): Promise<void> {
  const deadline = Date.now() + 120_000;
  while ((await pf.queueSize()) > 0) {
    if (Date.now() > deadline) throw new Error('queue did not drain');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Messages per second Postfix accepts (250 after DATA) from `sessions` concurrent SMTP sessions. */
async function inject(pf: PostfixInstance, messages: string[], total: number, sessions: number, usage?: { busy: number; client: number; machineMs: number }): Promise<number> {
  const conns = await Promise.all(Array.from({ length: sessions }, () => openSmtpSession(pf.smtpPort, { helo: `mail.${DOMAIN}` })));
  let next = 0;
  const refused = new Map<string, number>();
  const m0 = machineCpu();
  const c0 = process.cpuUsage();
  const started = performance.now();
  await Promise.all(
    conns.map(async (c) => {
      while (next < total) {
        const i = next++;
        const r = await c.send({ from: `alice@${DOMAIN}`, to: ['bob@example.org'], data: messages[i % messages.length]! });
        if (r.code !== 250) refused.set(`${r.code} ${r.text}`, (refused.get(`${r.code} ${r.text}`) ?? 0) + 1);
      }
    }),
  );
  const rate = total / ((performance.now() - started) / 1000);
  if (usage) {
    const m1 = machineCpu();
    const c1 = process.cpuUsage(c0);
    usage.busy += (m1.busy - m0.busy) / (m1.total - m0.total);
    usage.machineMs += ((m1.busy - m0.busy) * 10) / total; // jiffies are 10 ms: all processes, all cores
    usage.client += (c1.user + c1.system) / 1000 / total; // ms per message
  }
  await Promise.all(conns.map((c) => c.quit()));
  if (refused.size > 0) throw new Error(`Postfix refused messages: ${JSON.stringify([...refused])}`);
  await drain(pf);
  return rate;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** One message each way through a setup, delivered to a sink that keeps it: the results headers. */
async function preflight(milter: string | undefined, main: Record<string, string>, envelopeFrom: string, message: string): Promise<string[]> {
  const sink = await startSmtpSink();
  const pf = await startPostfix({ relayPort: sink.port, ...(milter ? { milter } : {}), main });
  try {
    const r = await sendMail({ port: pf.smtpPort, from: envelopeFrom, to: ['bob@example.org'], data: message, helo: `mail.${DOMAIN}` });
    if (r.code !== 250) return [`refused: ${r.code} ${r.text}`];
    const [m] = await sink.waitFor(1, 20_000);
    const head = m!.data.split('\r\n\r\n')[0]!;
    return (head.match(/^(Authentication-Results|Received-SPF):.*(\r\n[ \t].*)*/gim) ?? []).map((h) => h.replace(/\s+/g, ' '));
  } finally {
    await pf.stop();
    await sink.close();
  }
}

// ---- the run ------------------------------------------------------------------------------------

const loadBefore = os.loadavg()[0]!;
const cleanups: Array<() => Promise<unknown> | unknown> = [];
let report = '';
try {
  const dns = await startDns();
  cleanups.push(() => dns.stop());
  const messages: string[] = [];
  for (let v = 0; v < 16; v++) messages.push(await sign(rawMessage(v), DOMAIN, 's1', key));

  const ourListen = `inet:127.0.0.1:${await freePort()}`;
  const ourUnix = `unix:${path.join(work, 'ceerion-milter.sock')}`;
  const ourEnv = {
      CEERION_MILTER_CHECKS_AUTH_ENABLED: 'true',
      CEERION_MILTER_CHECKS_AUTH_INTERNAL_NETWORKS: INTERNAL,
      CEERION_MILTER_CHECKS_AUTH_AUTHSERV_ID: AUTHSERV_ID,
      CEERION_DNS_SERVERS: '127.0.0.1:53',
  };
  const nodeArgs = NODE_OPTIONS.split(/\s+/).filter(Boolean);
  // Two processes with the same config, one per transport; only one is busy at a time.
  const ours = await startMilterProcess(ourListen, { env: ourEnv, nodeArgs });
  cleanups.push(() => ours.stop());
  const oursUnix = await startMilterProcess(ourUnix, { env: ourEnv, nodeArgs });
  cleanups.push(() => oursUnix.stop());
  // The ceiling for any milter here: ours with authentication off (trace header only), over TCP.
  const traceListen = `inet:127.0.0.1:${await freePort()}`;
  const traceOnly = await startMilterProcess(traceListen, { env: { ...ourEnv, CEERION_MILTER_CHECKS_AUTH_ENABLED: 'false' }, nodeArgs });
  cleanups.push(() => traceOnly.stop());
  const pair = await startPair();
  cleanups.push(...pair.daemons.map((d) => () => d.stop()));
  const pairMain = { smtpd_milters: pair.milters };

  // Each setup once, to a sink that keeps the message: every check really ran and passed. The
  // second message has a foreign envelope sender (SPF none), so DMARC can pass only on DKIM: for
  // the pair that proves OpenDMARC saw the result OpenDKIM added.
  const checks: string[] = [];
  for (const [name, milter, main] of [['ours', ourListen, {}], ['pair', pair.milters.split(',')[0]!.trim(), pairMain]] as const) {
    for (const from of [`alice@${DOMAIN}`, 'bounces@other.example']) {
      const q0 = dnsQueries;
      const headers = await preflight(milter, main, from, messages[0]!);
      const dmarcPass = headers.some((h) => /dmarc=pass/.test(h));
      const dkimPass = headers.some((h) => /dkim=pass/.test(h));
      checks.push(`${name}, MAIL FROM ${from}: ${dmarcPass && dkimPass ? 'ok' : 'FAILED'} (${dnsQueries - q0} DNS queries, caches cold)\n    ${headers.join('\n    ')}`);
      if (!dmarcPass || !dkimPass) throw new Error(`preflight failed for ${name}:\n${checks.join('\n')}\n${pair.daemons.map((d) => d.output()).join('\n')}`);
    }
  }

  // Postfix's own sink for the measured runs (smtp-sink refuses to run as root without -u).
  const sinkPort = await freePort();
  const sink = spawn('smtp-sink', [...(os.userInfo().uid === 0 ? ['-u', 'postfix'] : []), `127.0.0.1:${sinkPort}`, '1000'], { stdio: 'ignore' });
  cleanups.push(() => sink.kill());
  await new Promise((r) => setTimeout(r, 300));
  const setups = {
    none: await startPostfix({ relayPort: sinkPort }),
    ours: await startPostfix({ relayPort: sinkPort, milter: ourListen }),
    oursUnix: await startPostfix({ relayPort: sinkPort, milter: ourUnix }),
    traceOnly: await startPostfix({ relayPort: sinkPort, milter: traceListen }),
    pair: await startPostfix({ relayPort: sinkPort, milter: pair.milters.split(',')[0]!.trim(), main: pairMain }),
    dkimOnly: await startPostfix({ relayPort: sinkPort, milter: pair.milters.split(',')[0]!.trim() }),
  };
  for (const pf of Object.values(setups)) cleanups.push(() => pf.stop());
  const pids = { none: [] as number[], ours: [ours.child.pid!], oursUnix: [oursUnix.child.pid!], traceOnly: [traceOnly.child.pid!], pair: pair.daemons.map((d) => d.child.pid!), dkimOnly: [pair.daemons[0]!.child.pid!] };

  // Warm-up: smtpd processes, JIT, every resolver cache.
  for (const [, pf] of Object.entries(setups)) await inject(pf, messages, WARMUP, SESSIONS);

  type Name = keyof typeof setups;
  const names = Object.keys(setups) as Name[];
  const perSetup = <T,>(f: () => T) => Object.fromEntries(names.map((n) => [n, f()])) as Record<Name, T>;
  const runs = perSetup<number[]>(() => []);
  const cpu = perSetup(() => 0);
  const queries = perSetup(() => 0);
  const usage = perSetup(() => ({ busy: 0, client: 0, machineMs: 0 }));
  for (let r = 0; r < ROUNDS; r++) {
    // none → ours → pair, then the reverse: drift on the machine hits all three alike.
    const order: Name[] = r % 2 === 0 ? [...names] : [...names].reverse();
    for (const name of order) {
      const c0 = pids[name].reduce((a, p) => a + cpuSeconds(p), 0);
      const q0 = dnsQueries;
      runs[name].push(await inject(setups[name], messages, MESSAGES, SESSIONS, usage[name]));
      cpu[name] += pids[name].reduce((a, p) => a + cpuSeconds(p), 0) - c0;
      queries[name] += dnsQueries - q0;
    }
  }

  const med = perSetup(() => 0);
  for (const n of names) med[n] = median(runs[n]);
  const measured = ROUNDS * MESSAGES;
  const version = (await exec('postconf', ['-d', '-h', 'mail_version'])).stdout.trim();
  const dkimV = /OpenDKIM Filter v(\S+)/.exec(execFileSync('opendkim', ['-V']).toString())?.[1] ?? '?';
  const dmarcV = /OpenDMARC Filter v(\S+)/.exec(execFileSync('opendmarc', ['-V']).toString())?.[1] ?? '?';
  const label: Record<Name, string> = {
    none: 'no milter',
    ours: 'ceerion milter (tcp): SPF, DKIM, ARC, DMARC',
    oursUnix: 'ceerion milter (unix): the same',
    traceOnly: 'ceerion milter (tcp), trace header only: no checks',
    pair: `OpenDKIM ${dkimV} verify + OpenDMARC ${dmarcV} (unix)`,
    dkimOnly: `OpenDKIM ${dkimV} verify alone (unix)`,
  };
  report += `\nThrough Postfix ${version}: ${SESSIONS} SMTP sessions from Node, DKIM-signed messages (${messages[0]!.split('\r\n\r\n')[0]!.split(/\r\n(?![ \t])/).length} header fields, ${(Buffer.byteLength(messages[0]!) / 1024).toFixed(1)} KB) → Postfix → smtp-sink;\n`;
  report += `${MESSAGES} messages per run, median of ${ROUNDS} alternated rounds after a ${WARMUP}-message warm-up per setup; ${os.cpus().length} cores, 1-minute load average at start: ${loadBefore.toFixed(2)}\n\n`;
  report += `${table(['setup', ...Array.from({ length: ROUNDS }, (_, i) => `round ${i + 1} msg/s`), 'median msg/s', '/ none', 'milter CPU ms/msg', 'client CPU ms/msg', 'machine CPU busy', 'machine CPU ms/msg', 'DNS queries/msg'], names.map((n) => [
    label[n],
    ...runs[n],
    med[n],
    med[n] / med.none,
    n === 'none' ? '-' : (cpu[n] * 1000) / measured,
    usage[n].client / ROUNDS,
    `${((100 * usage[n].busy) / ROUNDS).toFixed(0)}%`,
    usage[n].machineMs / ROUNDS,
    queries[n] / measured,
  ]))}\n\n`;
  report += `${table(['ratio', 'value', 'target', 'met'], [
    ['ours / none', med.ours / med.none, '≥ 0.6', med.ours / med.none >= 0.6 ? 'yes' : 'NO'],
    ['pair / none', med.pair / med.none, '-', '-'],
    ['OpenDKIM alone / none', med.dkimOnly / med.none, '(issue: 0.66)', '-'],
    ['ours / pair', med.ours / med.pair, '≥ 1', med.ours / med.pair >= 1 ? 'yes' : 'NO'],
    ['ours (unix) / none', med.oursUnix / med.none, '≥ 0.6', med.oursUnix / med.none >= 0.6 ? 'yes' : 'NO'],
    ['ours (unix) / pair', med.oursUnix / med.pair, '≥ 1', med.oursUnix / med.pair >= 1 ? 'yes' : 'NO'],
  ])}\n\n`;
  report += `Preflight (one message per setup to a keeping sink; the results headers Postfix delivered):\n  ${checks.join('\n  ')}\n`;
  report += `\nMilter CPU: user + system time from /proc (all threads; OpenDKIM + OpenDMARC summed) over the measured runs. Client CPU: this\n`;
  report += `process (the SMTP client). Machine CPU busy: all cores, from /proc/stat, while the client was sending (100% = both cores saturated).\n`;
} finally {
  for (const c of cleanups.reverse()) await c();
  try {
    execFileSync('umount', ['/etc/resolv.conf']);
  } catch {
    // The namespace goes away with this process anyway.
  }
  rmSync(work, { recursive: true, force: true });
}
console.log(report);
