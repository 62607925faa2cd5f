/**
 * Inbound authentication under load, protocol level: our MilterClient drives `ceerion milter` (its
 * own process, authentication on, every DNS answer from a private dnsmasq, cache warmed first) over
 * TCP with 64 concurrent connections. Each message is really DKIM-signed (RSA 2048, relaxed), with
 * 20 header fields and a ~10 KB body, from a domain whose SPF, DKIM and DMARC all pass, so SPF,
 * DKIM, ARC and DMARC all run. Prints:
 * - throughput, and client-side latency (MAIL → verdict, and end of message → verdict);
 * - per-check latency from the milter's own /metrics (ceerion_milter_check_seconds, interpolated
 *   within its buckets, as Prometheus' histogram_quantile does);
 * - the milter's peak RSS during the load (VmHWM, reset through /proc/PID/clear_refs before the
 *   phase, and VmRSS polled every 50 ms), target < 200 MB;
 * - one 50 MB signed message through the same process: its peak RSS (memory must stay bounded).
 *
 *   node --import tsx bench/milter/auth-load.ts [--messages 10000] [--connections 64] [--big-mb 50] [--node-options '...']
 */
import { reportMessage, textBody } from '../lib/report-message.ts';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { messageFromRaw, MilterClient, type MessageSpec } from '../../milter/client/milter-client.ts';
import { Cmd, Family, Proto } from '../../milter/protocol/constants.ts';
import { startDnsmasq } from '../../test/harness/dnsmasq.ts';
import { rsaKey, sign, type TestKey } from '../../test/helpers/signed-mail.ts';
import { freePort, percentile, startMilterProcess, table } from '../lib/stats.ts';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => Number(argv[argv.indexOf(`--${name}`) + 1] || 0) || dflt;
const TOTAL = opt('messages', 10000);
const CONNECTIONS = opt('connections', 64);
const BIG_MB = opt('big-mb', 50);
/** Extra node flags for the milter process (e.g. "--cpu-prof --cpu-prof-dir=DIR", "--max-semi-space-size=4"), to see what RSS is GC headroom. */
const NODE_OPTIONS = argv.includes('--node-options') ? argv[argv.indexOf('--node-options') + 1] ?? '' : '';
const VARIANTS = 16;
const SINGLE = 1000;

const DOMAIN = 'sender.example';
const CLIENT_IP = '192.0.2.10';
const AUTHSERV_ID = 'mx.bench';

// ---- the messages -------------------------------------------------------------------------------

/** 19 header fields; the DKIM-Signature added by signing makes 20. */
const rawMessage = (variant: number, body: string) => reportMessage(DOMAIN, variant, body);

interface Prepared {
  spec: MessageSpec;
  bytes: number;
}

/** A signed CRLF message as the MTA hands it to a milter. */
function prepare(raw: string): Prepared {
  return { spec: messageFromRaw(raw, { from: `<alice@${DOMAIN}>`, rcpts: ['<bob@example.org>'] }), bytes: Buffer.byteLength(raw) };
}

async function signedMessages(key: TestKey): Promise<Prepared[]> {
  const out: Prepared[] = [];
  for (let v = 0; v < VARIANTS; v++) out.push(prepare(await sign(rawMessage(v, textBody(v, 10 * 1024)), DOMAIN, 's1', key)));
  return out;
}

// ---- driving the milter -------------------------------------------------------------------------

const CONNECT = { hostname: `mail.${DOMAIN}`, family: Family.INET, port: 40000, address: CLIENT_IP } as const;

async function openClient(address: string): Promise<MilterClient> {
  const c = await MilterClient.connect(address);
  await c.negotiate();
  await c.connectStage(CONNECT, [['j', AUTHSERV_ID]]);
  await c.helo(`mail.${DOMAIN}`);
  return c;
}

interface Timed {
  total: number;
  eom: number;
  verdict: string;
  results?: string;
}

/** MilterClient.message(), with the end of message timed on its own. */
async function send(c: MilterClient, spec: MessageSpec, qid: string): Promise<Timed> {
  const t0 = performance.now();
  c.macros(Cmd.MAIL, [['i', qid]]);
  await c.stage('mail', { kind: 'mail', sender: spec.from, args: [] });
  for (const rcpt of spec.rcpts) await c.stage('rcpt', { kind: 'rcpt', recipient: rcpt, args: [] });
  await c.stage('data', { kind: 'data' });
  const lead = ((c.negotiated?.protocol ?? 0) & Proto.HDR_LEADSPC) !== 0 ? ' ' : '';
  for (const [name, value] of spec.headers) await c.stage('header', { kind: 'header', name, value: lead + value });
  await c.stage('eoh', { kind: 'eoh' });
  const body = spec.body as Buffer;
  for (let off = 0; off < body.length && !c.skips('body'); off += 65535) {
    const r = await c.stage('body', { kind: 'body', chunk: body.subarray(off, off + 65535) });
    if (r && r.kind !== 'continue') throw new Error(`body answered ${r.kind}`);
  }
  c.macros(Cmd.BODYEOB, [['i', qid]]);
  const t1 = performance.now();
  const eom = await c.request({ kind: 'eom', chunk: Buffer.alloc(0) });
  const t2 = performance.now();
  const ar = eom.modifications.find((m) => 'name' in m && /^authentication-results$/i.test(m.name as string));
  return { total: t2 - t0, eom: t2 - t1, verdict: eom.response.kind, ...(ar && 'value' in ar ? { results: String(ar.value) } : {}) };
}

// ---- the milter process: metrics, memory, CPU ---------------------------------------------------

type Sample = { name: string; labels: Record<string, string>; value: number };

function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(port: number): Promise<Sample[]> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  return parsePrometheus(await res.text());
}

interface Histogram {
  buckets: Array<[number, number]>; // [le, cumulative count]
  count: number;
  sum: number;
}

/** The histogram `name` where labels match `where`, as the difference `after − before`. */
function histogram(before: Sample[], after: Sample[], name: string, where: Record<string, string> = {}): Histogram {
  const pick = (s: Sample[], suffix: string) =>
    s.filter((x) => x.name === name + suffix && Object.entries(where).every(([k, v]) => x.labels[k] === v));
  const sumBy = (s: Sample[], suffix: string, key?: (x: Sample) => string) => {
    const m = new Map<string, number>();
    for (const x of pick(s, suffix)) m.set(key?.(x) ?? '', (m.get(key?.(x) ?? '') ?? 0) + x.value);
    return m;
  };
  const le = (x: Sample) => x.labels.le!;
  const b0 = sumBy(before, '_bucket', le);
  const b1 = sumBy(after, '_bucket', le);
  const buckets = [...b1.entries()]
    .map(([k, v]) => [k === '+Inf' ? Infinity : Number(k), v - (b0.get(k) ?? 0)] as [number, number])
    .sort((a, b) => a[0] - b[0]);
  return {
    buckets,
    count: (sumBy(after, '_count').get('') ?? 0) - (sumBy(before, '_count').get('') ?? 0),
    sum: (sumBy(after, '_sum').get('') ?? 0) - (sumBy(before, '_sum').get('') ?? 0),
  };
}

/**
 * Quantile from cumulative buckets, linear within the bucket it falls in (Prometheus'
 * histogram_quantile), with that bucket's bounds: the value is only known to lie between them.
 */
function quantile(h: Histogram, q: number): { value: number; lo: number; hi: number } {
  if (h.count === 0) return { value: NaN, lo: NaN, hi: NaN };
  const rank = q * h.count;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, cum] of h.buckets) {
    if (cum >= rank) {
      if (le === Infinity) return { value: prevLe, lo: prevLe, hi: Infinity }; // beyond the last finite bucket
      return { value: prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, cum - prevCount), lo: prevLe, hi: le };
    }
    prevLe = le;
    prevCount = cum;
  }
  return { value: prevLe, lo: prevLe, hi: Infinity };
}

/** "0.70 (0.5–1)" in ms: the interpolated value and the bucket it is in. */
function showQuantile(h: Histogram, q: number): string {
  const { value, lo, hi } = quantile(h, q);
  const f = (s: number) => (s === Infinity ? '∞' : String(+(s * 1000).toPrecision(3)));
  return `${(value * 1000).toFixed(2)} (${f(lo)}–${f(hi)})`;
}

/** A field of /proc/PID/status in MB (kB in the file). */
function statusMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Reset the kernel's peak-RSS mark (VmHWM) of a process; false when the kernel refuses. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Peak RSS over a phase: VmRSS every 50 ms, and the kernel's VmHWM (reset first) at the end. */
async function memoryDuring<T>(pid: number, run: () => Promise<T>): Promise<{ result: T; startMb: number; polledPeakMb: number; hwmMb: number; samples: number }> {
  const hwmReset = resetPeak(pid);
  const startMb = statusMb(pid, 'VmRSS');
  let polledPeakMb = startMb;
  let samples = 0;
  const timer = setInterval(() => {
    samples++;
    polledPeakMb = Math.max(polledPeakMb, statusMb(pid, 'VmRSS'));
  }, 50);
  try {
    const result = await run();
    polledPeakMb = Math.max(polledPeakMb, statusMb(pid, 'VmRSS'));
    return { result, startMb, polledPeakMb, hwmMb: hwmReset ? statusMb(pid, 'VmHWM') : NaN, samples };
  } finally {
    clearInterval(timer);
  }
}

// ---- the run ------------------------------------------------------------------------------------

async function load(address: string, messages: Prepared[], total: number, connections: number, halfway?: () => void) {
  let next = 0;
  const totals: number[] = [];
  const eoms: number[] = [];
  const verdicts = new Map<string, number>();
  let sample: string | undefined;
  const clients = await Promise.all(Array.from({ length: connections }, () => openClient(address)));
  const started = performance.now();
  await Promise.all(
    clients.map(async (c) => {
      while (next < total) {
        const i = next++;
        if (i === Math.floor(total / 2)) halfway?.();
        const r = await send(c, messages[i % messages.length]!.spec, `Q${i.toString(16).toUpperCase()}`);
        totals.push(r.total);
        eoms.push(r.eom);
        verdicts.set(r.verdict, (verdicts.get(r.verdict) ?? 0) + 1);
        sample ??= r.results;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(clients.map((c) => c.quit()));
  totals.sort((a, b) => a - b);
  eoms.sort((a, b) => a - b);
  return { rate: total / seconds, seconds, totals, eoms, verdicts, sample };
}

const key = rsaKey();
const dns = await startDnsmasq({
  ttl: 3600,
  txt: {
    [DOMAIN]: [`v=spf1 ip4:${CLIENT_IP} -all`],
    [`_dmarc.${DOMAIN}`]: [`v=DMARC1; p=reject; rua=mailto:dmarc-reports@${DOMAIN}`],
    [`s1._domainkey.${DOMAIN}`]: [key.txt],
  },
});
const messages = await signedMessages(key);
const listen = `inet:127.0.0.1:${await freePort()}`;
const metricsPort = await freePort();
const milter = await startMilterProcess(listen, {
  args: ['--metrics-port', String(metricsPort)],
  env: {
    CEERION_MILTER_CHECKS_AUTH_ENABLED: 'true',
    // Not loopback and not the client address: every message is checked.
    CEERION_MILTER_CHECKS_AUTH_INTERNAL_NETWORKS: '10.255.255.0/24',
    CEERION_MILTER_CHECKS_AUTH_AUTHSERV_ID: AUTHSERV_ID,
    CEERION_DNS_SERVERS: dns.server,
  },
  nodeArgs: NODE_OPTIONS.split(/\s+/).filter(Boolean),
});
const pid = milter.child.pid!;
let out = '';
try {
  // Warm-up: JIT, connections, and the DNS cache (SPF, DKIM key, DMARC record).
  const warm = await load(listen, messages, 1000, 8);
  if (!/dkim=pass/.test(warm.sample ?? '') || !/spf=pass/.test(warm.sample ?? '') || !/dmarc=pass/.test(warm.sample ?? '')) {
    throw new Error(`the messages do not pass authentication; Authentication-Results: ${warm.sample}\n${milter.output()}`);
  }
  const idleMb = statusMb(pid, 'VmRSS');

  const before = await scrape(metricsPort);
  const cpu0 = cpuSeconds(pid);
  let midway: Promise<Sample[]> | undefined;
  const mem = await memoryDuring(pid, () => load(listen, messages, TOTAL, CONNECTIONS, () => (midway = scrape(metricsPort))));
  const mid = (await midway) ?? [];
  const gauge = (name: string, labels: Record<string, string> = {}) =>
    mid.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v)).reduce((a, x) => a + x.value, 0) / 1048576;
  const cpu = cpuSeconds(pid) - cpu0;
  const after = await scrape(metricsPort);
  const r = mem.result;
  if ((r.verdicts.get('accept') ?? 0) + (r.verdicts.get('continue') ?? 0) !== TOTAL) throw new Error(`unexpected verdicts ${JSON.stringify([...r.verdicts])}`);

  // Reference: one connection, nothing queued, for the latency of a message on an idle milter.
  const single = SINGLE;
  const cpu1 = cpuSeconds(pid);
  const one = await memoryDuring(pid, () => load(listen, messages, single, 1));
  const oneCpu = cpuSeconds(pid) - cpu1;

  // One big message: a 50 MB body, really signed, on its own connection.
  const bigBody = textBody(99, BIG_MB * 1024 * 1024);
  const big = prepare(await sign(rawMessage(99, bigBody), DOMAIN, 's1', key));
  const bigMem = await memoryDuring(pid, async () => {
    const c = await openClient(listen);
    try {
      return await send(c, big.spec, 'QBIG');
    } finally {
      await c.quit();
    }
  });

  const ms = (s: number) => s * 1000;
  const checkRows: Array<Array<string | number>> = [];
  const checks = [...new Set(after.filter((s) => s.name === 'ceerion_milter_check_seconds_count').map((s) => s.labels.check!))];
  for (const check of checks) {
    const h = histogram(before, after, 'ceerion_milter_check_seconds', { check });
    if (h.count === 0) continue;
    checkRows.push([`check "${check}" (milter)`, h.count, h.count / TOTAL, ms(h.sum / h.count), showQuantile(h, 0.5), showQuantile(h, 0.99)]);
  }
  const eomH = histogram(before, after, 'ceerion_milter_end_of_message_seconds');
  checkRows.push(['end of message, all checks (milter)', eomH.count, eomH.count / TOTAL, ms(eomH.sum / eomH.count), showQuantile(eomH, 0.5), showQuantile(eomH, 0.99)]);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  checkRows.push(['end of message → verdict (client)', r.eoms.length, 1, mean(r.eoms), percentile(r.eoms, 50), percentile(r.eoms, 99)]);
  checkRows.push(['MAIL → verdict (client)', r.totals.length, 1, mean(r.totals), percentile(r.totals, 50), percentile(r.totals, 99)]);

  const bytes = messages[0]!.bytes;
  out += `\nInbound authentication under load: ceerion milter (own process, TCP), auth on (SPF, DKIM, ARC, DMARC) + trace header,\n`;
  out += `DNS from a private dnsmasq (cache warm); ${TOTAL} signed messages (${messages[0]!.spec.headers.length} header fields, ${(bytes / 1024).toFixed(1)} KB), ${CONNECTIONS} connections; ${os.cpus().length} cores\n\n`;
  const under200 = (m: { hwmMb: number; polledPeakMb: number }) => (Math.max(m.hwmMb || 0, m.polledPeakMb) < 200 ? 'yes' : 'NO');
  out += `${table(['connections', 'messages', 'msg/s', 'p50 ms', 'p99 ms', 'milter CPU ms/msg', 'RSS before MB', 'peak RSS MB (VmHWM)', 'peak RSS MB (polled)', 'RSS < 200 MB'], [
    [CONNECTIONS, TOTAL, r.rate, percentile(r.totals, 50), percentile(r.totals, 99), (cpu * 1000) / TOTAL, mem.startMb, mem.hwmMb, mem.polledPeakMb, under200(mem)],
    [1, single, one.result.rate, percentile(one.result.totals, 50), percentile(one.result.totals, 99), (oneCpu * 1000) / single, one.startMb, one.hwmMb, one.polledPeakMb, '-'],
  ])}\n`;
  out += `p50/p99: MAIL → verdict at the client. With ${CONNECTIONS} connections the milter's one thread is saturated, so that is mostly queueing\n`;
  out += `(messages in flight / throughput); the 1-connection row is the latency of a message on an idle milter.\n\n`;
  out += `Per check, ${CONNECTIONS} connections:\n`;
  out += `${table(['latency', 'observations', 'per message', 'mean ms', 'p50 ms', 'p99 ms'], checkRows)}\n\n`;
  out += `Milter rows: mean = histogram sum / count (exact); p50/p99 interpolated within the histogram bucket shown in brackets (ms),\n`;
  out += `which is all the milter's buckets tell (check: 0.5, 1, 5, 10, 50 ms …; end of message: 0.5, 1, 2.5, 5, 10, 25 ms …).\n`;
  out += `A check is timed per call: the auth check is called once per body chunk and once at end of message, so its observations mix both.\n\n`;
  out += `${table(['one message', 'size MB', 'verdict', 'results', 'end of message → verdict ms', 'MAIL → verdict ms', 'RSS before MB', 'peak RSS MB (VmHWM)', 'peak RSS MB (polled)'], [
    [
      'big signed message',
      big.bytes / 1024 / 1024,
      bigMem.result.verdict,
      (bigMem.result.results ?? '').match(/\b(spf|dkim|dmarc)=\w+/g)?.join(' ') ?? '?',
      bigMem.result.eom,
      bigMem.result.total,
      bigMem.startMb,
      bigMem.hwmMb,
      bigMem.polledPeakMb,
    ],
  ])}\n\n`;
  out += `Halfway through the load (the milter's own /metrics, MB): RSS ${gauge('ceerion_process_resident_memory_bytes').toFixed(0)}, V8 heap ${gauge('ceerion_nodejs_heap_size_total_bytes').toFixed(0)} (used ${gauge('ceerion_nodejs_heap_size_used_bytes').toFixed(0)}; new space ${gauge('ceerion_nodejs_heap_space_size_total_bytes', { space: 'new' }).toFixed(0)}, old space ${gauge('ceerion_nodejs_heap_space_size_total_bytes', { space: 'old' }).toFixed(0)} of which used ${gauge('ceerion_nodejs_heap_space_size_used_bytes', { space: 'old' }).toFixed(0)}), external ${gauge('ceerion_nodejs_external_memory_bytes').toFixed(0)}.\n`;
  out += `\nRSS after start and warm-up: ${idleMb.toFixed(1)} MB. Sample result: ${r.sample?.replace(/\s+/g, ' ')}\n`;
} finally {
  await milter.stop();
  await dns.stop();
}
console.log(out);
