// Retention against a bucket: 40 simulated days of nightly backups (injected clock, real pg_dump,
// the in-process store) plus a run that died half-way and a backup whose manifest was tampered
// with. Prune keeps exactly the policy's set, removes the dead run, leaves the tampered one.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runBackup } from '../../backup/run.ts';
import { pruneBackups } from '../../backup/prune.ts';
import { listBackups } from '../../backup/catalog.ts';
import { MemoryStore } from '../../backup/storage/index.ts';
import { silentLogger } from '../../core/log.ts';
import { startBench } from './fixture.ts';

const DAY = 86_400_000;

test('a simulated 40 days of nightly backups, pruned 7 daily / 4 weekly / 6 monthly', { timeout: 170_000 }, async (t) => {
  const bench = await startBench(t, { messages: 20 });
  const store = new MemoryStore({ pageSize: 7 });
  const keys = bench.keys();
  const deps = { store, keys, log: silentLogger };
  // Nightly at 02:00 UTC from Wed 2026-09-30 to Sun 2026-11-08.
  const first = Date.UTC(2026, 8, 30, 2, 0, 0);
  const byDay = new Map<string, string>();
  for (let d = 0; d < 40; d++) {
    const at = new Date(first + d * DAY);
    const { manifest } = await runBackup(bench.config, { ...deps, now: () => at });
    byDay.set(at.toISOString().slice(0, 10), manifest.id);
  }
  // A run that died before its manifest, and a tampered manifest.
  const prefix = bench.config.backup.s3.prefix;
  await store.put(`${prefix}20261108T030000Z-dead00/db.dump.zst`, Buffer.from('partial'));
  const tamperedId = byDay.get('2026-10-05')!;
  const mkey = `${prefix}${tamperedId}/manifest.json`;
  const m = JSON.parse(store.bytes(mkey)!.toString());
  m.host = 'elsewhere';
  await store.put(mkey, Buffer.from(JSON.stringify(m)));

  const dry = await pruneBackups(bench.config, { ...deps, now: () => new Date(Date.now() + 49 * 3_600_000) }, { dryRun: true });
  assert.equal((await listBackups(store, prefix)).length, 41, 'dry run removes nothing');

  const result = await pruneBackups(bench.config, { ...deps, now: () => new Date(Date.now() + 49 * 3_600_000) });
  assert.deepEqual(result, dry);
  // Daily: Nov 2–8. Weekly (ISO weeks, newest per week): Nov 8 (W45), Nov 1 (W44), Oct 25 (W43), Oct 18 (W42).
  // Monthly: Nov 8 (Nov), Oct 31 (Oct), Sep 30 (Sep).
  const expected = ['2026-11-02', '2026-11-03', '2026-11-04', '2026-11-05', '2026-11-06', '2026-11-07', '2026-11-08', '2026-11-01', '2026-10-25', '2026-10-18', '2026-10-31', '2026-09-30']
    .map((d) => byDay.get(d)!)
    .sort();
  assert.deepEqual(result.kept.map((k) => k.id).sort(), expected);
  assert.deepEqual(result.incompleteRemoved, ['20261108T030000Z-dead00']);
  assert.deepEqual(result.unverified.map((u) => u.id), [tamperedId]);
  assert.match(result.unverified[0]!.reason, /signature/);
  const left = (await listBackups(store, prefix)).map((b) => b.id).sort();
  assert.deepEqual(left, [...expected, tamperedId].sort());
  // Every kept backup is whole: the manifest and its objects.
  for (const b of await listBackups(store, prefix)) assert.ok(b.hasManifest && b.objects.length === 2, b.id);
  const reasons = new Map(result.kept.map((k) => [k.id, k.reasons.join(',')]));
  assert.match(reasons.get(byDay.get('2026-11-08')!)!, /daily.*weekly.*monthly|daily,weekly,monthly/);
});
