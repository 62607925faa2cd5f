/**
 * `ceerion backup drill`: prove that the newest backup restores, and how long that takes.
 *
 *   1. manifest: fetch it, unwrap its data key, verify its signature;
 *   2. download: every object, comparing size and ciphertext SHA-256 with the manifest;
 *   3. decrypt: decrypt + decompress the database archive (plaintext SHA-256 checked);
 *   4. restore: `pg_restore --list` table count, then a restore into a scratch database;
 *   5. verify: row counts, migrations, newest message, FK orphans, the maildir/extras samples;
 *   6. the scratch database is dropped, whatever happened.
 *
 * RTO = the wall time of all that. RPO = now minus the completion time of the newest backup that
 * passed. If the newest backup fails, the next older ones are drilled (up to `fallbacks`) so the
 * report still tells how much data a restore today would lose, and the drill exits non-zero.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { Config } from '../../core/config/schema.ts';
import type { Logger } from '../../core/log.ts';
import { fetchManifest, listBackups } from '../catalog.ts';
import type { KeyProvider, ObjectStore } from '../contracts.ts';
import { keyContext, manifestSignatureValid, type Manifest, type ManifestObject } from '../manifest.ts';
import { verifyTreeSample } from '../sources/tree-archive.ts';
import { DrillCheckError, decryptObject, downloadObject, type DrillCheck } from './objects.ts';
import { archiveTables, createScratchDatabase, restoreArchive, scratchName, withClient } from './scratch-db.ts';
import { verifyRestoredDatabase, type CheckResult } from './verify-db.ts';
import { startDockerPostgres } from './docker-target.ts';

export interface DrillOptions {
  /** Drill this backup instead of the newest. */
  backupId?: string;
  /** Scratch server; default backup.drill.target, else the suite's database server. */
  target?: string;
  docker?: boolean;
  /** Older backups tried when the newest fails (default 2). */
  fallbacks?: number;
}

export interface DrillDeps {
  store: ObjectStore;
  keys: KeyProvider;
  log: Logger;
  now?: () => Date;
}

export type Phase = 'manifest' | 'download' | 'decrypt' | 'restore' | 'verify' | 'cleanup';

export interface BackupDrill {
  backupId: string;
  completedAt?: string;
  ok: boolean;
  phasesMs: Partial<Record<Phase, number>>;
  /** Wall time of the whole restore of this backup. */
  rtoSeconds: number;
  checks: CheckResult[];
  /** The first failure, when there was one. */
  error?: { check: DrillCheck | 'error'; object?: string; message: string };
}

export interface DrillReport {
  ok: boolean;
  startedAt: string;
  finishedAt: string;
  targets: { rpoHours: number; rtoMinutes: number };
  /** Hours from the newest passing backup's completion to now; null when none passed. */
  rpoHours: number | null;
  /** RTO of the newest backup's drill. */
  rtoSeconds: number | null;
  drills: BackupDrill[];
}

function fail(check: DrillCheck, object: string | undefined, message: string): never {
  throw new DrillCheckError(check, object, message);
}

/** Drills one backup. Never throws: failures are recorded in the result. */
export async function drillBackup(config: Config, deps: DrillDeps, id: string, target: string): Promise<BackupDrill> {
  const { store, keys } = deps;
  const log = deps.log.child({ backup: id, drill: true });
  const prefix = config.backup.s3.prefix;
  const result: BackupDrill = { backupId: id, ok: false, phasesMs: {}, rtoSeconds: 0, checks: [] };
  const t0 = performance.now();
  let phaseStart = t0;
  const phase = (p: Phase) => {
    const now = performance.now();
    result.phasesMs[p] = Math.round(now - phaseStart);
    phaseStart = now;
    log.info({ phase: p, ms: result.phasesMs[p] }, 'drill: phase done');
  };
  const check = (c: DrillCheck, detail: string) => result.checks.push({ check: c, ok: true, detail });
  const work = await mkdtemp(path.join(config.backup.drill.workDir || os.tmpdir(), 'ceerion-drill-'));
  let dropScratch: (() => Promise<void>) | undefined;
  try {
    // 1. manifest
    let manifest: Manifest;
    try {
      manifest = await fetchManifest(store, prefix, id);
    } catch (err) {
      fail('manifest', `${prefix}${id}/manifest.json`, (err as Error).message);
    }
    result.completedAt = manifest.completedAt;
    let dataKey: Buffer;
    try {
      dataKey = await keys.unwrap(manifest.key, keyContext(prefix, id));
    } catch (err) {
      fail('manifest', undefined, `cannot unwrap the data key (${manifest.key.provider} ${manifest.key.keyId} v${manifest.key.version}): ${(err as Error).message}`);
    }
    if (!manifestSignatureValid(manifest, dataKey)) fail('manifest', undefined, 'signature does not verify: the manifest was edited or forged');
    check('manifest', `signed, ${manifest.objects.length} objects, key ${manifest.key.provider} v${manifest.key.version}`);
    phase('manifest');

    // 2. download
    const files = new Map<ManifestObject, string>();
    for (const obj of manifest.objects) {
      if (!obj.key.startsWith(`${prefix}${id}/`)) fail('manifest', obj.key, "object lies outside the backup's folder");
      const file = path.join(work, `${obj.name}.enc`);
      await downloadObject(store, obj, file);
      files.set(obj, file);
    }
    check('ciphertext-hash', `${manifest.objects.length} objects, ${manifest.objects.reduce((a, o) => a + o.size, 0)} bytes, all SHA-256 equal`);
    phase('download');

    // 3. decrypt the database archive
    const dbObj = manifest.objects.find((o) => o.kind === 'database') ?? fail('manifest', undefined, 'lists no database object');
    const dumpFile = path.join(work, 'db.dump');
    await decryptObject(files.get(dbObj)!, dbObj, dataKey, id, createWriteStream(dumpFile));
    check('plaintext-hash', `${dbObj.name}: ${dbObj.plaintextBytes} bytes, SHA-256 equal`);
    phase('decrypt');

    // 4. restore
    const tables = await archiveTables(dumpFile);
    const want = Object.keys(manifest.database.rowCounts).length;
    if (tables.length !== want) fail('archive-list', dbObj.key, `pg_restore --list shows ${tables.length} tables, the manifest counted ${want}`);
    check('archive-list', `${tables.length} tables in the archive`);
    const scratch = await createScratchDatabase(target, scratchName(id, Date.now().toString(36)), manifest.database.extensions);
    dropScratch = scratch.drop;
    try {
      await restoreArchive(dumpFile, scratch.url, config.backup.drill.restoreJobs);
    } catch (err) {
      fail('restore', dbObj.key, (err as Error).message);
    }
    check('restore', `restored into ${scratch.name}`);
    phase('restore');

    // 5. verify
    result.checks.push(...(await withClient(scratch.url, (c) => verifyRestoredDatabase(c, manifest))));
    for (const kind of ['maildir', 'extras'] as const) {
      const obj = manifest.objects.find((o) => o.kind === kind);
      const stats = manifest[kind];
      if (!obj || !stats) continue;
      const tar = new PassThrough({ highWaterMark: 1024 * 1024 });
      const [, sample] = await Promise.all([
        decryptObject(files.get(obj)!, obj, dataKey, id, tar),
        verifyTreeSample(tar, stats.sample, { restoreDir: path.join(work, `${kind}-sample`) }),
      ]);
      const bad = [...sample.mismatched.map((p) => `${p} differs`), ...sample.missing.map((p) => `${p} missing`)];
      result.checks.push({
        check: 'maildir-sample',
        ok: bad.length === 0 && sample.checked === stats.sample.length,
        detail: bad.length ? `${kind}: ${bad.slice(0, 10).join('; ')}${bad.length > 10 ? ` (+${bad.length - 10})` : ''}` : `${kind}: ${sample.checked} of ${stats.files} files restored, hashes equal`,
      });
    }
    phase('verify');
    dataKey.fill(0);
  } catch (err) {
    const e = err as Error;
    result.error = err instanceof DrillCheckError ? { check: err.check, object: err.object, message: e.message } : { check: 'error', message: e.message };
    result.checks.push({ check: err instanceof DrillCheckError ? err.check : 'restore', ok: false, detail: e.message });
    log.error({ err: e.message }, 'drill: failed');
  } finally {
    if (dropScratch) await dropScratch().catch((e: Error) => log.warn({ err: e.message }, 'drill: could not drop the scratch database'));
    await rm(work, { recursive: true, force: true });
    phase('cleanup');
  }
  result.rtoSeconds = (performance.now() - t0) / 1000;
  result.ok = !result.error && result.checks.every((c) => c.ok);
  return result;
}

export async function runDrill(config: Config, deps: DrillDeps, opts: DrillOptions = {}): Promise<DrillReport> {
  const now = deps.now ?? (() => new Date());
  const startedAt = now();
  const targets = { rpoHours: config.backup.drill.rpoHours, rtoMinutes: config.backup.drill.rtoMinutes };
  const backups = (await listBackups(deps.store, config.backup.s3.prefix)).filter((b) => b.hasManifest);
  let candidates = backups.map((b) => b.id).reverse();
  if (opts.backupId) candidates = [opts.backupId];
  if (candidates.length === 0) {
    return { ok: false, startedAt: startedAt.toISOString(), finishedAt: now().toISOString(), targets, rpoHours: null, rtoSeconds: null, drills: [
      { backupId: '-', ok: false, phasesMs: {}, rtoSeconds: 0, checks: [{ check: 'manifest', ok: false, detail: `no complete backup under ${deps.store.description}` }], error: { check: 'manifest', message: 'no complete backup found' } },
    ] };
  }
  const docker = opts.docker ? await startDockerPostgres((await fetchManifest(deps.store, config.backup.s3.prefix, candidates[0]!)).database.serverVersion) : undefined;
  const target = docker?.url ?? opts.target ?? (config.backup.drill.target || config.database.url);
  const drills: BackupDrill[] = [];
  try {
    for (const id of candidates.slice(0, 1 + (opts.backupId ? 0 : (opts.fallbacks ?? 2)))) {
      const d = await drillBackup(config, deps, id, target);
      drills.push(d);
      if (d.ok) break;
    }
  } finally {
    await docker?.stop();
  }
  const passed = drills.find((d) => d.ok);
  const finished = now();
  const rpoHours = passed?.completedAt ? (finished.getTime() - Date.parse(passed.completedAt)) / 3_600_000 : null;
  const newest = drills[0]!;
  const rpoOk = rpoHours !== null && rpoHours <= targets.rpoHours;
  const rtoOk = newest.rtoSeconds <= targets.rtoMinutes * 60;
  newest.checks.push({
    check: 'rpo',
    ok: rpoOk,
    detail: rpoHours === null ? 'no backup passed' : `${rpoHours.toFixed(2)} h since ${passed!.backupId} completed (target ≤ ${targets.rpoHours} h)${rpoOk ? '' : ': the newest good backup is too old (expired)'}`,
  });
  newest.checks.push({ check: 'rto', ok: rtoOk, detail: `${newest.rtoSeconds.toFixed(1)} s (target ≤ ${targets.rtoMinutes} min)` });
  return {
    ok: newest.ok && rpoOk && rtoOk,
    startedAt: startedAt.toISOString(),
    finishedAt: finished.toISOString(),
    targets,
    rpoHours,
    rtoSeconds: newest.rtoSeconds,
    drills,
  };
}
