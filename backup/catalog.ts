/**
 * What is in the bucket: backups found by listing, their manifests, and the "verified complete"
 * test that retention and the drill rely on. A backup's objects live under `<prefix><id>/`; the
 * manifest is written last, so a folder without one is a backup that never finished.
 */
import type { KeyProvider, ObjectInfo, ObjectStore } from './contracts.ts';
import { BACKUP_ID, MANIFEST_NAME, MAX_MANIFEST_BYTES, ManifestError, backupPrefix, keyContext, manifestSignatureValid, parseManifest, type Manifest } from './manifest.ts';

export interface StoredBackup {
  id: string;
  /** Every object under the backup's folder, the manifest included. */
  objects: ObjectInfo[];
  hasManifest: boolean;
  /** The newest object's time: how long ago an incomplete backup last made progress. */
  lastModified: Date;
}

/** Backups under the prefix, oldest id first; keys that do not look like ours are ignored. */
export async function listBackups(store: ObjectStore, prefix: string): Promise<StoredBackup[]> {
  const byId = new Map<string, StoredBackup>();
  for await (const obj of store.list(prefix)) {
    const rest = obj.key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash < 0) continue;
    const id = rest.slice(0, slash);
    if (!BACKUP_ID.test(id)) continue;
    let b = byId.get(id);
    if (!b) byId.set(id, (b = { id, objects: [], hasManifest: false, lastModified: obj.lastModified }));
    b.objects.push(obj);
    if (rest.slice(slash + 1) === MANIFEST_NAME) b.hasManifest = true;
    if (obj.lastModified > b.lastModified) b.lastModified = obj.lastModified;
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
}

async function readAll(stream: NodeJS.ReadableStream, limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) throw new Error(`${what} is larger than ${limit} bytes`);
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

export async function fetchManifest(store: ObjectStore, prefix: string, id: string): Promise<Manifest> {
  const key = `${backupPrefix(prefix, id)}${MANIFEST_NAME}`;
  const raw = await readAll(await store.get(key), MAX_MANIFEST_BYTES, key);
  return parseManifest(raw, id);
}

export type Verification = { ok: true; manifest: Manifest; dataKey: Buffer } | { ok: false; reason: string; manifest?: Manifest };

/**
 * Verified complete = the manifest parses, its data key unwraps, its signature holds, and every
 * object it lists is in the bucket with the recorded size. Cheap (no object is downloaded), so
 * retention can afford it for every backup; the drill checks the bytes themselves.
 */
export async function verifyComplete(store: ObjectStore, keys: KeyProvider, prefix: string, b: StoredBackup): Promise<Verification> {
  if (!b.hasManifest) return { ok: false, reason: 'no manifest (the backup never completed)' };
  let manifest: Manifest;
  try {
    manifest = await fetchManifest(store, prefix, b.id);
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  let dataKey: Buffer;
  try {
    dataKey = await keys.unwrap(manifest.key, keyContext(prefix, b.id));
  } catch (err) {
    return { ok: false, manifest, reason: `data key: ${(err as Error).message}` };
  }
  if (!manifestSignatureValid(manifest, dataKey)) return { ok: false, manifest, reason: 'manifest signature does not verify (edited or forged)' };
  const present = new Map(b.objects.map((o) => [o.key, o.size]));
  for (const o of manifest.objects) {
    if (!o.key.startsWith(backupPrefix(prefix, b.id))) return { ok: false, manifest, reason: `object ${o.key} lies outside the backup's folder` };
    const size = present.get(o.key);
    if (size === undefined) return { ok: false, manifest, reason: `object ${o.key} is missing` };
    if (size !== o.size) return { ok: false, manifest, reason: `object ${o.key} is ${size} bytes, the manifest says ${o.size}` };
  }
  return { ok: true, manifest, dataKey };
}

export function assertVerified(v: Verification, id: string): asserts v is Extract<Verification, { ok: true }> {
  if (!v.ok) throw new ManifestError(id, v.reason);
}
