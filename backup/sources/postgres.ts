/**
 * The database part of a backup: `pg_dump -Fc -Z0` of the suite's schema, streamed, plus facts
 * read in the very same snapshot, so the drill can compare a restore against what was dumped:
 * exact row counts per table, the applied migrations, the newest indexed message.
 *
 * How the snapshot is shared: our own connection opens a REPEATABLE READ transaction and calls
 * pg_export_snapshot(); pg_dump is started with --snapshot=<that id>. Both then see the same
 * database state, and the transaction stays open until pg_dump has finished (an exported snapshot
 * lives only as long as the transaction that exported it).
 */
import pg from 'pg';
import type { Readable } from 'node:stream';
import type { DatabaseConfig } from '../../core/config/policyd.ts';
import type { Logger } from '../../core/log.ts';
import { redactUrl, quoteIdent } from '../../core/db/pool.ts';
import { runProgram, spawnReadable } from '../process-stream.ts';

export interface DatabaseFacts {
  database: string;
  schema: string;
  serverVersion: string;
  pgDumpVersion: string;
  /** Exact `count(*)` per table of the schema, taken in the dump's snapshot. */
  rowCounts: Record<string, number>;
  /** schema_migrations: the newest applied version per module. */
  migrations: Record<string, number>;
  /** Extensions installed in the database (the dump of one schema does not carry them). */
  extensions: string[];
  /** max(received_at) of indexed_messages, when that table exists and has rows. */
  newestMessageAt: string | null;
  /** Tables + indexes of the schema on disk: the upload's size estimate. */
  sizeBytes: number;
}

export interface DatabaseDump {
  /** Tables + indexes of the schema on disk, known before the dump starts: the upload's size estimate. */
  sizeBytes: number;
  /**
   * Read in the dump's snapshot while pg_dump runs (counting rows of a large table takes a while;
   * on its own connection it overlaps with the dump instead of delaying it).
   */
  facts: Promise<DatabaseFacts>;
  /** pg_dump's custom-format archive; ends only when pg_dump exited with status 0. */
  stream: Readable;
  /** Resolves once pg_dump exited cleanly and the snapshot transaction is closed. */
  done: Promise<void>;
}


/** `postgres://…` → the libpq environment pg_dump understands (no password on the command line). */
export function libpqEnv(url: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const u = new URL(url);
  const env: NodeJS.ProcessEnv = { ...base };
  if (u.hostname) env.PGHOST = decodeURIComponent(u.hostname.replace(/^\[|\]$/g, ''));
  if (u.port) env.PGPORT = u.port;
  if (u.username) env.PGUSER = decodeURIComponent(u.username);
  if (u.password) env.PGPASSWORD = decodeURIComponent(u.password);
  const db = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (db) env.PGDATABASE = db;
  for (const [k, v] of u.searchParams) {
    if (k === 'sslmode') env.PGSSLMODE = v;
    if (k === 'host') env.PGHOST = v; // unix socket directory
  }
  return env;
}

async function readFacts(client: pg.Client, schema: string, sizeBytes: number): Promise<Omit<DatabaseFacts, 'pgDumpVersion'>> {
  const info = await client.query<{ db: string; version: string }>(`SELECT current_database() AS db, current_setting('server_version') AS version`);
  const tables = await client.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname`,
    [schema],
  );
  if (tables.rows.length === 0) throw new Error(`schema ${schema} has no tables: nothing to back up (is database.schema right?)`);
  const rowCounts: Record<string, number> = {};
  for (const { name } of tables.rows) {
    const r = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(schema)}.${quoteIdent(name)}`);
    rowCounts[name] = Number(r.rows[0]!.n);
  }
  const migrations: Record<string, number> = {};
  if ('schema_migrations' in rowCounts) {
    const m = await client.query<{ module: string; version: number }>(
      `SELECT module, max(version) AS version FROM ${quoteIdent(schema)}.schema_migrations GROUP BY module ORDER BY module`,
    );
    for (const row of m.rows) migrations[row.module] = Number(row.version);
  }
  let newestMessageAt: string | null = null;
  if ('indexed_messages' in rowCounts) {
    const n = await client.query<{ t: Date | null }>(`SELECT max(received_at) AS t FROM ${quoteIdent(schema)}.indexed_messages`);
    newestMessageAt = n.rows[0]?.t ? n.rows[0].t.toISOString() : null;
  }
  const ext = await client.query<{ name: string }>(`SELECT extname AS name FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname`);
  return {
    database: info.rows[0]!.db,
    schema,
    serverVersion: info.rows[0]!.version,
    rowCounts,
    migrations,
    extensions: ext.rows.map((r) => r.name),
    newestMessageAt,
    sizeBytes,
  };
}

async function schemaBytes(client: pg.Client, schema: string): Promise<number> {
  const size = await client.query<{ bytes: string | null }>(
    `SELECT sum(pg_total_relation_size(c.oid)) AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm')`,
    [schema],
  );
  return Number(size.rows[0]?.bytes ?? 0);
}

export async function pgDumpVersion(): Promise<string> {
  return (await runProgram('pg_dump', ['--version'])).trim();
}

/**
 * Starts the dump. The caller must consume `stream` and await `done`; on failure, destroying the
 * stream kills pg_dump and `done` rejects.
 */
export async function dumpDatabase(db: DatabaseConfig, log: Logger): Promise<DatabaseDump> {
  const client = new pg.Client({ connectionString: db.url, connectionTimeoutMillis: 10_000 });
  client.on('error', (err) => log.warn({ err: err.message }, 'backup: snapshot connection error'));
  try {
    await client.connect();
  } catch (err) {
    throw new Error(`cannot connect to ${redactUrl(db.url)}: ${(err as Error).message}`, { cause: err });
  }
  let stream: Readable;
  let exited: Promise<void>;
  let sizeBytes: number;
  let snapshot: string;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const snap = await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id');
    snapshot = snap.rows[0]!.id;
    const tables = await client.query('SELECT 1 FROM pg_tables WHERE schemaname = $1 LIMIT 1', [db.schema]);
    if (tables.rowCount === 0) throw new Error(`schema ${db.schema} has no tables: nothing to back up (is database.schema right?)`);
    sizeBytes = await schemaBytes(client, db.schema);
    ({ stream, exited } = spawnReadable(
      'pg_dump',
      ['--format=custom', '--compress=0', `--snapshot=${snapshot}`, `--schema=${db.schema}`, '--no-password'],
      { env: libpqEnv(db.url) },
    ));
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  const facts = (async (): Promise<DatabaseFacts> => ({ ...(await readFacts(client, db.schema, sizeBytes)), pgDumpVersion: await pgDumpVersion() }))();
  facts.then((f) => log.info({ snapshot, tables: Object.keys(f.rowCounts).length, sizeBytes }, 'backup: snapshot facts read'), () => undefined);
  // The transaction (and with it the exported snapshot) must outlive both pg_dump and the counts.
  const done = Promise.all([exited, facts]).then(() => undefined).finally(async () => {
    await client.query('COMMIT').catch(() => undefined);
    await client.end().catch(() => undefined);
  });
  done.catch(() => undefined);
  return { sizeBytes, facts, stream, done };
}
