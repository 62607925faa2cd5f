// The scheduler's metrics against real backups (s3rver, the shared PostgreSQL): runs, failures and
// drills are counted, the last success is the manifest's completion time, and a restarted
// `ceerion backup schedule` reads it back from the bucket instead of starting from nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { BackupMetrics, initFromCatalog, newestCompleteBackup } from '../../backup/metrics.ts';
import { runBackup } from '../../backup/run.ts';
import { runSchedule } from '../../backup/schedule.ts';
import { createObjectStore } from '../../backup/storage/index.ts';
import { silentLogger } from '../../core/log.ts';
import { createRegistry } from '../../core/metrics.ts';
import { freePort } from '../harness/postfix.ts';
import { ROOT } from '../harness/milter-process.ts';
import { startBench } from './fixture.ts';

/** The value of one sample in Prometheus text format; undefined when the series is absent. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${esc(name)}${labels ? esc(`{${labels}}`) : ''} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

test('runs, failures and drills are counted; the last success is the manifest time', async (t) => {
  const bench = await startBench(t, { messages: 50 });
  const registry = createRegistry(false);
  const metrics = new BackupMetrics(registry);
  // An empty bucket: nothing restorable is known, so the age is measured from 0.
  await initFromCatalog(metrics, bench.store, bench.config.backup.s3.prefix, silentLogger);
  assert.equal(sample(await registry.metrics(), 'ceerion_backup_last_success_timestamp_seconds'), 0);

  let clock = new Date('2026-11-22T12:00:00Z').getTime(); // a Sunday
  const stop = new AbortController();
  const manifests: Array<{ completedAt: string; bytes: number }> = [];
  let runs = 0;
  // The second night's bucket does not exist: a real S3 failure, not a thrown stand-in.
  const broken = createObjectStore({ ...bench.config.backup.s3, bucket: 'no-such-bucket' }, { log: silentLogger });
  await runSchedule(
    { at: '02:30', maildirDay: 'never', drillDay: 'tue' },
    {
      log: silentLogger,
      metrics,
      now: () => new Date(clock),
      sleep: async (ms) => {
        clock += ms;
      },
      backup: async () => {
        runs++;
        const store = runs === 2 ? broken : bench.store;
        const r = await runBackup(bench.config, { ...bench.deps(), store });
        const bytes = r.manifest.objects.reduce((a, o) => a + o.size, 0);
        manifests.push({ completedAt: r.manifest.completedAt, bytes });
        return { storedBytes: bytes, completedAt: new Date(r.manifest.completedAt) };
      },
      drill: async () => {
        stop.abort();
        return false;
      },
    },
    stop.signal,
  );
  assert.equal(runs, 2);
  const text = await registry.metrics();
  assert.equal(sample(text, 'ceerion_backup_runs_total', 'result="success"'), 1);
  assert.equal(sample(text, 'ceerion_backup_runs_total', 'result="failure"'), 1);
  assert.equal(sample(text, 'ceerion_backup_drills_total', 'result="failure"'), 1);
  assert.equal(sample(text, 'ceerion_backup_drills_total', 'result="success"'), 0);
  assert.equal(sample(text, 'ceerion_backup_duration_seconds_count'), 1);
  assert.equal(sample(text, 'ceerion_backup_last_success_timestamp_seconds'), Date.parse(manifests[0]!.completedAt) / 1000);
  assert.equal(sample(text, 'ceerion_backup_last_size_bytes'), manifests[0]!.bytes);
  // The failed run gave up on Tuesday 02:30 of the simulated calendar.
  assert.equal(sample(text, 'ceerion_backup_last_failure_timestamp_seconds'), Date.parse('2026-11-24T02:30:00Z') / 1000);
});

test('`ceerion backup schedule` serves /metrics with the last success read from the bucket', async (t) => {
  const bench = await startBench(t, { messages: 20 });
  await runBackup(bench.config, bench.deps());
  const newest = await newestCompleteBackup(bench.store, bench.config.backup.s3.prefix);
  assert.ok(newest);
  const port = await freePort();
  const s3 = bench.config.backup.s3;
  const child = spawn(
    process.execPath,
    [path.join(ROOT, 'bin/ceerion.mjs'), 'backup', 'schedule', '--at', '00:00', '--metrics-port', String(port), '--log-level', 'warn'],
    {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: bench.config.database.url,
        CEERION_DATABASE_SCHEMA: bench.schema,
        CEERION_BACKUP_S3_ENDPOINT: s3.endpoint,
        CEERION_BACKUP_S3_BUCKET: s3.bucket,
        CEERION_BACKUP_S3_ACCESS_KEY_ID: s3.accessKeyId,
        CEERION_BACKUP_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
        CEERION_BACKUP_KEYS_LOCAL_KEYRING: bench.config.backup.keys.local.keyring,
      },
    },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const deadline = Date.now() + 60_000;
  let text = '';
  for (;;) {
    assert.equal(child.exitCode, null, `the scheduler exited early:\n${stderr}`);
    text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '');
    if (sample(text, 'ceerion_backup_last_success_timestamp_seconds')) break;
    assert.ok(Date.now() < deadline, `no last success on /metrics within 60 s:\n${text}\n${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(sample(text, 'ceerion_backup_last_success_timestamp_seconds'), newest.completedAt.getTime() / 1000);
  assert.equal(sample(text, 'ceerion_backup_last_size_bytes'), newest.storedBytes);
  assert.equal(sample(text, 'ceerion_backup_runs_total', 'result="failure"'), 0);
  // The process metrics come along (prefix ceerion_), as from every other service.
  assert.ok(sample(text, 'ceerion_process_resident_memory_bytes'));
  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
});
