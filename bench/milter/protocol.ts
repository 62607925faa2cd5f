/**
 * Protocol-level milter benchmark: our MilterClient against `ceerion milter` (a separate process,
 * trace check only), over TCP and a unix socket, at 1, 8 and 64 concurrent connections.
 * Each message has 20 headers and a 10 KB body. Prints messages/s and p50/p99 per-message latency
 * (MAIL FROM to the end-of-message verdict). Target: at least 5,000 messages/s.
 *
 *   node --import tsx bench/milter/protocol.ts [--messages N]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LOCAL_CONNECT, MilterClient, type MessageSpec } from '../../milter/client/milter-client.ts';
import { spawn } from 'node:child_process';
import { canConnect } from '../../test/harness/milter-process.ts';
import { freePort, percentile, startMilterProcess, table } from '../lib/stats.ts';

const argv = process.argv.slice(2);
const TOTAL = Number(argv[argv.indexOf('--messages') + 1] || 0) || 20000;
const CONCURRENCY = [1, 8, 64];

function message(i: number): MessageSpec {
  const headers: Array<[string, string]> = [
    ['Received', `from client.example (client.example [192.0.2.10])\n\tby mx.test (Postfix) with ESMTP id Q${i}`],
    ['From', 'Alice Example <alice@example.com>'],
    ['To', 'Bob Example <bob@example.org>'],
    ['Subject', `Benchmark message ${i}`],
    ['Date', new Date(0).toUTCString()],
    ['Message-ID', `<bench-${i}@example.com>`],
    ['MIME-Version', '1.0'],
    ['Content-Type', 'text/plain; charset=utf-8'],
  ];
  for (let h = headers.length; h < 20; h++) headers.push([`X-Bench-${h}`, `value ${h} for message ${i}`]);
  return {
    from: '<alice@example.com>',
    rcpts: ['<bob@example.org>'],
    headers,
    body: BODY,
    macros: { mail: [['i', `Q${i}`]], eom: [['i', `Q${i}`]] },
  };
}
const BODY = Buffer.from(('Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(4) + '\r\n').repeat(44)).subarray(0, 10240);

async function run(address: string, connections: number, total: number) {
  let next = 0;
  const latencies: number[] = [];
  const clients = await Promise.all(Array.from({ length: connections }, () => MilterClient.connect(address)));
  for (const c of clients) {
    await c.negotiate();
    await c.connectStage(LOCAL_CONNECT, [['j', 'mx.test']]);
    await c.helo('client.example');
  }
  const started = performance.now();
  await Promise.all(
    clients.map(async (c) => {
      while (next < total) {
        const i = next++;
        const t0 = performance.now();
        const r = await c.message(message(i));
        if (r.verdict.kind !== 'accept') throw new Error(`unexpected verdict ${r.verdict.kind}`);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(clients.map((c) => c.quit()));
  latencies.sort((a, b) => a - b);
  return { rate: total / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/** A server that reads every stage: the trace check plus one check that reads everything. */
async function startReadsEverything(listen: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'reads-everything-server.ts'), listen], { stdio: 'inherit' });
  while (!(await canConnect(listen))) await new Promise((r) => setTimeout(r, 100));
  return { stop: () => new Promise<void>((r) => (child.once('exit', () => r()), child.kill('SIGTERM'))) };
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-bench-'));
const rows: Array<Array<string | number>> = [];
try {
  for (const setup of ['trace only', 'reads every stage'] as const) {
    const transports = [
      { name: 'tcp', listen: `inet:127.0.0.1:${await freePort()}` },
      { name: 'unix', listen: `unix:${path.join(dir, `milter-${rows.length}.sock`)}` },
    ];
    for (const t of transports) {
      const milter = setup === 'trace only' ? await startMilterProcess(t.listen) : await startReadsEverything(t.listen);
      try {
        await run(t.listen, 8, 2000); // warm-up: JIT, connection setup
        for (const n of CONCURRENCY) {
          const r = await run(t.listen, n, TOTAL);
          rows.push([setup, t.name, n, TOTAL, r.rate, r.p50, r.p99, r.rate >= 5000 ? 'yes' : 'NO']);
        }
      } finally {
        await milter.stop();
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`\nceerion milter, protocol level (20 headers, 10 KB body; ${os.cpus().length} cores)\n`);
console.log(table(['server', 'transport', 'connections', 'messages', 'msg/s', 'p50 ms', 'p99 ms', '>= 5000 msg/s'], rows));
console.log(
  '\n"trace only" is `ceerion milter` as shipped: it negotiates away the stages no check reads, so the client,' +
    '\nlike Postfix, sends only headers and end of message. "reads every stage" adds a check that reads connect,' +
    '\nHELO, envelope, headers and the body (in 64 KB chunks), as the authentication checks will.',
);
