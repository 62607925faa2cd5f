// Attacks on the chain and broken backups, seen through the drill: each fails with the check that
// caught it and the object it concerns. (Chunk-level attacks on the stream format itself, where the
// specific error is the decryptor's, are in crypto/.)
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { test } from 'node:test';
import { runBackup } from '../../backup/run.ts';
import { runDrill, type DrillReport } from '../../backup/drill/drill.ts';
import { decryptObject, DrillCheckError } from '../../backup/drill/objects.ts';
import { createKeyProvider, initKeyring } from '../../backup/keys/index.ts';
import { canonicalJson } from '../../backup/manifest.ts';
import { Writable } from 'node:stream';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { objectBytes as bytes, startBench } from './fixture.ts';

function failure(report: DrillReport) {
  assert.equal(report.ok, false);
  const d = report.drills[0]!;
  assert.equal(d.ok, false);
  return d.error!;
}

test('drill failures name the object and the check', { timeout: 170_000 }, async (t) => {
  const bench = await startBench(t, { messages: 500, maildirFiles: 30 });
  const deps = bench.deps();
  // Fallbacks off: each case is about the one backup it breaks.
  const drillNewest = () => runDrill(bench.config, deps, { fallbacks: 0 });

  const first = await runBackup(bench.config, deps);
  assert.equal((await drillNewest()).ok, true);
  const second = await runBackup(bench.config, deps);
  const db2 = second.manifest.objects.find((o) => o.kind === 'database')!;
  const mail2 = second.manifest.objects.find((o) => o.kind === 'maildir')!;
  const original = await bytes(bench.store, db2.key);

  await t.test('one flipped ciphertext byte', async () => {
    const bad = Buffer.from(original);
    bad[Math.floor(bad.length / 2)]! ^= 0x01;
    await bench.store.put(db2.key, bad);
    const e = failure(await drillNewest());
    assert.equal(e.check, 'ciphertext-hash');
    assert.equal(e.object, db2.key);
    await bench.store.put(db2.key, original);
  });

  await t.test('a missing object', async () => {
    const mail = await bytes(bench.store, mail2.key);
    await bench.store.delete([mail2.key]);
    const e = failure(await drillNewest());
    assert.equal(e.check, 'object-missing');
    assert.equal(e.object, mail2.key);
    await bench.store.put(mail2.key, mail);
  });

  await t.test('an old manifest presented with a new object', async () => {
    // The first backup's manifest, with the second backup's (valid, encrypted) database object in its place.
    const db1 = first.manifest.objects.find((o) => o.kind === 'database')!;
    const saved = await bytes(bench.store, db1.key);
    await bench.store.put(db1.key, original);
    const report = await runDrill(bench.config, deps, { backupId: first.manifest.id });
    const e = failure(report);
    // Signed size or signed hash: whichever differs first (the objects' lengths usually differ).
    assert.match(e.check, /^ciphertext-(size|hash)$/);
    assert.equal(e.object, db1.key);
    await bench.store.put(db1.key, saved);
  });

  await t.test('an edited manifest', async () => {
    const key = `${bench.config.backup.s3.prefix}${second.manifest.id}/manifest.json`;
    const saved = await bytes(bench.store, key);
    const m = JSON.parse(saved.toString());
    m.database.rowCounts.indexed_messages = 499;
    await bench.store.put(key, Buffer.from(canonicalJson(m)));
    const e = failure(await drillNewest());
    assert.equal(e.check, 'manifest');
    assert.match(e.message, /signature does not verify/);
    await bench.store.put(key, saved);
  });

  await t.test('the wrong key', async () => {
    const other = path.join(bench.dir, 'other-keyring.json');
    await initKeyring(other);
    const config = { ...bench.config, backup: { ...bench.config.backup, keys: { ...bench.config.backup.keys, local: { keyring: other } } } };
    const report = await runDrill(config, { ...deps, keys: createKeyProvider(config.backup.keys) }, { fallbacks: 0 });
    const e = failure(report);
    assert.equal(e.check, 'manifest');
    assert.match(e.message, /cannot unwrap the data key .*keyring/);
  });

  await t.test('an expired backup: the newest good one is older than the RPO target', async () => {
    const later = new Date(Date.parse(second.manifest.completedAt) + 25 * 3_600_000);
    const report = await runDrill(bench.config, { ...deps, now: () => later }, { fallbacks: 0 });
    assert.equal(report.ok, false);
    assert.equal(report.drills[0]!.ok, true, 'the backup itself restores');
    const rpo = report.drills[0]!.checks.find((c) => c.check === 'rpo')!;
    assert.equal(rpo.ok, false);
    assert.match(rpo.detail, /too old \(expired\)/);
    assert.ok(report.rpoHours! > 24);
  });

  await t.test('a failing newest backup: older ones are drilled, RPO comes from the newest that passed', async () => {
    const bad = Buffer.from(original);
    bad[100]! ^= 0xff;
    await bench.store.put(db2.key, bad);
    const report = await runDrill(bench.config, deps);
    assert.equal(report.ok, false);
    assert.deepEqual(report.drills.map((d) => [d.backupId, d.ok]), [[second.manifest.id, false], [first.manifest.id, true]]);
    assert.ok(report.rpoHours !== null);
    await bench.store.put(db2.key, original);
  });

  await t.test('decryption of a tampered staged file fails before any plaintext check passes', async () => {
    // The ciphertext check comes first in the drill; this is the layer under it, for the record.
    const file = path.join(bench.dir, 'tampered.enc');
    const bad = Buffer.from(original);
    bad[bad.length - 5]! ^= 0x10;
    await writeFile(file, bad);
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    await assert.rejects(decryptObject(file, db2, Buffer.alloc(32, 1), second.manifest.id, sink), (err: unknown) => {
      assert.ok(err instanceof DrillCheckError);
      assert.equal(err.check, 'decrypt');
      assert.equal(err.object, db2.key);
      return true;
    });
  });

  await t.test('a short data key aborts the backup before anything is uploaded', async () => {
    const keys = bench.keys();
    const short = { ...keys, name: keys.name, generateDataKey: async (ctx: Parameters<typeof keys.generateDataKey>[0]) => {
      const k = await keys.generateDataKey(ctx);
      return { ...k, plaintext: k.plaintext.subarray(0, 31) };
    } };
    const before: string[] = [];
    for await (const o of bench.store.list(bench.config.backup.s3.prefix)) before.push(o.key);
    await assert.rejects(runBackup(bench.config, { ...deps, keys: short }), /31-byte data key; refusing/);
    const after: string[] = [];
    for await (const o of bench.store.list(bench.config.backup.s3.prefix)) after.push(o.key);
    assert.deepEqual(after, before);
  });

  await t.test('a missing keyring aborts the backup before anything is uploaded', async () => {
    const before: string[] = [];
    for await (const o of bench.store.list(bench.config.backup.s3.prefix)) before.push(o.key);
    await rm(bench.config.backup.keys.local.keyring);
    assert.throws(() => createKeyProvider(bench.config.backup.keys), /keyring init/);
    const after: string[] = [];
    for await (const o of bench.store.list(bench.config.backup.s3.prefix)) after.push(o.key);
    assert.deepEqual(after, before);
  });
});
