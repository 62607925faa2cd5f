/**
 * A newcomer's run, the way CI runs: a fresh clone in a clean temp dir, `pnpm install`, then
 * `pnpm mail:start` with no config file, and `pnpm mail:test` against it; then `pnpm mail:status`
 * and `pnpm mail:stop` from "another terminal".
 *
 * The only settings are ports (CEERION_* variables): other tests run in parallel on this machine,
 * and the defaults (8891, 10040, 2424, …) may be taken by them. Everything else is the default,
 * including the private PostgreSQL, Redis, clamd, Dovecot and Postfix in ./var of the clone.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { isolatedStackEnv } from '../harness/stack-env.ts';
import type { StackState } from '../../stack/contracts.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let dir = '';
let clone = '';
let env: NodeJS.ProcessEnv = {};
let start: ChildProcess | undefined;
let startOutput = '';

function pnpm(args: string[], timeoutMs = 170_000): { status: number | null; out: string } {
  const r = spawnSync('pnpm', args, { cwd: clone, env, encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

async function readState(): Promise<StackState | undefined> {
  try {
    return JSON.parse(await readFile(path.join(clone, 'var/run/stack.json'), 'utf8')) as StackState;
  } catch {
    return undefined;
  }
}

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-newcomer-'));
  // Dovecot's and Postfix's unprivileged processes must reach ./var inside the clone.
  await chmod(dir, 0o755);
  clone = path.join(dir, 'ceerion');
  const cloned = spawnSync('git', ['clone', '-q', ROOT, clone], { encoding: 'utf8' });
  assert.equal(cloned.status, 0, cloned.stderr);
  env = await isolatedStackEnv();
});

after(async () => {
  if (start && start.exitCode === null) {
    spawnSync('pnpm', ['mail:stop'], { cwd: clone, env, timeout: 120_000 });
    start.kill('SIGKILL');
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
});

test('pnpm install in a fresh clone', () => {
  const r = pnpm(['install', '--frozen-lockfile', '--prefer-offline']);
  assert.equal(r.status, 0, r.out);
});

test('pnpm mail:start comes up with no config file', async () => {
  start = spawn('pnpm', ['mail:start'], { cwd: clone, env, stdio: ['ignore', 'pipe', 'pipe'] });
  start.stdout!.on('data', (b: Buffer) => (startOutput += b.toString()));
  start.stderr!.on('data', (b: Buffer) => (startOutput += b.toString()));
  const deadline = Date.now() + 150_000;
  let state: StackState | undefined;
  while (Date.now() < deadline && start.exitCode === null) {
    state = await readState();
    if (state?.ready) break;
    await sleep(250);
  }
  assert.ok(state?.ready, `not ready:\n${startOutput}`);
  const names = state.services.map((s) => s.name).sort();
  assert.deepEqual(names, ['clamd', 'dovecot', 'learner', 'lmtp', 'milter', 'policyd', 'postfix', 'postgres', 'redis']);
  assert.ok(state.services.every((s) => s.state === 'healthy'), JSON.stringify(state.services));
  assert.match(startOutput, /CEERION is running/);
  assert.match(startOutput, /test account +test@ceerion\.test/);
  assert.equal(state.endpoints.smtp?.port, Number(env.CEERION_STACK_POSTFIX_SMTP_PORT));
  // The supervisor's metrics: every service up, and the private Postfix's queue.
  const metrics = await (await fetch(state.endpoints.metrics.supervisor!)).text();
  for (const name of names) assert.match(metrics, new RegExp(`^ceerion_stack_service_up\\{service="${name}"\\} 1$`, 'm'));
  assert.match(metrics, /^ceerion_postfix_queue_messages\{queue="deferred"\} \d+$/m);
});

test('pnpm mail:test passes against it, once the starter model is trained', async () => {
  // The supervisor trains the classifier's starter model in the background after readiness; until
  // it is active the milter keeps all mail in the inbox, and the spam → Junk check would fail.
  const deadline = Date.now() + 120_000;
  let state = await readState();
  while (state?.classifierModel === 'training' && Date.now() < deadline) {
    await sleep(500);
    state = await readState();
  }
  assert.ok(state?.classifierModel === 'trained' || state?.classifierModel === 'present', `starter model: ${state?.classifierModel}`);
  const r = pnpm(['mail:test'], 170_000);
  assert.equal(r.status, 0, `${r.out}\n--- start output ---\n${startOutput}`);
  const rows = r.out.split('\n').filter((l) => /^\| \d \|/.test(l));
  assert.equal(rows.length, 8, r.out);
  for (const [i, name] of ['DKIM-signed', 'A-R header', 'Junk', 'EICAR', '101st', 'IMAP read', 'search hit', 'WebSocket event'].entries()) {
    assert.ok(rows[i]!.includes(name) && /\| pass +\|/.test(rows[i]!), `check ${i + 1} (${name}): ${rows[i]}`);
  }
  assert.match(r.out, /all 8 checks passed/);
  assert.doesNotMatch(r.out, /\bFAIL\b/);
});

test('pnpm mail:status from another terminal, then pnpm mail:stop', async () => {
  const status = pnpm(['mail:status'], 30_000);
  assert.equal(status.status, 0, status.out);
  assert.match(status.out, /stack ready/);
  const stop = pnpm(['mail:stop'], 150_000);
  assert.equal(stop.status, 0, stop.out);
  const deadline = Date.now() + 10_000;
  while (start!.exitCode === null && Date.now() < deadline) await sleep(100);
  assert.equal(start!.exitCode, 0, startOutput);
  const state = await readState();
  assert.ok(state?.services.every((s) => s.state === 'stopped'), JSON.stringify(state?.services));
  const after = pnpm(['mail:status'], 30_000);
  assert.equal(after.status, 3);
  assert.match(after.out, /not running/);
});
