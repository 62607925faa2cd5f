/**
 * docs/runbooks/backup-key-rotation.md, run for real against a private s3rver and a local keyring:
 * rotate, rewrap every backup, drill, retire the old version; and retire refused while a backup
 * still needs the old version.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { backupEnv } from './backup-env.ts';
import { runbookBlocks, runBlock, runOk, type Block } from './runbook.ts';

const RUNBOOK = 'backup-key-rotation.md';

test('backup key rotation runbook: rotate, rewrap, drill, retire version 1', { timeout: 170_000 }, async (t) => {
  const blocks = runbookBlocks(RUNBOOK);
  assert.equal(blocks.length, 3, 'rotate, rewrap + drill, retire');
  const [rotate, rewrap, retire] = blocks as [Block, Block, Block];
  const { bench, env } = await backupEnv(t);
  const vars = { ...env, OLD_VERSION: '1' };
  const backup = { line: 0, info: '', code: 'ceerion backup run --no-maildir --no-prune' };
  await runOk('(setup)', backup, env);
  await runOk('(setup)', backup, env);

  const rotated = await runOk(RUNBOOK, rotate, vars);
  assert.match(rotated.stdout, /\| 1 +\| \S+ +\| current/);
  assert.match(rotated.stdout, /version 2 is now current/);

  // Retiring before the rewrap is refused: two backups still use version 1.
  const early = await runBlock(retire, vars);
  assert.notEqual(early.code, 0);
  assert.match(early.stderr, /still wraps 2 backup\(s\).*rewrap/);

  const rewrapped = await runOk(RUNBOOK, rewrap, vars);
  assert.match(rewrapped.stdout, /rewrapped 2, already current 0, failed 0/);
  assert.match(rewrapped.stdout, /drill PASSED/);

  const retired = await runOk(RUNBOOK, retire, vars);
  assert.match(retired.stdout, /\| 1 +\| \S+ +\| retired/);
  assert.match(retired.stdout, /\| 2 +\| \S+ +\| current/);
  // Version 1's material is gone from the keyring file itself.
  const keyring = JSON.parse(readFileSync(bench.config.backup.keys.local.keyring, 'utf8')) as { keys: Array<{ version: number; key?: string }> };
  assert.equal(keyring.keys.find((k) => k.version === 1)?.key, undefined);
  // And every backup still restores under version 2.
  const again = await runOk('(check)', { line: 0, info: '', code: 'pnpm backup:drill' }, env);
  assert.match(again.stdout, /drill PASSED/);
});
