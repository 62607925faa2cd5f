// `ceerion postfix-queue-metrics` as a process: serves the queue gauges and the process metrics on
// the given port, warns (does not die) about a queue it cannot read, and stops cleanly on SIGTERM.
// cli/main.ts registers the command; here a bare program registers it the same way.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { freePort } from '../harness/postfix.ts';
import { ROOT } from '../harness/milter-process.ts';

const PROGRAM = `
import { Command } from 'commander';
import { registerPostfixQueueCommand } from ${JSON.stringify(path.join(ROOT, 'cli/postfix-queue.ts'))};
const program = new Command('ceerion');
registerPostfixQueueCommand(program);
await program.parseAsync(process.argv.slice(1), { from: 'user' });
`;

test('serves ceerion_postfix_queue_* for a queue directory and stops on SIGTERM', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-pfq-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const q of ['incoming', 'deferred/F', 'hold']) await mkdir(path.join(dir, q), { recursive: true });
  await writeFile(path.join(dir, 'hold', 'ABCDEF1234'), 'x');
  await writeFile(path.join(dir, 'deferred', 'F', 'F12345678'), 'x');
  await writeFile(path.join(dir, 'deferred', 'F', 'F12345679'), 'x');
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', PROGRAM, 'postfix-queue-metrics', '--queue-dir', dir, '--metrics-port', String(port)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, CEERION_LOG_LEVEL: 'info' },
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let text = '';
  const deadline = Date.now() + 30_000;
  while (!/ceerion_postfix_queue_messages\{/.test(text)) {
    assert.equal(child.exitCode, null, `exited early:\n${out}`);
    assert.ok(Date.now() < deadline, `no metrics within 30 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 200));
    text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '');
  }
  assert.match(text, /^ceerion_postfix_queue_messages\{queue="hold"\} 1$/m);
  assert.match(text, /^ceerion_postfix_queue_messages\{queue="deferred"\} 2$/m);
  assert.match(text, /^ceerion_postfix_queue_messages\{queue="incoming"\} 0$/m);
  assert.doesNotMatch(text, /queue="active"/);
  assert.match(text, /^ceerion_process_resident_memory_bytes \d+/m);
  // The missing active queue is a logged warning naming it.
  assert.match(out, /"queue":"active".*cannot read the queue directory/);
  child.kill('SIGTERM');
  assert.equal(await exited, 0, out);
});

test('refuses to start without a metrics port to serve on', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', PROGRAM, 'postfix-queue-metrics', '--metrics-port', '0'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  assert.equal(code, 2);
  assert.match(err, /metrics are disabled/);
});
