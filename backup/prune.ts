/**
 * `ceerion backup prune` (also run after every `backup run`): apply the retention policy.
 *
 * - Only verified-complete backups (signed manifest, every object present with its size) are
 *   counted and removed by the policy; they are ordered by the manifest's completion time.
 * - The newest good backup is never removed (planRetention guarantees it).
 * - A backup that is not verified is left alone, except an incomplete one (no manifest) whose
 *   last object is older than `incompleteAfterHours`: that is a run that died, and its parts are
 *   removed. A backup with a manifest that fails verification is never deleted automatically:
 *   it is reported, because it may be the only copy of something someone has to look at.
 * - A removed backup loses its manifest first, so a prune cut short leaves an "incomplete" folder
 *   (cleaned up later), never a manifest pointing at missing objects.
 */
import type { Config } from '../core/config/schema.ts';
import type { Logger } from '../core/log.ts';
import { listBackups, verifyComplete, type StoredBackup } from './catalog.ts';
import type { KeyProvider, ObjectStore } from './contracts.ts';
import { MANIFEST_NAME, backupPrefix } from './manifest.ts';
import { planRetention } from './retention.ts';

export interface PruneResult {
  kept: Array<{ id: string; reasons: string[] }>;
  removed: string[];
  incompleteRemoved: string[];
  unverified: Array<{ id: string; reason: string }>;
}

export async function pruneBackups(
  config: Config,
  deps: { store: ObjectStore; keys: KeyProvider; log: Logger; now?: () => Date },
  opts: { dryRun?: boolean } = {},
): Promise<PruneResult> {
  const { store, keys, log } = deps;
  const now = (deps.now ?? (() => new Date()))();
  const prefix = config.backup.s3.prefix;
  const r = config.backup.retention;
  const backups = await listBackups(store, prefix);
  const candidates: Array<{ id: string; completedAt: Date; verified: boolean }> = [];
  const unverified: PruneResult['unverified'] = [];
  const incomplete: StoredBackup[] = [];
  for (const b of backups) {
    const v = await verifyComplete(store, keys, prefix, b);
    if (v.ok) {
      candidates.push({ id: b.id, completedAt: new Date(v.manifest.completedAt), verified: true });
      v.dataKey.fill(0);
    } else if (!b.hasManifest) {
      if (now.getTime() - b.lastModified.getTime() > r.incompleteAfterHours * 3_600_000) incomplete.push(b);
    } else {
      unverified.push({ id: b.id, reason: v.reason });
      log.warn({ backup: b.id, reason: v.reason }, 'prune: backup does not verify; left in place');
    }
  }
  const plan = planRetention(candidates, { keepDaily: r.keepDaily, keepWeekly: r.keepWeekly, keepMonthly: r.keepMonthly });
  if (!opts.dryRun) {
    const byId = new Map(backups.map((b) => [b.id, b]));
    for (const id of [...plan.remove, ...incomplete.map((b) => b.id)]) {
      const b = byId.get(id)!;
      const manifestKey = `${backupPrefix(prefix, id)}${MANIFEST_NAME}`;
      if (b.hasManifest) await store.delete([manifestKey]);
      await store.delete(b.objects.map((o) => o.key).filter((k) => k !== manifestKey));
      log.info({ backup: id }, 'prune: removed');
    }
  }
  return { kept: plan.keep, removed: plan.remove, incompleteRemoved: incomplete.map((b) => b.id), unverified };
}
