/**
 * The local keyring: versioned 32-byte key-encryption keys (KEKs) in one JSON file, mode 0600.
 * The default provider, for installations without KMS or Vault.
 *
 *   {"format":"ceerion-keyring/1","id":"<16 hex>","current":2,
 *    "keys":[{"version":1,"created":"ISO","retired":"ISO"},           <- retired: material removed
 *            {"version":2,"key":"<base64 of 32 bytes>","created":"ISO"}]}
 *
 * A data key is wrapped with AES-256-GCM under the current version: wrapped = base64(nonce(12) ‖
 * ciphertext(32) ‖ tag(16)), AAD = the canonical KeyContext scoped by keyring id and version, so a
 * wrapped key only opens for its own backup and object, under the version its manifest names.
 *
 * Rotation adds a version and keeps the old ones, so old backups still open; `rewrap` moves a data
 * key to the current version; only then may an old version be retired (its material deleted).
 *
 * The file is written only through a temp file + rename (atomic on POSIX), created 0600 inside a
 * folder created 0700. Rotation and retirement are read-modify-write without a lock: they are rare
 * admin commands, and two of them at once would lose one of the two changes, never corrupt the file.
 * The provider loads the file once; the CLI builds one provider per command.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { link, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { KeyError, type KeyContext, type KeyProvider, type WrappedKey } from '../contracts.ts';
import { DATA_KEY_BYTES, canonicalContext, checkProvider, decodeBase64Strict, errorMessage, keyError, requireDataKey } from './common.ts';

export const KEYRING_FORMAT = 'ceerion-keyring/1';
const KEK_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const WRAPPED_BYTES = NONCE_BYTES + DATA_KEY_BYTES + TAG_BYTES;

/** One version as listed to a user (`backup keyring list`): never the key material. */
export interface KeyringVersionInfo {
  version: number;
  created: string;
  /** When the material was removed; absent while the version can still unwrap. */
  retired?: string;
}

export interface KeyringInfo {
  path: string;
  id: string;
  current: number;
  versions: KeyringVersionInfo[];
}

interface Keyring extends KeyringInfo {
  /** Key material by version; retired versions have none. */
  keys: Map<number, Buffer>;
}

interface KeyringFileEntry {
  version: number;
  key?: string;
  created: string;
  retired?: string;
}

// ---------------------------------------------------------------------------------------------
// Reading and checking the file
// ---------------------------------------------------------------------------------------------

/** Reads and checks the keyring; every refusal is a KeyError that names the file and the fix. */
function loadKeyring(file: string): Keyring {
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new KeyError(`keyring ${file} does not exist; run \`ceerion backup keyring init\` to create it`);
    }
    throw keyError(`keyring ${file} cannot be read: ${errorMessage(err)}`, err);
  }
  if (!st.isFile()) throw new KeyError(`keyring ${file} is not a regular file`);
  // Windows has no POSIX modes to check; everywhere else a KEK readable by others is refused.
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw new KeyError(`keyring ${file} has mode ${mode}, readable by group or others; run \`chmod 600 ${file}\``);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw keyError(`keyring ${file} cannot be read: ${errorMessage(err)}`, err);
  }
  return parseKeyring(text, file);
}

function parseKeyring(text: string, file: string): Keyring {
  const bad = (why: string) => new KeyError(`keyring ${file} ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw keyError(`keyring ${file} is not valid JSON: ${errorMessage(err)}`, err);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad('is not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.format !== KEYRING_FORMAT) throw bad(`has format ${JSON.stringify(d.format)}, expected "${KEYRING_FORMAT}"`);
  if (typeof d.id !== 'string' || !/^[0-9a-f]{16}$/.test(d.id)) throw bad('has no valid id (16 hex digits)');
  if (!Array.isArray(d.keys) || d.keys.length === 0) throw bad('has no keys');

  const versions: KeyringVersionInfo[] = [];
  const keys = new Map<number, Buffer>();
  for (const raw of d.keys as unknown[]) {
    const e = (raw ?? {}) as Partial<KeyringFileEntry>;
    const v = e.version;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw bad(`has a key entry without a valid version`);
    if (versions.some((x) => x.version === v)) throw bad(`lists key version ${v} twice`);
    if (typeof e.created !== 'string' || Number.isNaN(Date.parse(e.created))) throw bad(`key version ${v} has no valid "created" time`);
    if (e.retired !== undefined) {
      if (typeof e.retired !== 'string' || Number.isNaN(Date.parse(e.retired))) throw bad(`key version ${v} has an invalid "retired" time`);
      if (e.key !== undefined) throw bad(`key version ${v} is marked retired but still holds key material`);
      versions.push({ version: v, created: e.created, retired: e.retired });
      continue;
    }
    let key: Buffer;
    try {
      key = decodeBase64Strict(e.key, `key version ${v}`);
    } catch {
      throw bad(`key version ${v} is not base64`);
    }
    if (key.length !== KEK_BYTES) throw bad(`key version ${v} is ${key.length} bytes; keys are ${KEK_BYTES} bytes`);
    keys.set(v, key);
    versions.push({ version: v, created: e.created });
  }
  versions.sort((a, b) => a.version - b.version);

  const current = d.current;
  if (typeof current !== 'number' || !versions.some((x) => x.version === current)) {
    throw bad(`names current version ${JSON.stringify(current)}, which it does not contain`);
  }
  if (!keys.has(current)) throw bad(`names current version ${current}, which is retired`);
  return { path: file, id: d.id, current, versions, keys };
}

/** The keyring as `backup keyring list` shows it: ids, versions and dates, no material. */
export function keyringInfo(file: string): KeyringInfo {
  const { keys: _material, ...info } = loadKeyring(file);
  return info;
}

// ---------------------------------------------------------------------------------------------
// Changing the file: init, rotate, retire
// ---------------------------------------------------------------------------------------------

/** Creates a keyring with version 1; refuses to replace an existing one (it holds old backups' keys). */
export async function initKeyring(file: string, now: Date = new Date()): Promise<KeyringInfo> {
  const ring: Keyring = {
    path: file,
    id: randomBytes(8).toString('hex'),
    current: 1,
    versions: [{ version: 1, created: now.toISOString() }],
    keys: new Map([[1, randomBytes(KEK_BYTES)]]),
  };
  await writeKeyring(ring, { exclusive: true });
  return keyringInfo(file);
}

/** Adds version N+1 (N = the highest ever used) and makes it current; old versions stay. */
export async function rotateKeyring(file: string, now: Date = new Date()): Promise<KeyringInfo> {
  const ring = loadKeyring(file);
  const next = Math.max(...ring.versions.map((x) => x.version)) + 1;
  ring.versions.push({ version: next, created: now.toISOString() });
  ring.keys.set(next, randomBytes(KEK_BYTES));
  ring.current = next;
  await writeKeyring(ring, { exclusive: false });
  return keyringInfo(file);
}

/**
 * Deletes the material of a non-current version and records when. Backups still wrapped under it
 * can no longer be opened, which is why `ceerion backup rewrap` comes first; the record stays so the
 * error names the retirement instead of "unknown version".
 */
export async function retireKeyVersion(file: string, version: number, now: Date = new Date()): Promise<KeyringInfo> {
  const ring = loadKeyring(file);
  const entry = ring.versions.find((x) => x.version === version);
  if (!entry) throw new KeyError(`keyring ${ring.id} (${file}) has no key version ${version}`);
  if (entry.retired) throw new KeyError(`key version ${version} of keyring ${ring.id} was already retired on ${entry.retired}`);
  if (version === ring.current) {
    throw new KeyError(`key version ${version} is the current version of keyring ${ring.id}; rotate the keyring before retiring it`);
  }
  entry.retired = now.toISOString();
  ring.keys.get(version)?.fill(0);
  ring.keys.delete(version);
  await writeKeyring(ring, { exclusive: false });
  return keyringInfo(file);
}

function serialize(ring: Keyring): string {
  const keys: KeyringFileEntry[] = ring.versions.map((x) => {
    const key = ring.keys.get(x.version);
    return x.retired
      ? { version: x.version, created: x.created, retired: x.retired }
      : { version: x.version, key: key?.toString('base64'), created: x.created };
  });
  return `${JSON.stringify({ format: KEYRING_FORMAT, id: ring.id, current: ring.current, keys }, null, 2)}\n`;
}

/**
 * Temp file (0600, fsynced) then rename, so a reader sees the old file or the new one, never half.
 * `exclusive` uses link() instead of rename(): it fails if the target exists, with no window
 * between a check and the write.
 */
async function writeKeyring(ring: Keyring, opts: { exclusive: boolean }): Promise<void> {
  const file = ring.path;
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(serialize(ring));
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    if (opts.exclusive) await link(tmp, file);
    else await rename(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new KeyError(`keyring ${file} already exists; refusing to overwrite it (it holds the keys of existing backups)`);
    }
    throw keyError(`cannot write keyring ${file}: ${errorMessage(err)}`, err);
  } finally {
    await rm(tmp, { force: true });
  }
  // Make the rename itself durable; not every platform lets a directory be fsynced.
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    /* best effort */
  }
}

// ---------------------------------------------------------------------------------------------
// The provider
// ---------------------------------------------------------------------------------------------

/** The keyring provider; reads and checks the file now (a KeyError if it is missing or unsafe). */
export function createLocalKeyProvider(file: string): KeyProvider {
  return new LocalKeyProvider(loadKeyring(file));
}

class LocalKeyProvider implements KeyProvider {
  readonly name = 'local' as const;

  constructor(private readonly ring: Keyring) {}

  async generateDataKey(ctx: KeyContext): Promise<{ plaintext: Buffer; wrapped: WrappedKey }> {
    const plaintext = randomBytes(DATA_KEY_BYTES);
    return { plaintext, wrapped: this.wrap(plaintext, ctx) };
  }

  async unwrap(wrapped: WrappedKey, ctx: KeyContext): Promise<Buffer> {
    checkProvider(wrapped, 'local');
    const { id, path: file } = this.ring;
    if (wrapped.keyId !== id) {
      throw new KeyError(`backup was wrapped by keyring ${wrapped.keyId}, this is keyring ${id} (${file})`);
    }
    const version = this.versionOf(wrapped);
    const kek = this.ring.keys.get(version)!;
    const blob = decodeBase64Strict(wrapped.wrapped, `wrapped data key (keyring ${id} version ${version})`);
    if (blob.length !== WRAPPED_BYTES) {
      throw new KeyError(`wrapped data key (keyring ${id} version ${version}) is ${blob.length} bytes; expected ${WRAPPED_BYTES}`);
    }
    const decipher = createDecipheriv('aes-256-gcm', kek, blob.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(canonicalContext(ctx, [id, version]));
    decipher.setAuthTag(blob.subarray(NONCE_BYTES + DATA_KEY_BYTES));
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([decipher.update(blob.subarray(NONCE_BYTES, NONCE_BYTES + DATA_KEY_BYTES)), decipher.final()]);
    } catch (err) {
      throw keyError(
        `keyring ${id} version ${version} cannot unwrap the data key for backup ${ctx.backupId} object ${ctx.object}: ` +
          `it belongs to another backup or object, or the wrapped key was altered`,
        err,
      );
    }
    return requireDataKey(plaintext, `keyring ${id}`);
  }

  async rewrap(wrapped: WrappedKey, ctx: KeyContext): Promise<WrappedKey> {
    // Unwrap first even when already current: a rewrap that "succeeds" on a key that does not open
    // for this context would hide a broken manifest until the restore.
    const plaintext = await this.unwrap(wrapped, ctx);
    try {
      return wrapped.version === String(this.ring.current) ? wrapped : this.wrap(plaintext, ctx);
    } finally {
      plaintext.fill(0);
    }
  }

  async currentVersion(): Promise<string> {
    return String(this.ring.current);
  }

  private wrap(plaintext: Buffer, ctx: KeyContext): WrappedKey {
    const { id, current } = this.ring;
    requireDataKey(plaintext, 'the data key source');
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.ring.keys.get(current)!, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(canonicalContext(ctx, [id, current]));
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return { provider: 'local', keyId: id, version: String(current), wrapped: Buffer.concat([nonce, ct, cipher.getAuthTag()]).toString('base64') };
  }

  /** The manifest's version as a number this keyring can use, or a KeyError saying why not. */
  private versionOf(wrapped: WrappedKey): number {
    const { id, path: file } = this.ring;
    if (typeof wrapped.version !== 'string' || !/^[1-9][0-9]{0,8}$/.test(wrapped.version)) {
      throw new KeyError(`wrapped data key names key version ${JSON.stringify(wrapped.version)}, which is not a keyring version`);
    }
    const version = Number(wrapped.version);
    const entry = this.ring.versions.find((x) => x.version === version);
    if (!entry) {
      const have = this.ring.versions.map((x) => x.version).join(', ');
      throw new KeyError(`key version ${version} is not in keyring ${id} (${file}), which has versions ${have}`);
    }
    if (entry.retired || !this.ring.keys.has(version)) {
      throw new KeyError(
        `key version ${version} of keyring ${id} was retired on ${entry.retired}; this backup's data key can only be ` +
          `unwrapped with a copy of the keyring from before then (run \`ceerion backup rewrap\` before retiring a version)`,
      );
    }
    return version;
  }
}
