/**
 * What the three key providers share: the checks on a KeyContext, the one canonical byte encoding
 * of it (the keyring's AAD, Vault's derivation context), strict base64, and the rule that a data key
 * is exactly 32 bytes. Kept apart so every provider binds and checks the same way.
 */
import { KeyError, type KeyContext, type WrappedKey } from '../contracts.ts';

/** AES-256 data keys: nothing in keys/ ever hands out a key of another length. */
export const DATA_KEY_BYTES = 32;

/** The KMS EncryptionContext: a documented, human-readable map (it appears in CloudTrail). */
export function kmsEncryptionContext(ctx: KeyContext): Record<string, string> {
  return { 'ceerion:backup-id': ctx.backupId, 'ceerion:object': ctx.object };
}

/**
 * The KeyContext as bytes. JSON of a fixed-order array is unambiguous (strings are escaped, so no
 * field can run into the next) and stable across Node versions; the label keeps these bytes from
 * ever meaning anything else. `scope` adds what else the wrap is bound to (the keyring's id and
 * version), before the context.
 */
export function canonicalContext(ctx: KeyContext, scope: readonly (string | number)[] = []): Buffer {
  checkContext(ctx);
  return Buffer.from(JSON.stringify(['ceerion-backup-key/1', ...scope, ctx.backupId, ctx.object]), 'utf8');
}

/** An empty backupId or object would bind every backup to the same context: refuse it. */
export function checkContext(ctx: KeyContext): void {
  if (typeof ctx?.backupId !== 'string' || ctx.backupId === '' || typeof ctx.object !== 'string' || ctx.object === '') {
    throw new KeyError('a data key needs a KeyContext with a non-empty backupId and object');
  }
}

/** Buffer.from(…, 'base64') skips junk silently; a manifest value that is not clean base64 is an error. */
export function decodeBase64Strict(value: unknown, what: string): Buffer {
  if (typeof value !== 'string' || !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(value)) {
    throw new KeyError(`${what} is not base64`);
  }
  return Buffer.from(value, 'base64');
}

/** The last gate before a data key leaves keys/: exactly 32 bytes, or a KeyError naming the source. */
export function requireDataKey(key: Buffer | Uint8Array | undefined, where: string): Buffer {
  const buf = key === undefined ? Buffer.alloc(0) : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  if (buf.length !== DATA_KEY_BYTES) {
    buf.fill(0);
    throw new KeyError(`${where} returned a ${buf.length}-byte data key; data keys are ${DATA_KEY_BYTES} bytes`);
  }
  return buf;
}

/** A manifest written for another provider cannot be opened by this one; say which to configure. */
export function checkProvider(wrapped: WrappedKey, name: WrappedKey['provider']): void {
  if (wrapped?.provider !== name) {
    throw new KeyError(
      `backup key was wrapped by provider "${String(wrapped?.provider)}", but backup.keys.provider is "${name}"; ` +
        `configure the provider the backup was made with`,
    );
  }
}

/** Errors from below (fs, fetch, SDK) become KeyError with our wording first and theirs kept as cause. */
export function keyError(message: string, cause?: unknown): KeyError {
  return new KeyError(message, cause === undefined ? undefined : { cause });
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
