// The issue's round trip: 100k messages' metadata and a 2,000-file maildir are backed up to
// s3rver, the drill passes, and a real restore gives back equal row counts and equal file hashes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { runBackup } from '../../backup/run.ts';
import { runDrill } from '../../backup/drill/drill.ts';
import { formatDrillReport } from '../../backup/drill/report.ts';
import { restoreBackup } from '../../backup/restore.ts';
import { withDatabase } from '../../backup/drill/scratch-db.ts';
import { SHARED_DATABASE_URL } from '../harness/postgres.ts';
import { startBench } from './fixture.ts';

async function hashTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string) => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.set(path.relative(root, p), createHash('sha256').update(await readFile(p)).digest('hex'));
    }
  };
  await walk(root);
  return out;
}

async function dropDatabase(name: string): Promise<void> {
  const c = new pg.Client({ connectionString: SHARED_DATABASE_URL });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await c.end();
}

test('100k messages + 2,000 maildir files: backup, drill, restore', { timeout: 170_000 }, async (t) => {
  const bench = await startBench(t, { messages: 100_000, maildirFiles: 2_000 });
  const deps = bench.deps();
  const { manifest } = await runBackup(bench.config, deps);

  assert.equal(manifest.database.rowCounts.indexed_messages, 100_000);
  assert.equal(manifest.database.rowCounts.mail_events, 10_000);
  assert.equal(manifest.maildir?.files, 2_000);
  assert.equal(manifest.maildir?.sample.length, 50);
  assert.deepEqual(manifest.objects.map((o) => o.kind), ['database', 'maildir']);
  assert.equal(manifest.key.provider, 'local');

  // What is in the bucket is ciphertext: no subject or file content survives in it.
  for (const obj of manifest.objects) {
    const chunks: Buffer[] = [];
    for await (const c of await bench.store.get(obj.key)) chunks.push(c as Buffer);
    const stored = Buffer.concat(chunks);
    assert.equal(stored.length, obj.size);
    assert.equal(stored.indexOf('Subject 4242'), -1, `${obj.name} holds plaintext`);
    assert.equal(stored.indexOf('From: a@example.org'), -1, `${obj.name} holds plaintext`);
  }

  const report = await runDrill(bench.config, deps);
  const text = formatDrillReport(report);
  assert.equal(report.ok, true, text);
  const drill = report.drills[0]!;
  assert.equal(drill.backupId, manifest.id);
  const byCheck = new Map(drill.checks.map((c) => [c.check, c]));
  for (const c of ['manifest', 'ciphertext-hash', 'plaintext-hash', 'archive-list', 'restore', 'row-counts', 'migrations', 'newest-message', 'foreign-keys', 'maildir-sample', 'rpo', 'rto'] as const) {
    assert.equal(byCheck.get(c)?.ok, true, `${c}: ${byCheck.get(c)?.detail}`);
  }
  assert.match(byCheck.get('maildir-sample')!.detail, /50 of 2000 files/);
  for (const p of ['manifest', 'download', 'decrypt', 'restore', 'verify'] as const) assert.equal(typeof drill.phasesMs[p], 'number');
  assert.ok(report.rpoHours !== null && report.rpoHours < 1);
  assert.match(text, /RPO .* RTO .* drill PASSED/);

  // No scratch database is left behind.
  const left = await bench.query<{ n: string }>(`SELECT count(*) AS n FROM pg_database WHERE datname LIKE 'ceerion_drill_%${manifest.id.toLowerCase().replace(/[^a-z0-9]/g, '_')}%'`);
  assert.equal(Number(left.rows[0]!.n), 0);

  // A real restore: every row count and every file hash equal.
  const dbName = `ceerion_restore_${bench.schema}`;
  t.after(() => dropDatabase(dbName));
  const restoredMaildir = path.join(bench.dir, 'restored-vmail');
  await restoreBackup(bench.config, deps, { database: withDatabase(SHARED_DATABASE_URL, dbName), maildirDir: restoredMaildir });
  const c = new pg.Client({ connectionString: withDatabase(SHARED_DATABASE_URL, dbName) });
  await c.connect();
  try {
    for (const [table, n] of Object.entries(manifest.database.rowCounts)) {
      const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${bench.schema}.${table}`);
      assert.equal(Number(r.rows[0]!.n), n, table);
    }
    const sum = await c.query<{ s: string }>(`SELECT md5(string_agg(encode(content_sha256, 'hex'), ',' ORDER BY id)) AS s FROM ${bench.schema}.indexed_messages`);
    const orig = await bench.query<{ s: string }>(`SELECT md5(string_agg(encode(content_sha256, 'hex'), ',' ORDER BY id)) AS s FROM indexed_messages`);
    assert.equal(sum.rows[0]!.s, orig.rows[0]!.s);
  } finally {
    await c.end();
  }
  const before = await hashTree(bench.maildir);
  const after = await hashTree(restoredMaildir);
  assert.equal(after.size, 2_000);
  assert.deepEqual(after, before);

  // Restoring over a database that already holds the schema is refused.
  await assert.rejects(restoreBackup(bench.config, deps, { database: withDatabase(SHARED_DATABASE_URL, dbName) }), /already has a schema/);
});
