/**
 * Runs the runbooks' tested commands for real. A runbook marks each block the tests run with the
 * info string `sh runbook-test`. `runbookBlocks` returns those blocks in document order, and
 * `runBlock` runs one with `bash -euo pipefail`:
 * - the working directory is the checkout, like /opt/ceerion in the runbooks;
 * - `ceerion` is on PATH (node_modules/.bin, as the runbooks' convention says);
 * - the environment is the test's CEERION_* settings and runbook variables, and nothing from the
 *   parent's CEERION_* environment.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const RUNBOOKS = path.join(ROOT, 'docs/runbooks');

export interface Block {
  /** 1-based line of the opening fence, for messages. */
  line: number;
  info: string;
  code: string;
}

/** Every fenced block of a markdown file, with its info string. */
export function fencedBlocks(file: string): Block[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(indent));
    out.push({ line: i + 1, info: open[2]!.trim(), code: body.join('\n') });
    i = j;
  }
  return out;
}

/** The `sh runbook-test` blocks of docs/runbooks/NAME, in order. */
export function runbookBlocks(name: string): Block[] {
  return fencedBlocks(path.join(RUNBOOKS, name)).filter((b) => b.info === 'sh runbook-test');
}

export interface BlockRun {
  code: number;
  stdout: string;
  stderr: string;
}

export function runBlock(block: Block, env: Record<string, string>, timeoutMs = 120_000): Promise<BlockRun> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST'))) as Record<string, string>;
  const full = {
    ...base,
    PATH: `${path.join(ROOT, 'node_modules/.bin')}:${base.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin`,
    CEERION_LOG_LEVEL: 'warn',
    ...env,
  };
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-euo', 'pipefail', '-c', block.code], { cwd: ROOT, env: full, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** Run a block and require exit 0; the failure message names the runbook line and shows the output. */
export async function runOk(name: string, block: Block, env: Record<string, string>): Promise<BlockRun> {
  const r = await runBlock(block, env);
  assert.equal(r.code, 0, `${name}:${block.line} exited ${r.code}\n--- block\n${block.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r;
}
