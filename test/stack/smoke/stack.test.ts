// Every smoke check against a real stack: `ceerion start` (private PostgreSQL, Redis, clamd,
// Dovecot, Postfix and our four services) in a temp var dir on free ports, the starter model
// trained into it, then the checks in-process (each must pass), `ceerion smoke` as a process (exit
// 0, the table), and the same checks against broken endpoints (each fails alone, with a reason).
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { configSchema } from '../../../core/config/schema.ts';
import { silentLogger } from '../../../core/log.ts';
import { CREDENTIALS_FILE, STATE_FILE, type StackCredentials, type StackState } from '../../../stack/contracts.ts';
import { newRunId, type SmokeContext } from '../../../stack/smoke/context.ts';
import { ALL_CHECKS, runChecks } from '../../../stack/smoke/runner.ts';
import { ensureStarterModel } from '../../../stack/starter-model.ts';
import { isolatedStackEnv } from '../../harness/stack-env.ts';
import { freePort } from '../../harness/postfix.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const BIN = path.join(ROOT, 'bin/ceerion.mjs');
let dir = '';
let varDir = '';
let env: NodeJS.ProcessEnv = {};
let start: ChildProcess | undefined;
let output = '';
let state: StackState;
let creds: StackCredentials;

const ctxFor = (s: StackState = state, stepTimeoutMs = 30_000): SmokeContext => ({ state: s, creds, runId: newRunId(), stepTimeoutMs, usedAddresses: new Set() });

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-smoke-stack-'));
  // Dovecot's and Postfix's unprivileged processes must reach the var dir.
  await chmod(dir, 0o755);
  varDir = path.join(dir, 'var');
  env = await isolatedStackEnv({ CEERION_STACK_VAR_DIR: varDir });
  start = spawn(process.execPath, [BIN, 'start'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  start.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  start.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const until = Date.now() + 90_000;
  for (;;) {
    const s = await readFile(STATE_FILE(varDir), 'utf8').then((t) => JSON.parse(t) as StackState, () => undefined);
    if (s?.ready) {
      state = s;
      break;
    }
    if (start.exitCode !== null || Date.now() > until) throw new Error(`the stack did not become ready:\n${output}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  creds = JSON.parse(await readFile(CREDENTIALS_FILE(varDir), 'utf8')) as StackCredentials;
  const config = configSchema.parse({ database: { url: state.endpoints.databaseUrl, schema: state.endpoints.databaseSchema } });
  // A smaller corpus than the real starter model's (the whole corpus takes 15 s alone, more on a
  // busy machine): the spam check picks its sample by the model's own scores, so any model works.
  // The supervisor may start one in the background too; whoever comes second finds it 'present'.
  const outcome = await ensureStarterModel(config, silentLogger, { limitPerGroup: 300 });
  assert.ok(outcome === 'trained' || outcome === 'present', outcome);
  // The milters load it on the NOTIFY (or their 2 s poll).
  await new Promise((r) => setTimeout(r, 3000));
});

after(async () => {
  if (start && start.exitCode === null) {
    spawnSync(process.execPath, [BIN, 'stop'], { cwd: dir, env, timeout: 60_000 });
    const exited = new Promise((r) => start!.once('exit', r));
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    if (start.exitCode === null) start.kill('SIGKILL');
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
});

test('every check passes against a running stack', async () => {
  const results = await runChecks(ctxFor());
  for (const r of results) process.stderr.write(`# ${r.id} ${Math.round(r.ms)} ms: ${r.detail}\n`);
  const failed = results.filter((r) => !r.ok).map((r) => `${r.id}: ${r.detail}`);
  assert.deepEqual(failed, [], failed.join('\n'));
  const byId = Object.fromEntries(results.map((r) => [r.id, r.detail]));
  assert.match(byId.submit!, new RegExp(`DKIM-Signature d=${state.domain} s=${creds.dkimSelector}`));
  assert.match(byId.receive!, /spf=/);
  assert.match(byId.spam!, /filed into Junk/);
  assert.match(byId.eicar!, /^5\d\d /);
  assert.match(byId.rate!, /100 accepted .* then 4\d\d .*Rate limit exceeded/);
  assert.match(byId.events!, /new event seq \d+/);
});

test('ceerion smoke as a process: the table, exit 0; a second run right after passes too (fresh addresses)', async () => {
  const script = `import { Command } from 'commander'; import { registerSmokeCommand } from './cli/smoke.ts';
const p = new Command('ceerion'); registerSmokeCommand(p); await p.parseAsync(process.argv.slice(process.argv.indexOf('smoke')), { from: 'user' });`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, '--', 'smoke', '--var-dir', varDir], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /\| # +\| check +\| result +\| time +\| detail/);
  assert.equal((r.stdout.match(/\| pass +\|/g) ?? []).length, ALL_CHECKS.length);
  assert.match(r.stdout, /all 8 checks passed/);
  const gone = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, '--', 'smoke', '--var-dir', path.join(dir, 'nothing')], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(gone.status, 2);
  assert.match(gone.stderr, /is the stack running/);
});

test('broken endpoints: each check fails alone, with a reason', async () => {
  const closed = await freePort();
  const broken: StackState = {
    ...state,
    endpoints: { ...state.endpoints, submission: { host: '127.0.0.1', port: closed }, api: `http://127.0.0.1:${closed}` },
  };
  // Short steps: the search and events checks wait out one step against the closed port.
  const results = await runChecks(ctxFor(broken, 5_000), { checkTimeoutMs: 60_000 });
  const byId = Object.fromEntries(results.map((r) => [r.id, r]));
  assert.equal(byId.submit!.ok, false);
  assert.match(byId.submit!.detail, /ECONNREFUSED/);
  assert.equal(byId.search!.ok, false);
  assert.equal(byId.events!.ok, false);
  // The inbound side is untouched: those checks still pass, and IMAP reads what did arrive.
  for (const id of ['receive', 'spam', 'eicar', 'rate', 'imap']) assert.equal(byId[id]!.ok, true, `${id}: ${byId[id]!.detail}`);
  assert.match(byId.imap!.detail, /skipped submit \(not sent\)/);
});
