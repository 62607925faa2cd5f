/**
 * `ceerion policyd` with `policyd.workers: 2`, as its own process against a private Redis: both
 * workers answer on the one listener, /metrics merges them, a killed worker is replaced, and
 * SIGTERM drains everything (a unix socket is removed). Plus the pure helpers of policyd/cluster.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { PolicyClient } from '../../policyd/client.ts';
import { workerCount, workerExecArgv } from '../../policyd/cluster.ts';
import { freePort } from '../harness/postfix.ts';
import { startPolicydProcess, type PolicydProcess } from '../harness/policyd-process.ts';
import { startRedis, type PrivateRedis } from '../harness/redis.ts';

let redis: PrivateRedis;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.close();
});

const env = () => ({
  CEERION_REDIS_URL: redis.url,
  CEERION_REDIS_KEY_PREFIX: `cluster-${process.pid}-${Date.now()}:`,
  CEERION_POLICYD_DOMAIN_POLICY: 'false',
  CEERION_POLICYD_WORKERS: '2',
});

const request = (i: number) => ({
  request: 'smtpd_access_policy',
  protocol_state: 'RCPT',
  client_address: `192.0.2.${i}`,
  sender: `s${i}@example.net`,
  recipient: `r${i}@example.org`,
  instance: `inst.${i}`,
});

/** The primary's children: its worker processes. */
function children(pid: number): number[] {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return text ? text.split(/\s+/).map(Number) : [];
}

async function metrics(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

/** A sample's value, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function answerAll(address: string, from: number, n: number): Promise<string[]> {
  const clients = await Promise.all(Array.from({ length: n }, () => PolicyClient.connect(address)));
  try {
    return await Promise.all(clients.map((c, i) => c.request(request(from + i))));
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

test('workerCount: 0 means one per core, at most 4; a set number is kept', () => {
  assert.equal(workerCount(0, 1), 1);
  assert.equal(workerCount(0, 2), 2);
  assert.equal(workerCount(0, 16), 4);
  assert.equal(workerCount(3, 16), 3);
  assert.equal(workerCount(1, 8), 1);
});

test("workerExecArgv: the primary's flags, with a 16 MB young generation instead of any other", () => {
  assert.deepEqual(workerExecArgv(['--max-semi-space-size=2', '--cpu-prof']), ['--cpu-prof', '--max-semi-space-size=16']);
  assert.deepEqual(workerExecArgv([]), ['--max-semi-space-size=16']);
});

test('two workers answer on one listener; /metrics merges them; a killed worker is replaced', async (t) => {
  const metricsPort = await freePort();
  const policyd = await startPolicydProcess({ env: env(), metricsPort });
  t.after(() => policyd.stop('SIGKILL'));
  const workers = await until('two workers', () => (children(policyd.pid).length === 2 ? children(policyd.pid) : undefined));

  assert.deepEqual(await answerAll(policyd.address, 0, 8), Array(8).fill('DUNNO'));
  const m = await until('merged metrics', async () => {
    // The primary serves /metrics once every worker is up, a little after the first one listens.
    const text = await metrics(metricsPort).catch(() => '');
    return sample(text, 'ceerion_policyd_decisions_total{stage="RCPT",result="allowed"}') === 8 ? text : undefined;
  });
  assert.equal(sample(m, 'ceerion_policyd_workers'), 2);
  // Round-robin spread the connections: each worker answered some (its own count, per process).
  const perWorker = await Promise.all(workers.map((pid) => cpuSeconds(pid)));
  assert.ok(perWorker.every((s) => s > 0), `CPU per worker: ${perWorker}`);

  process.kill(workers[0]!, 'SIGKILL');
  const replaced = await until('a replacement worker', () => {
    const now = children(policyd.pid);
    return now.length === 2 && !now.includes(workers[0]!) ? now : undefined;
  });
  assert.ok(replaced.includes(workers[1]!), 'the other worker kept running');
  assert.equal(sample(await metrics(metricsPort), 'ceerion_policyd_worker_restarts_total'), 1);
  assert.deepEqual(await answerAll(policyd.address, 100, 8), Array(8).fill('DUNNO'));
  assert.match(policyd.output(), /policyd worker died; starting a new one/);
});

/** Alive and not a zombie. */
function running(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** CPU seconds a process has used (utime + stime). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

test('on a unix socket: both workers serve it; SIGTERM stops every process and removes the socket', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-policyd-cluster-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const socket = path.join(dir, 'policyd.sock');
  let policyd: PolicydProcess | undefined = await startPolicydProcess({ env: env(), listen: `unix:${socket}` });
  t.after(() => policyd?.stop('SIGKILL'));
  const workers = await until('two workers', () => (children(policyd!.pid).length === 2 ? children(policyd!.pid) : undefined));
  assert.deepEqual(await answerAll(`unix:${socket}`, 200, 6), Array(6).fill('DUNNO'));

  const code = await policyd.stop('SIGTERM');
  policyd = undefined;
  assert.equal(code, 0);
  // Gone, or at most a zombie being reaped: no worker outlives the primary for long.
  await until('the workers to exit', () => (workers.some(running) ? undefined : true), 3_000);
  assert.equal(existsSync(socket), false, 'socket removed');
});

test('SIGTERM as soon as the first worker listens (others may still be starting): exit 0, nothing left behind', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-policyd-cluster-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const socket = path.join(dir, 'policyd.sock');
  const policyd = await startPolicydProcess({ env: { ...env(), CEERION_POLICYD_WORKERS: '4' }, listen: `unix:${socket}` });
  t.after(() => policyd.stop('SIGKILL'));
  const workers = children(policyd.pid);
  assert.equal(await policyd.stop('SIGTERM'), 0, policyd.output());
  await until('the workers to exit', () => (workers.some(running) ? undefined : true), 3_000);
  assert.equal(existsSync(socket), false, 'socket removed');
});
