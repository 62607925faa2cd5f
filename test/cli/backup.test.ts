/**
 * `ceerion backup …` as an operator (and the systemd units) run it: a child process against the
 * real PostgreSQL and a private s3rver, configured only through CEERION_* variables. Checks the
 * exit codes the scheduling depends on: 0 on success, 1 when a drill check fails or S3 is down,
 * 2 on a usage error.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { benchEnv, startBench } from '../backup/fixture.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function ceerion(args: string[], env: Record<string, string>): Promise<Run> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST')));
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [path.join(ROOT, 'bin/ceerion.mjs'), 'backup', ...args], { cwd: ROOT, env: { ...base, ...env }, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
  });
}

test('backup run / list / drill / prune / rotate-key / rewrap / keyring from the command line', { timeout: 170_000 }, async (t) => {
  const bench = await startBench(t, { messages: 200, maildirFiles: 12 });
  const env: Record<string, string> = { ...benchEnv(bench), CEERION_LOG_LEVEL: 'warn' };

  const run = await ceerion(['run'], env);
  assert.equal(run.code, 0, run.stderr);
  const id = /backup (\S+) complete/.exec(run.stdout)?.[1];
  assert.ok(id, run.stdout);
  assert.match(run.stdout, /db\.dump\.zst/);
  assert.match(run.stdout, /maildir\.tar\.zst/);
  assert.match(run.stdout, /retention: kept 1, removed 0/);

  const nightly = await ceerion(['run', '--no-maildir', '--no-prune'], env);
  assert.equal(nightly.code, 0, nightly.stderr);
  assert.doesNotMatch(nightly.stdout, /maildir/);

  const list = await ceerion(['list', '--json'], env);
  assert.equal(list.code, 0, list.stderr);
  const rows = JSON.parse(list.stdout) as Array<{ id: string; state: string; objects: string[] }>;
  assert.equal(rows.length, 2);
  assert.deepEqual(rows.map((r) => r.state), ['ok', 'ok']);
  assert.deepEqual(rows[0]!.objects, ['database', 'maildir']);

  const jsonFile = path.join(bench.dir, 'drill.json');
  const drill = await ceerion(['drill', '--json', jsonFile], env);
  assert.equal(drill.code, 0, drill.stdout + drill.stderr);
  assert.match(drill.stdout, /drill PASSED/);
  const report = JSON.parse(await readFile(jsonFile, 'utf8')) as { ok: boolean; rpoHours: number; drills: Array<{ backupId: string }> };
  assert.equal(report.ok, true);
  assert.equal(report.drills[0]!.backupId, rows[1]!.id);

  // The nightly backup (newest) without a maildir, drilled on purpose with an RTO target it cannot meet.
  const strict = await ceerion(['drill'], { ...env, CEERION_BACKUP_DRILL_RTO_MINUTES: '0.0001' });
  assert.equal(strict.code, 1, strict.stdout + strict.stderr);
  assert.match(strict.stdout, /\| rto +\| FAIL/);

  const rotate = await ceerion(['rotate-key'], env);
  assert.equal(rotate.code, 0, rotate.stderr);
  assert.match(rotate.stdout, /version 2 is now current/);
  const retireEarly = await ceerion(['keyring', 'retire', '1'], env);
  assert.equal(retireEarly.code, 1);
  assert.match(retireEarly.stderr, /still wraps 2 backup\(s\).*rewrap/);
  const rewrap = await ceerion(['rewrap'], env);
  assert.equal(rewrap.code, 0, rewrap.stderr);
  assert.match(rewrap.stdout, /rewrapped 2, already current 0, failed 0/);
  const retire = await ceerion(['keyring', 'retire', '1'], env);
  assert.equal(retire.code, 0, retire.stderr);
  const keyring = await ceerion(['keyring', 'list'], env);
  assert.match(keyring.stdout, /\| 1 +\| \S+ +\| retired/);
  assert.match(keyring.stdout, /\| 2 +\| \S+ +\| current/);
  assert.equal((await ceerion(['drill', '--backup', id], env)).code, 0);

  const prune = await ceerion(['prune', '--dry-run', '--keep-daily', '0', '--keep-weekly', '0', '--keep-monthly', '0'], env);
  assert.equal(prune.code, 0, prune.stderr);
  assert.match(prune.stdout, /would remove/);
  assert.equal(JSON.parse((await ceerion(['list', '--json'], env)).stdout).length, 2);

  const usage = await ceerion(['prune', '--keep-daily', 'seven'], env);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--keep-daily must be a whole number/);

  // S3 down: a non-zero exit and no manifest anywhere.
  const down = await ceerion(['run'], { ...env, CEERION_BACKUP_S3_ENDPOINT: 'http://127.0.0.1:9', CEERION_BACKUP_S3_MAX_ATTEMPTS: '1' });
  assert.equal(down.code, 1);
  assert.match(down.stderr, /ceerion backup run: /);
});
