/**
 * `ceerion backup rewrap`: after `rotate-key`, re-wrap every backup's data key under the current
 * key version and re-sign its manifest, without touching (or re-uploading) the data objects. The
 * data key itself does not change, so the objects stay valid; only the manifest is rewritten.
 * Afterwards the old key version can be retired and every backup still restores.
 *
 * A manifest is only rewritten after it verified (signature under its own data key): rewrap must
 * never launder a forged manifest into a freshly signed one.
 */
import type { Config } from '../core/config/schema.ts';
import type { Logger } from '../core/log.ts';
import { listBackups, verifyComplete } from './catalog.ts';
import type { KeyProvider, ObjectStore } from './contracts.ts';
import { MANIFEST_NAME, backupPrefix, canonicalJson, keyContext, signManifest } from './manifest.ts';

export interface RewrapResult {
  rewrapped: string[];
  alreadyCurrent: string[];
  failed: Array<{ id: string; reason: string }>;
}

export async function rewrapBackups(config: Config, deps: { store: ObjectStore; keys: KeyProvider; log: Logger }): Promise<RewrapResult> {
  const { store, keys, log } = deps;
  const prefix = config.backup.s3.prefix;
  const current = await keys.currentVersion();
  const out: RewrapResult = { rewrapped: [], alreadyCurrent: [], failed: [] };
  for (const b of await listBackups(store, prefix)) {
    if (!b.hasManifest) continue;
    const v = await verifyComplete(store, keys, prefix, b);
    if (!v.ok) {
      out.failed.push({ id: b.id, reason: v.reason });
      log.warn({ backup: b.id, reason: v.reason }, 'rewrap: backup does not verify; not rewritten');
      continue;
    }
    try {
      const ctx = keyContext(prefix, b.id);
      const wrapped = await keys.rewrap(v.manifest.key, ctx);
      if (wrapped.version === v.manifest.key.version && wrapped.keyId === v.manifest.key.keyId && wrapped.wrapped === v.manifest.key.wrapped) {
        out.alreadyCurrent.push(b.id);
        continue;
      }
      // Check the new wrapping before the old manifest is replaced.
      const again = await keys.unwrap(wrapped, ctx);
      if (!again.equals(v.dataKey)) throw new Error('the re-wrapped key does not unwrap to the same data key');
      const { signature: _old, ...unsigned } = v.manifest;
      const manifest = signManifest({ ...unsigned, key: wrapped }, v.dataKey);
      await store.put(`${backupPrefix(prefix, b.id)}${MANIFEST_NAME}`, Buffer.from(canonicalJson(manifest) + '\n'));
      out.rewrapped.push(b.id);
      log.info({ backup: b.id, from: v.manifest.key.version, to: wrapped.version, current }, 'rewrap: manifest rewritten');
    } catch (err) {
      out.failed.push({ id: b.id, reason: (err as Error).message });
    } finally {
      v.dataKey.fill(0);
    }
  }
  return out;
}
