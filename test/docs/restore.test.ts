/**
 * docs/runbooks/restore-from-backup.md, run for real: a backup of a generated installation in a
 * private s3rver, the runbook's drill (`ceerion backup list`, `pnpm backup:drill`), then its
 * restore into a new database and directories, compared row for row and file for file.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { SHARED_DATABASE_URL } from '../harness/postgres.ts';
import { backupEnv } from './backup-env.ts';
import { runbookBlocks, runOk, type Block } from './runbook.ts';

const RUNBOOK = 'restore-from-backup.md';

function files(root: string, dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(root, path.join(dir, e.name)) : [path.relative(root, path.join(dir, e.name))])).sort();
}

test('restore runbook: the drill passes, then restore brings back every row and every maildir file', { timeout: 170_000 }, async (t) => {
  const blocks = runbookBlocks(RUNBOOK);
  assert.equal(blocks.length, 2, 'drill, restore');
  const [drill, restore] = blocks as [Block, Block];
  const { bench, env } = await backupEnv(t);
  await runOk('(setup)', { line: 0, info: '', code: 'ceerion backup run' }, env);

  const drilled = await runOk(RUNBOOK, drill, env);
  assert.match(drilled.stdout, /drill PASSED/);
  assert.match(drilled.stdout, /\| ok /);

  const dbName = `ceerion_runbook_${randomBytes(4).toString('hex')}`;
  const url = SHARED_DATABASE_URL.replace(/\/[^/]*$/, `/${dbName}`);
  t.after(async () => {
    const admin = new pg.Client({ connectionString: SHARED_DATABASE_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  });
  const vars = { RESTORE_DB: url, RESTORE_MAILDIR: path.join(bench.dir, 'restored-vmail'), RESTORE_EXTRAS: path.join(bench.dir, 'restored-extras') };
  await runOk(RUNBOOK, restore, { ...env, ...vars });

  const restored = new pg.Client({ connectionString: url });
  await restored.connect();
  try {
    for (const table of ['accounts', 'indexed_messages', 'mail_events']) {
      const want = (await bench.query(`SELECT count(*)::int AS n FROM ${bench.schema}.${table}`)).rows[0]!.n as number;
      const got = (await restored.query(`SELECT count(*)::int AS n FROM ${bench.schema}.${table}`)).rows[0]!.n as number;
      assert.equal(got, want, table);
    }
    assert.equal((await restored.query(`SELECT count(*)::int AS n FROM ${bench.schema}.indexed_messages`)).rows[0]!.n, 300);
  } finally {
    await restored.end();
  }
  const original = files(bench.maildir);
  assert.equal(original.length, 12);
  assert.deepEqual(files(vars.RESTORE_MAILDIR), original);
  for (const f of original) assert.ok(readFileSync(path.join(vars.RESTORE_MAILDIR, f)).equals(readFileSync(path.join(bench.maildir, f))), f);
});
