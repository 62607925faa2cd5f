/**
 * The manifest: one signed JSON document per backup, written last, so its presence marks a
 * complete backup. It lists every object with the SHA-256 of its ciphertext and of its plaintext,
 * the wrapped data key, and the facts the drill checks a restore against.
 *
 * Signature: HMAC-SHA256 over the canonical JSON (sorted keys, no whitespace) of everything but
 * `signature`, keyed by a key derived from the backup's data key. Only someone who can unwrap the
 * data key (who holds the key-encryption key) can produce a valid manifest, so an attacker with
 * write access to the bucket can neither edit one nor pair an old manifest with new objects: the
 * ciphertext hashes are signed. `rewrap` changes the wrapped key and re-signs with the same data key.
 */
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { KeyContext, WrappedKey } from './contracts.ts';
import type { Codec } from './compression.ts';
import type { DatabaseFacts } from './sources/postgres.ts';
import type { TreeStats } from './sources/tree-archive.ts';

export const MANIFEST_FORMAT = 'ceerion-backup/1';
export const MANIFEST_NAME = 'manifest.json';
/** Manifests are small; a bigger object under that name is not one of ours. */
export const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;

export type ObjectKind = 'database' | 'maildir' | 'extras';

export interface ManifestObject {
  kind: ObjectKind;
  /** Name inside the backup, e.g. `db.dump.zst`; also in the encrypted header. */
  name: string;
  /** Full object key in the bucket. */
  key: string;
  codec: Codec;
  chunkBytes: number;
  /** Ciphertext as stored. */
  size: number;
  ciphertextSha256: string;
  /** What the source produced, before compression (pg_dump's archive, the tar). */
  plaintextBytes: number;
  plaintextSha256: string;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  id: string;
  host: string;
  startedAt: string;
  completedAt: string;
  versions: { suite: string; node: string; postgres: string; pgDump: string; compressor: string };
  key: WrappedKey;
  objects: ManifestObject[];
  database: DatabaseFacts;
  maildir?: TreeStats & { root: string };
  extras?: TreeStats & { roots: string[] };
  /** Hex HMAC-SHA256; see the file comment. */
  signature: string;
}

export type UnsignedManifest = Omit<Manifest, 'signature'>;

export class ManifestError extends Error {
  constructor(readonly backupId: string, message: string) {
    super(`backup ${backupId}: ${message}`);
    this.name = 'ManifestError';
  }
}

/** `20261121T020000Z-3f9a1c`: sorts by start time, unique across hosts racing the same second. */
export function newBackupId(now: Date): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${t}-${randomBytes(3).toString('hex')}`;
}

export const BACKUP_ID = /^\d{8}T\d{6}Z-[0-9a-f]{6}$/;

export function backupPrefix(prefix: string, id: string): string {
  return `${prefix}${id}/`;
}

export function keyContext(prefix: string, id: string): KeyContext {
  return { backupId: id, object: backupPrefix(prefix, id) };
}

/** JSON with object keys sorted at every level: the bytes the signature covers. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

function macKey(dataKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), 'ceerion-backup/v1\0manifest', 32));
}

export function signManifest(m: UnsignedManifest, dataKey: Buffer): Manifest {
  const signature = createHmac('sha256', macKey(dataKey)).update(canonicalJson(m)).digest('hex');
  return { ...m, signature };
}

export function manifestSignatureValid(m: Manifest, dataKey: Buffer): boolean {
  const { signature, ...rest } = m;
  const want = createHmac('sha256', macKey(dataKey)).update(canonicalJson(rest)).digest();
  const got = Buffer.from(typeof signature === 'string' && /^[0-9a-f]{64}$/.test(signature) ? signature : '', 'hex');
  return got.length === want.length && timingSafeEqual(got, want);
}

/**
 * Shape checks on untrusted JSON, before anything in it is used (the signature can only be checked
 * after the key it names has been unwrapped).
 */
export function parseManifest(raw: Buffer, expectedId: string): Manifest {
  let m: Partial<Manifest>;
  try {
    m = JSON.parse(raw.toString('utf8')) as Partial<Manifest>;
  } catch (err) {
    throw new ManifestError(expectedId, `manifest is not JSON: ${(err as Error).message}`);
  }
  const fail = (what: string) => new ManifestError(expectedId, `manifest ${what}`);
  if (typeof m !== 'object' || m === null) throw fail('is not an object');
  if (m.format !== MANIFEST_FORMAT) throw fail(`format is ${JSON.stringify(m.format)}, expected ${MANIFEST_FORMAT}`);
  if (m.id !== expectedId) throw fail(`names backup ${JSON.stringify(m.id)} (it was found under ${expectedId}/): moved or replaced`);
  if (typeof m.completedAt !== 'string' || Number.isNaN(Date.parse(m.completedAt))) throw fail('has no valid completedAt');
  if (!m.key || typeof m.key.wrapped !== 'string' || typeof m.key.provider !== 'string') throw fail('has no wrapped key');
  if (!Array.isArray(m.objects) || m.objects.length === 0) throw fail('lists no objects');
  for (const o of m.objects) {
    if (!o || typeof o.key !== 'string' || typeof o.name !== 'string' || !/^[0-9a-f]{64}$/.test(o.ciphertextSha256 ?? '')) {
      throw fail(`has a malformed object entry ${JSON.stringify(o)?.slice(0, 200)}`);
    }
  }
  if (!m.database || typeof m.database.rowCounts !== 'object') throw fail('has no database facts');
  return m as Manifest;
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}
