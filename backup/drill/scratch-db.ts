/**
 * The drill's scratch database: created on the target server, restored into with pg_restore,
 * dropped at the end (also when a check failed). The extensions the dump's schema relies on are
 * created first: a one-schema dump does not carry them (btree_gin lives in `public`).
 */
import pg from 'pg';
import { redactUrl, quoteIdent } from '../../core/db/pool.ts';
import { runProgram } from '../process-stream.ts';
import { libpqEnv } from '../sources/postgres.ts';


export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw new Error(`cannot connect to ${redactUrl(url)}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface ScratchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** `ceerion_drill_<id>`: recognisable, so a drill killed half-way leaves an obvious leftover. */
export function scratchName(backupId: string, suffix: string): string {
  return `ceerion_drill_${backupId.toLowerCase().replace(/[^a-z0-9]/g, '_')}_${suffix}`.slice(0, 63);
}

export async function createScratchDatabase(targetUrl: string, name: string, extensions: string[]): Promise<ScratchDatabase> {
  await withClient(targetUrl, (c) => c.query(`CREATE DATABASE ${quoteIdent(name)}`));
  const url = withDatabase(targetUrl, name);
  const drop = () => withClient(targetUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`)).then(() => undefined);
  try {
    await withClient(url, async (c) => {
      for (const ext of extensions) await c.query(`CREATE EXTENSION IF NOT EXISTS ${quoteIdent(ext)} SCHEMA public`);
    });
  } catch (err) {
    await drop().catch(() => undefined);
    throw err;
  }
  return { name, url, drop };
}

/** The archive's table of contents: how many tables it would create. */
export async function archiveTables(dumpFile: string): Promise<string[]> {
  const toc = await runProgram('pg_restore', ['--list', dumpFile]);
  const tables: string[] = [];
  // "215; 1259 16390 TABLE ceerion accounts postgres" (TABLE DATA lines are the rows, not tables)
  for (const line of toc.split('\n')) {
    const m = /^\d+; \d+ \d+ TABLE (?!DATA )(\S+) (\S+) /.exec(line);
    if (m) tables.push(m[2]!);
  }
  return tables;
}

export async function restoreArchive(dumpFile: string, url: string, jobs: number): Promise<void> {
  await runProgram(
    'pg_restore',
    ['--no-owner', '--no-privileges', '--exit-on-error', `--jobs=${jobs}`, '--no-password', `--dbname=${new URL(url).pathname.slice(1)}`, dumpFile],
    { env: libpqEnv(url) },
  );
}

export { withClient };
