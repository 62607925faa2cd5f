/**
 * A small migrator. Each module keeps `migrations/NNNN_name.sql`; `migrate(pool, module, dir)`
 * applies the ones not yet recorded in `schema_migrations`, in version order, and returns them.
 *
 * - Each migration runs in its own transaction together with its `schema_migrations` row, so a
 *   failing file leaves nothing half-applied and is retried on the next start.
 * - A session advisory lock (per schema) serializes concurrent starters: the second one waits,
 *   then finds everything applied. The lock dies with the connection if the process does.
 * - Applied files are checksummed (SHA-256): editing one after it ran is an error naming it, as
 *   is a recorded version with no file (a database migrated by a newer release).
 * - Migration files must not contain BEGIN/COMMIT themselves (each already runs in a transaction).
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { quoteIdent } from './pool.ts';

export class MigrationError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MigrationError';
  }
}

export interface MigrationFile {
  version: number;
  name: string;
  file: string;
  sql: string;
  checksum: string;
}

export interface AppliedMigration {
  module: string;
  version: number;
  name: string;
}

const FILE = /^(\d{4})_([a-z0-9_]+)\.sql$/;
/** First key of the two-int advisory lock: "ceer", so it cannot collide with other users of locks. */
const LOCK_CLASS = 0x63656572;

/** The module's migrations, in version order; a misnamed or duplicate `.sql` file is an error. */
export async function readMigrations(dir: string): Promise<MigrationFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    throw new MigrationError(`cannot read migrations folder ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const out: MigrationFile[] = [];
  for (const file of names.filter((n) => n.endsWith('.sql')).sort()) {
    const m = FILE.exec(file);
    // A silently skipped file would leave the schema behind what the code expects.
    if (!m) throw new MigrationError(`${path.join(dir, file)}: migration files are named NNNN_name.sql (lower case)`);
    const version = Number(m[1]);
    const clash = out.find((o) => o.version === version);
    if (clash) throw new MigrationError(`${dir}: ${clash.file} and ${file} have the same version ${m[1]}`);
    const sql = await readFile(path.join(dir, file), 'utf8');
    out.push({ version, name: m[2]!, file, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return out;
}


export async function migrate(pool: pg.Pool, module: string, dir: string): Promise<AppliedMigration[]> {
  const files = await readMigrations(dir);
  const client = await pool.connect();
  let broken: Error | undefined;
  // pg emits 'error' on a checked-out client when the server goes away, and the pool listens only
  // while the client is idle: without this listener that event would crash the process.
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    const { rows } = await client.query<{ schema: string | null }>('SELECT current_schema() AS schema');
    const schema = rows[0]?.schema;
    if (!schema) throw new MigrationError('no schema to migrate: the search_path names no existing schema');
    // Qualified, so a schema_migrations table of another tool in `public` is never read.
    const table = `${quoteIdent(schema)}.schema_migrations`;
    await client.query('SELECT pg_advisory_lock($1, hashtext($2))', [LOCK_CLASS, schema]);
    try {
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${table} (
           module text NOT NULL,
           version integer NOT NULL,
           name text NOT NULL,
           checksum text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now(),
           PRIMARY KEY (module, version))`,
      );
      const applied = await client.query<{ version: number; name: string; checksum: string }>(
        `SELECT version, name, checksum FROM ${table} WHERE module = $1 ORDER BY version`,
        [module],
      );
      const known = new Map(applied.rows.map((r) => [r.version, r]));
      for (const row of applied.rows) {
        const file = files.find((f) => f.version === row.version);
        if (!file) {
          throw new MigrationError(
            `${module} migration ${String(row.version).padStart(4, '0')}_${row.name} is recorded in ${schema}.schema_migrations ` +
              `but has no file in ${dir}: was the database migrated by a newer release?`,
          );
        }
        if (file.checksum !== row.checksum) {
          throw new MigrationError(
            `${module} migration ${file.file} was changed after it was applied to schema ${schema} ` +
              `(checksum ${row.checksum.slice(0, 12)}… recorded, ${file.checksum.slice(0, 12)}… on disk): ` +
              `restore the file and put the change in a new migration`,
          );
        }
      }
      const done: AppliedMigration[] = [];
      for (const file of files.filter((f) => !known.has(f.version))) {
        await client.query('BEGIN');
        try {
          // No parameters: the simple query protocol runs a file of several statements.
          await client.query(file.sql);
          await client.query(`INSERT INTO ${table} (module, version, name, checksum) VALUES ($1, $2, $3, $4)`, [
            module,
            file.version,
            file.name,
            file.checksum,
          ]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {});
          throw new MigrationError(`${module} migration ${file.file} failed: ${(err as Error).message}`, { cause: err });
        }
        done.push({ module, version: file.version, name: file.name });
      }
      return done;
    } finally {
      // Not thrown: it would hide the migration's own error; a failed unlock discards the session below.
      await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [LOCK_CLASS, schema]).catch((err: Error) => (broken ??= err));
    }
  } catch (err) {
    broken = err as Error;
    throw err;
  } finally {
    // After a failure the session may hold a lock or an aborted transaction: discard it, don't pool it.
    client.off('error', onError);
    client.release(broken);
  }
}
