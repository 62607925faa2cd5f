// Without zstd (or with codec: gzip) backups use gzip through zlib, and the drill reads them back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runBackup } from '../../backup/run.ts';
import { runDrill } from '../../backup/drill/drill.ts';
import { startBench } from './fixture.ts';

test('a gzip backup with extras restores in the drill', { timeout: 120_000 }, async (t) => {
  const bench = await startBench(t, { messages: 100, maildirFiles: 5 });
  const config = { ...bench.config, backup: { ...bench.config.backup, compression: { ...bench.config.backup.compression, codec: 'gzip' as const, level: 6 }, include: { ...bench.config.backup.include, extras: [bench.maildir] } } };
  const { manifest } = await runBackup(config, bench.deps());
  assert.deepEqual(manifest.objects.map((o) => [o.name, o.codec]), [['db.dump.gz', 'gzip'], ['maildir.tar.gz', 'gzip'], ['extras.tar.gz', 'gzip']]);
  assert.equal(manifest.extras?.files, 5);
  const report = await runDrill(config, bench.deps());
  assert.equal(report.ok, true, JSON.stringify(report.drills[0]!.checks.filter((c) => !c.ok)));
  assert.equal(report.drills[0]!.checks.filter((c) => c.check === 'maildir-sample').length, 2);
});
