/**
 * The supervisor with real child processes: small node programs that listen on a port (healthy
 * once listening), crash on request, or ignore SIGTERM.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../../core/log.ts';
import { tcpCheck } from '../../stack/health.ts';
import { StackStartError, Supervisor, type ServiceSpec } from '../../stack/supervisor.ts';
import { freePort } from '../harness/postfix.ts';

const timing = { restart: { initialDelayMs: 100, maxDelayMs: 400, resetAfterMs: 60_000 }, readyTimeoutMs: 10_000, healthIntervalMs: 200, stopTimeoutMs: 3_000 };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A node program listening on `port`; `extra` runs after it listens. */
function program(port: number, extra = ''): string {
  return `const s=require('net').createServer(c=>c.end()).listen(${port},'127.0.0.1',()=>{console.log('up '+process.pid);${extra}});`;
}

async function spec(dir: string, name: ServiceSpec['name'], stage: number, code: string, port: number): Promise<ServiceSpec> {
  return { name, kind: 'suite', stage, command: process.execPath, args: ['-e', code], logFile: path.join(dir, `${name}.log`), health: tcpCheck(`inet:127.0.0.1:${port}`) };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-sup-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('stages start in order, the hook runs between them, and stop goes in reverse order', () =>
  withDir(async (dir) => {
    const [p1, p2] = [await freePort(), await freePort()];
    const events: string[] = [];
    const first = await spec(dir, 'redis', 0, program(p1, "process.on('SIGTERM',()=>{console.log('term');process.exit(0)})"), p1);
    const second = await spec(dir, 'milter', 2, program(p2, "process.on('SIGTERM',()=>{console.log('term');process.exit(0)})"), p2);
    const order: string[] = [];
    // onChange runs synchronously on every state change, so the stop order is recorded exactly.
    const sup: Supervisor = new Supervisor([second, first], {
      log: silentLogger,
      timing,
      onChange: () => {
        for (const s of sup.statuses()) if (s.state === 'stopped' && started.has(s.name) && !order.includes(s.name)) order.push(s.name);
      },
    });
    const started = new Set<string>();
    await sup.start(async (stage) => {
      events.push(`hook ${stage}: ${sup.statuses().map((s) => `${s.name}=${s.state}`).join(',')}`);
    });
    assert.deepEqual(events, ['hook 0: redis=healthy,milter=stopped', 'hook 2: redis=healthy,milter=healthy']);
    assert.ok(sup.statuses().every((s) => s.state === 'healthy' && s.pid));
    for (const s of sup.statuses()) started.add(s.name);
    await sup.stop();
    assert.deepEqual(order, ['milter', 'redis']);
    assert.match(await readFile(first.logFile, 'utf8'), /^up \d+\nterm\n$/);
  }));

test('a crashed service is restarted with a growing backoff, and logged', () =>
  withDir(async (dir) => {
    const port = await freePort();
    // Crashes 150 ms after each start: the backoff doubles 100 → 200 → 400 (the cap).
    const svc = await spec(dir, 'policyd', 0, program(port, 'setTimeout(()=>process.exit(3),150)'), port);
    const warnings: Array<Record<string, unknown>> = [];
    const log = Object.assign(Object.create(silentLogger), { warn: (o: Record<string, unknown>) => warnings.push(o) }) as typeof silentLogger;
    const sup = new Supervisor([svc], { log, timing });
    await sup.start();
    const deadline = Date.now() + 8_000;
    while (warnings.length < 4 && Date.now() < deadline) await sleep(20);
    await sup.stop();
    assert.ok(warnings.length >= 4, `restarts seen: ${warnings.length}`);
    assert.deepEqual(warnings.slice(0, 4).map((w) => w.restartInMs), [100, 200, 400, 400]);
    assert.equal(warnings[0]!.code, 3);
    assert.ok(sup.statuses()[0]!.restarts >= 4);
    assert.equal(sup.statuses()[0]!.lastExit?.code !== undefined, true);
    const ups = (await readFile(svc.logFile, 'utf8')).match(/^up /gm) ?? [];
    assert.ok(ups.length >= 4, `the log keeps every run's output: ${ups.length}`);
  }));

test('a service that never becomes healthy fails the start, naming it', () =>
  withDir(async (dir) => {
    const port = await freePort();
    const svc = { ...(await spec(dir, 'lmtp', 0, 'setInterval(()=>{},1000)', port)) };
    const sup = new Supervisor([svc], { log: silentLogger, timing: { ...timing, readyTimeoutMs: 800 } });
    await assert.rejects(sup.start(), (err: unknown) => err instanceof StackStartError && err.service === 'lmtp' && /within 800 ms/.test(err.message));
    await sup.stop();
    assert.equal(sup.statuses()[0]!.state, 'stopped');
  }));

test('a service that ignores SIGTERM is killed after stopTimeoutMs', () =>
  withDir(async (dir) => {
    const port = await freePort();
    const svc = await spec(dir, 'learner', 0, program(port, "process.on('SIGTERM',()=>console.log('ignored'))"), port);
    const sup = new Supervisor([svc], { log: silentLogger, timing: { ...timing, stopTimeoutMs: 500 } });
    await sup.start();
    const t0 = Date.now();
    await sup.stop();
    const took = Date.now() - t0;
    assert.ok(took >= 450, `stop waited ${took} ms`);
    assert.equal(sup.statuses()[0]!.lastExit?.signal, 'SIGKILL');
    assert.match(await readFile(svc.logFile, 'utf8'), /ignored/);
  }));
