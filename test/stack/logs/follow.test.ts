// The follower on real files (stack/logs/follow.ts) and `ceerion logs` as a real process: history
// with -n, appends merged in time order, rotation (rename + new file), truncation, a log file that
// appears later, an unfinished last line, and the filters end to end.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, mkdtemp, rename, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test, { type TestContext } from 'node:test';
import { followLogs } from '../../../stack/logs/follow.ts';
import type { TimedLine } from '../../../stack/logs/merge.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const pino = (time: number, msg: string, extra: Record<string, unknown> = {}) => `${JSON.stringify({ level: 30, time: new Date(time).toISOString(), msg, ...extra })}\n`;

async function tempLogDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-logs-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('history: last N lines per file, merged by time; an unfinished last line is printed with --no-follow', async (t) => {
  const dir = await tempLogDir(t);
  const t0 = Date.UTC(2026, 0, 1);
  await writeFile(path.join(dir, 'milter.log'), pino(t0 + 1000, 'm1') + pino(t0 + 3000, 'm3') + pino(t0 + 5000, 'm5'));
  await writeFile(path.join(dir, 'postgres.log'), '2026-01-01 00:00:00.500 UTC [1] LOG:  p0\n2026-01-01 00:00:04.000 UTC [1] LOG:  p4\nDETAIL:  p4 detail\n2026-01-01 00:00:06.000 UTC [1] LOG:  unfinished');
  await writeFile(path.join(dir, 'notes.txt'), 'not a log\n');
  const got: TimedLine[] = [];
  await followLogs({ dir, lines: 2, follow: false, onLines: (l) => got.push(...l) });
  assert.deepEqual(
    got.map((l) => `${l.service}:${l.json ? l.json.msg : l.raw.replace(/^.*(LOG|DETAIL):\s+/, '')}`),
    ['milter:m3', 'postgres:p4', 'postgres:p4 detail', 'milter:m5', 'postgres:unfinished'],
  );
  const all: TimedLine[] = [];
  await followLogs({ dir, lines: 1000, follow: false, services: new Set(['milter']), onLines: (l) => all.push(...l) });
  assert.deepEqual(all.map((l) => l.json?.msg), ['m1', 'm3', 'm5']);
});

test('follow: appends, rotation, truncation, a new file, a line written in two parts', async (t) => {
  const dir = await tempLogDir(t);
  const file = path.join(dir, 'policyd.log');
  await writeFile(file, pino(Date.now(), 'old'));
  const got: TimedLine[] = [];
  const abort = new AbortController();
  const done = followLogs({ dir, lines: 0, follow: true, pollMs: 50, signal: abort.signal, onLines: (l) => got.push(...l) });
  t.after(() => abort.abort());
  const msgs = () => got.map((l) => (l.json ? String(l.json.msg) : l.raw));
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(msgs(), [], '-n 0 shows no history');

  await appendFile(file, pino(Date.now(), 'a1'));
  await until('a1', () => msgs().includes('a1'));

  await appendFile(file, '{"level":30,"msg":"spl');
  await new Promise((r) => setTimeout(r, 150));
  assert.ok(!msgs().some((m) => m.includes('spl')), 'half a line waits for its end');
  await appendFile(file, 'it"}\n');
  await until('split', () => msgs().includes('split'));

  // logrotate's default: rename, then the service reopens a new file. Lines written to the old
  // file after our last poll must still come out.
  await appendFile(file, pino(Date.now(), 'before-rotate'));
  await rename(file, `${file}.1`);
  await writeFile(file, pino(Date.now(), 'after-rotate'));
  await until('after-rotate', () => msgs().includes('after-rotate'));
  assert.ok(msgs().includes('before-rotate'));

  // copytruncate: same inode, shorter file.
  await truncate(file, 0);
  await new Promise((r) => setTimeout(r, 150));
  await appendFile(file, pino(Date.now(), 'after-truncate'));
  await until('after-truncate', () => msgs().includes('after-truncate'));

  await writeFile(path.join(dir, 'postfix.log'), 'Jan  1 00:00:00 mail postfix/master[1]: daemon started\n');
  await until('the new file', () => got.some((l) => l.service === 'postfix'));
  abort.abort();
  await done;
  assert.deepEqual(
    msgs().filter((m) => !m.startsWith('Jan')),
    ['a1', 'split', 'before-rotate', 'after-rotate', 'after-truncate'],
    'each line exactly once, in order',
  );
});

/** Runs `ceerion logs` (commander + registerLogsCommand, as cli/main.ts will) in a child process. */
function runLogs(args: string[], opts: { killAfter?: (out: string) => boolean } = {}): Promise<{ code: number | null; out: string; err: string }> {
  const script = `import { Command } from 'commander'; import { registerLogsCommand } from './cli/logs.ts';
const p = new Command('ceerion'); registerLogsCommand(p); await p.parseAsync(process.argv.slice(process.argv.indexOf('logs')), { from: 'user' });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, '--', 'logs', ...args], { cwd: ROOT });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (opts.killAfter?.(out)) child.kill('SIGINT');
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

test('ceerion logs: pretty output, filters, usage errors, following until SIGINT', async (t) => {
  const varDir = await tempLogDir(t);
  const dir = path.join(varDir, 'log');
  await rm(dir, { recursive: true, force: true });
  await import('node:fs/promises').then((fs) => fs.mkdir(dir));
  const t0 = Date.now() - 60_000;
  await writeFile(path.join(dir, 'milter.log'), pino(t0, 'message verdict', { service: 'milter', qid: '4XyZ1QabcD' }) + `${JSON.stringify({ level: 50, time: t0 + 10, msg: 'broken', service: 'milter' })}\n`);
  await writeFile(path.join(dir, 'postfix.log'), 'Jan  1 00:00:00 mail ceerion-postfix/qmgr[1]: 4XyZ1QabcD: removed\nJan  1 00:00:01 mail ceerion-postfix/smtpd[2]: warning: something odd\n');

  const plain = await runLogs(['--var-dir', varDir, '--no-follow', '--no-color']);
  assert.equal(plain.code, 0, plain.err);
  assert.match(plain.out, /^postfix {4}.*\| Jan {2}1 00:00:00 .*4XyZ1QabcD: removed$/m);
  assert.match(plain.out, /^milter {5}.*\| \[[\d:.]+\] INFO: message verdict \{"qid":"4XyZ1QabcD"\}$/m);
  assert.match(plain.out, /ERROR: broken/);

  const byQueue = await runLogs(['--var-dir', varDir, '--no-follow', '--no-color', '--queue-id', '4XyZ1QabcD']);
  assert.deepEqual(byQueue.out.trim().split('\n').map((l) => l.split(' ')[0]), ['postfix', 'milter']);
  const warn = await runLogs(['--var-dir', varDir, '--no-follow', '--no-color', '--level', 'warn']);
  assert.equal(warn.out.trim().split('\n').length, 2);
  assert.match(warn.out, /warning: something odd/);
  assert.match(warn.out, /broken/);
  const onlyMilter = await runLogs(['--var-dir', varDir, '--no-follow', '--service', 'milter', '-n', '1']);
  assert.equal(onlyMilter.out.trim().split('\n').length, 1);
  const bad = await runLogs(['--var-dir', varDir, '--level', 'loud']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--level: "loud" is not one of/);

  const following = runLogs(['--var-dir', varDir, '-n', '0', '--no-color'], { killAfter: (out) => out.includes('late line') });
  // Appended until seen: under load the child may start following only after a first append
  // (with -n 0 it begins at the end of each file), which it would then never print.
  let seen = false;
  const appender = (async () => {
    while (!seen) {
      await new Promise((r) => setTimeout(r, 500));
      if (!seen) await appendFile(path.join(dir, 'milter.log'), pino(Date.now(), 'late line', { service: 'milter' }));
    }
  })();
  const f = await following;
  seen = true;
  await appender;
  assert.equal(f.code, 0, f.err);
  assert.match(f.out, /late line/);
  assert.doesNotMatch(f.out, /message verdict/);
});
