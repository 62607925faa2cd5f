// Key rotation end to end with the local keyring: back up under v1, rotate, back up under v2; both
// drills pass; rewrap moves the old manifest to v2 without re-uploading data; v1 is retired and
// both backups still restore. Retiring v1 before rewrap makes the old backup fail with a clear error.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runBackup } from '../../backup/run.ts';
import { runDrill } from '../../backup/drill/drill.ts';
import { rewrapBackups } from '../../backup/rewrap.ts';
import { createKeyProvider, retireKeyVersion, rotateKeyring } from '../../backup/keys/index.ts';
import { fetchManifest } from '../../backup/catalog.ts';
import { objectBytes as bytes, startBench } from './fixture.ts';

test('rotate, back up, rewrap, retire: every backup still restores', { timeout: 170_000 }, async (t) => {
  const bench = await startBench(t, { messages: 300, maildirFiles: 10 });
  const prefix = bench.config.backup.s3.prefix;
  const keyring = bench.config.backup.keys.local.keyring;
  const deps = () => ({ ...bench.deps(), keys: createKeyProvider(bench.config.backup.keys) });

  const v1 = await runBackup(bench.config, deps());
  assert.equal(v1.manifest.key.version, '1');
  await rotateKeyring(keyring);
  const v2 = await runBackup(bench.config, deps());
  assert.equal(v2.manifest.key.version, '2');

  for (const id of [v1.manifest.id, v2.manifest.id]) {
    const r = await runDrill(bench.config, deps(), { backupId: id });
    assert.equal(r.ok, true, `${id}: ${JSON.stringify(r.drills[0]!.error)}`);
  }

  const dataBefore = await bytes(bench.store, v1.manifest.objects[0]!.key);
  const rewrap = await rewrapBackups(bench.config, deps());
  assert.deepEqual(rewrap.rewrapped, [v1.manifest.id]);
  assert.deepEqual(rewrap.alreadyCurrent, [v2.manifest.id]);
  assert.deepEqual(rewrap.failed, []);
  const m1 = await fetchManifest(bench.store, prefix, v1.manifest.id);
  assert.equal(m1.key.version, '2');
  assert.notEqual(m1.key.wrapped, v1.manifest.key.wrapped);
  assert.notEqual(m1.signature, v1.manifest.signature);
  assert.deepEqual(m1.objects, v1.manifest.objects, 'objects untouched');
  assert.ok((await bytes(bench.store, v1.manifest.objects[0]!.key)).equals(dataBefore), 'no data re-uploaded');

  await retireKeyVersion(keyring, 1);
  for (const id of [v1.manifest.id, v2.manifest.id]) {
    const r = await runDrill(bench.config, deps(), { backupId: id });
    assert.equal(r.ok, true, `${id} after retiring v1: ${JSON.stringify(r.drills[0]!.error)}`);
  }
  // A second rewrap has nothing to do.
  const again = await rewrapBackups(bench.config, deps());
  assert.deepEqual(again.rewrapped, []);
});

test('retiring a version before rewrap: its backups fail with an error naming the retirement', { timeout: 120_000 }, async (t) => {
  const bench = await startBench(t, { messages: 50 });
  const keyring = bench.config.backup.keys.local.keyring;
  const old = await runBackup(bench.config, bench.deps());
  await rotateKeyring(keyring);
  await retireKeyVersion(keyring, 1);
  const keys = createKeyProvider(bench.config.backup.keys);
  const r = await runDrill(bench.config, { ...bench.deps(), keys }, { backupId: old.manifest.id });
  assert.equal(r.ok, false);
  assert.equal(r.drills[0]!.error?.check, 'manifest');
  assert.match(r.drills[0]!.error!.message, /retired/);
  const rewrap = await rewrapBackups(bench.config, { ...bench.deps(), keys });
  assert.equal(rewrap.failed.length, 1);
});
