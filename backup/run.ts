/**
 * `ceerion backup run`: one backup, streamed end to end and never staged on disk.
 *
 *   source (pg_dump -Fc -Z0 | tar of the maildir | tar of the extras)
 *     → hash + count (plaintext)  → zstd/gzip  → AES-256-GCM STREAM  → hash + count (ciphertext)
 *     → S3 multipart upload
 *
 * Objects go to `<prefix><id>/`; the signed manifest is written last, after every object is
 * complete, so a crash at any point leaves a folder without a manifest, which retention cleans up
 * and which the drill and restore never pick. Nothing is ever uploaded unencrypted: the encryption
 * stage is not optional and refuses a data key that is not 32 bytes.
 */
import os from 'node:os';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../core/config/schema.ts';
import type { Logger } from '../core/log.ts';
import { VERSION } from '../core/version.ts';
import { CODEC_SUFFIX, createCompressor, resolveCompression, type CompressionSettings } from './compression.ts';
import type { KeyProvider, ObjectStore } from './contracts.ts';
import { createEncryptStream } from './crypto/index.ts';
import { HashingStream } from './hash-stream.ts';
import { MANIFEST_FORMAT, MANIFEST_NAME, backupPrefix, canonicalJson, keyContext, newBackupId, signManifest, type Manifest, type ManifestObject, type ObjectKind } from './manifest.ts';
import { runProgram } from './process-stream.ts';
import { dumpDatabase } from './sources/postgres.ts';
import { packTree } from './sources/tree-archive.ts';

export interface BackupDeps {
  store: ObjectStore;
  keys: KeyProvider;
  log: Logger;
  now?: () => Date;
  /** Bytes read from the sources so far, against an estimate of the total (for a progress bar). */
  onProgress?(doneBytes: number, estimatedTotal: number): void;
}

export interface BackupResult {
  manifest: Manifest;
  manifestKey: string;
  durationMs: number;
}

interface Uploaded {
  object: ManifestObject;
}

async function compressorVersion(c: CompressionSettings): Promise<string> {
  if (c.codec === 'gzip') return `zlib ${process.versions.zlib}`;
  return (await runProgram('zstd', ['--version'])).trim();
}

export async function runBackup(config: Config, deps: BackupDeps): Promise<BackupResult> {
  const { store, keys, log } = deps;
  const now = deps.now ?? (() => new Date());
  const started = now();
  const t0 = performance.now();
  const b = config.backup;
  const id = newBackupId(started);
  const folder = backupPrefix(b.s3.prefix, id);
  const blog = log.child({ backup: id });
  const compression = resolveCompression(b.compression);
  const { plaintext: dataKey, wrapped } = await keys.generateDataKey(keyContext(b.s3.prefix, id));
  if (dataKey.length !== 32) throw new Error(`key provider ${keys.name} returned a ${dataKey.length}-byte data key; refusing to back up`);

  const uploadedKeys: string[] = [];
  let sourceBytesDone = 0;
  let estimate = 0;

  /** source → hash → compress → encrypt → hash → S3, all at once; resolves when S3 has the object. */
  async function upload(kind: ObjectKind, base: string, source: Readable, expectedBytes: number): Promise<Uploaded> {
    const name = `${base}.${CODEC_SUFFIX[compression.codec]}`;
    const key = `${folder}${name}`;
    const before = sourceBytesDone;
    const plain = new HashingStream((n) => {
      sourceBytesDone = before + n;
      deps.onProgress?.(sourceBytesDone, Math.max(estimate, sourceBytesDone));
    });
    const cipher = new HashingStream();
    const abort = new AbortController();
    uploadedKeys.push(key);
    const flowing = pipeline(source, plain, createCompressor(compression), createEncryptStream(dataKey, { backupId: id, name }, { chunkBytes: b.encryption.chunkBytes }), cipher, {
      signal: abort.signal,
    });
    // Whichever side fails first stops the other: a dead pg_dump aborts the upload (no partial
    // object becomes visible), and a failed upload kills pg_dump instead of letting it block.
    const putting = store.put(key, cipher, { expectedBytes, signal: abort.signal });
    const results = await Promise.allSettled([flowing, putting]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      abort.abort();
      source.destroy();
      const reason = failed.reason as Error;
      throw new Error(`backup ${id}: ${name}: ${reason.message}`, { cause: reason });
    }
    const stored = (results[1] as PromiseFulfilledResult<{ size: number }>).value;
    if (stored.size !== cipher.bytes) throw new Error(`backup ${id}: ${name}: the store kept ${stored.size} bytes of ${cipher.bytes}`);
    const object: ManifestObject = {
      kind,
      name,
      key,
      codec: compression.codec,
      chunkBytes: b.encryption.chunkBytes,
      size: cipher.bytes,
      ciphertextSha256: cipher.digest(),
      plaintextBytes: plain.bytes,
      plaintextSha256: plain.digest(),
    };
    blog.info({ object: name, plaintextBytes: plain.bytes, storedBytes: cipher.bytes }, 'backup: object stored');
    return { object };
  }

  try {
    const dump = await dumpDatabase(config.database, blog);
    estimate += dump.sizeBytes;
    const db = await upload('database', 'db.dump', dump.stream, dump.sizeBytes).catch(async (err: unknown) => {
      await dump.done.catch(() => undefined);
      throw err;
    });
    await dump.done;
    const facts = await dump.facts;
    const objects = [db.object];

    let maildir: Manifest['maildir'];
    if (b.include.maildir) {
      const tree = packTree(b.include.maildir, { sampleFiles: b.include.sampleFiles, log: blog });
      const up = await upload('maildir', 'maildir.tar', tree.stream, 0);
      objects.push(up.object);
      maildir = { ...(await tree.stats), root: b.include.maildir };
    }
    let extras: Manifest['extras'];
    if (b.include.extras.length) {
      const tree = packTree(b.include.extras, { sampleFiles: b.include.sampleFiles, log: blog });
      const up = await upload('extras', 'extras.tar', tree.stream, 0);
      objects.push(up.object);
      extras = { ...(await tree.stats), roots: b.include.extras };
    }

    const manifest = signManifest(
      {
        format: MANIFEST_FORMAT,
        id,
        host: config.hostname || os.hostname(),
        startedAt: started.toISOString(),
        completedAt: now().toISOString(),
        versions: {
          suite: VERSION,
          node: process.version,
          postgres: facts.serverVersion,
          pgDump: facts.pgDumpVersion,
          compressor: await compressorVersion(compression),
        },
        key: wrapped,
        objects,
        database: facts,
        ...(maildir ? { maildir } : {}),
        ...(extras ? { extras } : {}),
      },
      dataKey,
    );
    const manifestKey = `${folder}${MANIFEST_NAME}`;
    await store.put(manifestKey, Buffer.from(canonicalJson(manifest) + '\n'));
    const durationMs = performance.now() - t0;
    blog.info({ objects: objects.length, durationMs: Math.round(durationMs) }, 'backup: complete');
    return { manifest, manifestKey, durationMs };
  } catch (err) {
    // The folder has no manifest, so nothing will ever use it; removing it now saves the space
    // (retention would remove it later anyway if this fails too).
    await store.delete(uploadedKeys).catch((e: Error) => blog.warn({ err: e.message }, 'backup: could not remove the incomplete objects'));
    blog.error({ err: (err as Error).message }, 'backup: failed');
    throw err;
  } finally {
    dataKey.fill(0);
  }
}
