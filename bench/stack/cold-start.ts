/**
 * Cold start of `pnpm mail:start`: time from spawning the command to every health check green
 * (the state file's `ready`), natively, with the whole stack (private PostgreSQL, Redis, clamd,
 * Dovecot, Postfix and our four services). "first" starts from an empty var dir (initdb, DKIM
 * keygen, migrations, the test account); "again" restarts on the data the first run left.
 *
 *   node --import tsx bench/stack/cold-start.ts [runs=3]
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { table } from '../../core/text-table.ts';
import type { StackState } from '../../stack/contracts.ts';
import { isolatedStackEnv } from '../../test/harness/stack-env.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/ceerion.mjs');
const runs = Number(process.argv[2] ?? 3);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function once(varDir: string): Promise<{ total: number; supervisor: number; services: number }> {
  const env = await isolatedStackEnv({ CEERION_STACK_VAR_DIR: varDir });
  const t0 = performance.now();
  const child = spawn(process.execPath, ['--max-semi-space-size=2', BIN, 'start'], { env, stdio: 'ignore' });
  let state: StackState | undefined;
  for (;;) {
    try {
      state = JSON.parse(await readFile(path.join(varDir, 'run/stack.json'), 'utf8')) as StackState;
    } catch {
      state = undefined;
    }
    // The state file a previous run left says ready too: only this supervisor's counts.
    if (state?.ready && state.supervisorPid === child.pid) break;
    if (child.exitCode !== null) throw new Error(`start exited with ${child.exitCode}; see ${varDir}/log`);
    await sleep(20);
  }
  const total = performance.now() - t0;
  const stop = spawnSync(process.execPath, [BIN, 'stop'], { env, encoding: 'utf8' });
  if (stop.status !== 0) throw new Error(stop.stderr);
  await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('close', r)));
  // readyMs counts from the supervisor's own start: the rest is node + tsx loading the CLI.
  return { total, supervisor: state.readyMs ?? 0, services: state.services.length };
}

const rows: string[][] = [];
const samples: Record<string, number[]> = { first: [], again: [] };
for (let i = 0; i < runs; i++) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-coldstart-'));
  await chmod(dir, 0o755);
  const varDir = path.join(dir, 'var');
  try {
    for (const kind of ['first', 'again'] as const) {
      const r = await once(varDir);
      samples[kind]!.push(r.total);
      rows.push([String(i + 1), kind, String(r.services), (r.total / 1000).toFixed(2), (r.supervisor / 1000).toFixed(2)]);
    }
  } catch (err) {
    process.stderr.write(`kept ${dir} for a look\n`);
    throw err;
  }
  await rm(dir, { recursive: true, force: true });
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
process.stdout.write(table(['run', 'start', 'services', 'spawn → all healthy (s)', 'supervisor → ready (s)'], rows) + '\n');
process.stdout.write(`median: first start ${(median(samples.first!) / 1000).toFixed(2)} s, restart ${(median(samples.again!) / 1000).toFixed(2)} s (target < 15 s)\n`);
