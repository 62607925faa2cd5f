/**
 * `ceerion backup restore`: the real thing, for the day it is needed. The same checked path as the
 * drill (signed manifest, ciphertext hash, authenticated decryption, plaintext hash), then:
 * - the database archive is restored into `--database` (a new, empty database is created when the
 *   named one does not exist; restoring over a live schema is refused: drop or rename it first);
 * - the maildir and extras trees are extracted under the given folders.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { Config } from '../core/config/schema.ts';
import type { Logger } from '../core/log.ts';
import { fetchManifest, listBackups } from './catalog.ts';
import type { KeyProvider, ObjectStore } from './contracts.ts';
import { keyContext, manifestSignatureValid, type ManifestObject } from './manifest.ts';
import { DrillCheckError, decryptObject, downloadObject } from './drill/objects.ts';
import { restoreArchive, withClient, withDatabase } from './drill/scratch-db.ts';
import { extractTree } from './sources/tree-archive.ts';
import { quoteIdent } from '../core/db/pool.ts';

export interface RestoreOptions {
  backupId?: string;
  /** postgres://…/dbname to restore the database into. */
  database?: string;
  maildirDir?: string;
  extrasDir?: string;
  jobs?: number;
}


async function prepareDatabase(url: string, schema: string, extensions: string[]): Promise<void> {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  if (!name) throw new Error('--database must name a database: postgres://host/dbname');
  const exists = await withClient(withDatabase(url, 'postgres'), async (c) => {
    const r = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (r.rowCount === 0) await c.query(`CREATE DATABASE ${quoteIdent(name)}`);
    return r.rowCount !== 0;
  });
  await withClient(url, async (c) => {
    if (exists) {
      const r = await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
      if (r.rowCount) throw new Error(`database ${name} already has a schema ${schema}: restore into a new database, or drop/rename the schema first`);
    }
    for (const ext of extensions) await c.query(`CREATE EXTENSION IF NOT EXISTS ${quoteIdent(ext)} SCHEMA public`);
  });
}

export async function restoreBackup(config: Config, deps: { store: ObjectStore; keys: KeyProvider; log: Logger }, opts: RestoreOptions): Promise<{ backupId: string }> {
  const { store, keys, log } = deps;
  const prefix = config.backup.s3.prefix;
  const id = opts.backupId ?? (await listBackups(store, prefix)).filter((b) => b.hasManifest).at(-1)?.id;
  if (!id) throw new Error(`no complete backup under ${store.description}`);
  const manifest = await fetchManifest(store, prefix, id);
  const dataKey = await keys.unwrap(manifest.key, keyContext(prefix, id));
  if (!manifestSignatureValid(manifest, dataKey)) throw new DrillCheckError('manifest', undefined, `backup ${id}: signature does not verify`);
  const work = await mkdtemp(path.join(config.backup.drill.workDir || os.tmpdir(), 'ceerion-restore-'));
  try {
    const fetch = async (obj: ManifestObject) => {
      const file = path.join(work, `${obj.name}.enc`);
      await downloadObject(store, obj, file);
      log.info({ backup: id, object: obj.name }, 'restore: downloaded and checked');
      return file;
    };
    for (const obj of manifest.objects) {
      if (obj.kind === 'database' && opts.database) {
        await prepareDatabase(opts.database, manifest.database.schema, manifest.database.extensions);
        const dump = path.join(work, 'db.dump');
        await decryptObject(await fetch(obj), obj, dataKey, id, createWriteStream(dump));
        await restoreArchive(dump, opts.database, opts.jobs ?? config.backup.drill.restoreJobs);
        log.info({ backup: id }, 'restore: database restored');
      }
      const dir = obj.kind === 'maildir' ? opts.maildirDir : obj.kind === 'extras' ? opts.extrasDir : undefined;
      if (dir) {
        const tar = new PassThrough({ highWaterMark: 1024 * 1024 });
        const [, stats] = await Promise.all([decryptObject(await fetch(obj), obj, dataKey, id, tar), extractTree(tar, dir)]);
        log.info({ backup: id, object: obj.name, files: stats.files, bytes: stats.bytes, dir }, 'restore: files extracted');
      }
    }
  } finally {
    dataKey.fill(0);
    await rm(work, { recursive: true, force: true });
  }
  return { backupId: id };
}
