/**
 * The drill's checks on a restored database, each compared against the facts the manifest took in
 * the dump's own snapshot: exact row counts, applied migrations, the newest message, and no
 * foreign-key orphans. Each failed check becomes one line of the report, not an exception, so one
 * run shows everything that is wrong.
 */
import type pg from 'pg';
import type { Manifest } from '../manifest.ts';
import type { DrillCheck } from './objects.ts';
import { quoteIdent } from '../../core/db/pool.ts';

export interface CheckResult {
  check: DrillCheck;
  ok: boolean;
  detail: string;
}


/** How far the newest message may lie after the manifest's completion time (clock skew). */
const FUTURE_SKEW_MS = 5 * 60_000;

export async function verifyRestoredDatabase(c: pg.Client, manifest: Manifest): Promise<CheckResult[]> {
  const db = manifest.database;
  const s = quoteIdent(db.schema);
  const out: CheckResult[] = [];

  const wrong: string[] = [];
  for (const [table, want] of Object.entries(db.rowCounts)) {
    try {
      const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}.${quoteIdent(table)}`);
      const got = Number(r.rows[0]!.n);
      if (got !== want) wrong.push(`${table}: ${got} rows, manifest ${want}`);
    } catch (err) {
      wrong.push(`${table}: ${(err as Error).message}`);
    }
  }
  const total = Object.values(db.rowCounts).reduce((a, b) => a + b, 0);
  out.push({ check: 'row-counts', ok: wrong.length === 0, detail: wrong.length ? wrong.join('; ') : `${Object.keys(db.rowCounts).length} tables, ${total} rows, all equal` });

  if (Object.keys(db.migrations).length) {
    const r = await c.query<{ module: string; version: number }>(`SELECT module, max(version) AS version FROM ${s}.schema_migrations GROUP BY module`).catch(() => ({ rows: [] as Array<{ module: string; version: number }> }));
    const got = Object.fromEntries(r.rows.map((x) => [x.module, Number(x.version)]));
    const diff = Object.entries(db.migrations).filter(([m, v]) => got[m] !== v).map(([m, v]) => `${m}: ${got[m] ?? 'none'}, manifest ${v}`);
    out.push({ check: 'migrations', ok: diff.length === 0, detail: diff.length ? diff.join('; ') : Object.entries(db.migrations).map(([m, v]) => `${m} ${v}`).join(', ') });
  }

  if ('indexed_messages' in db.rowCounts) {
    const r = await c.query<{ t: Date | null }>(`SELECT max(received_at) AS t FROM ${s}.indexed_messages`);
    const got = r.rows[0]?.t ? r.rows[0].t.toISOString() : null;
    const completed = Date.parse(manifest.completedAt);
    let detail: string;
    let ok: boolean;
    if (got !== db.newestMessageAt) {
      ok = false;
      detail = `newest message ${got ?? 'none'}, manifest ${db.newestMessageAt ?? 'none'}`;
    } else if (got && Date.parse(got) > completed + FUTURE_SKEW_MS) {
      ok = false;
      detail = `newest message ${got} is after the backup completed (${manifest.completedAt}): clock or data problem`;
    } else {
      ok = true;
      detail = got ? `newest message ${got} (${formatAge(completed - Date.parse(got))} before the backup)` : 'no messages';
    }
    out.push({ check: 'newest-message', ok, detail });
  }

  out.push(await foreignKeyOrphans(c, db.schema));
  return out;
}

function formatAge(ms: number): string {
  if (ms < 0) return 'just';
  const h = ms / 3_600_000;
  return h < 48 ? `${h.toFixed(1)} h` : `${(h / 24).toFixed(1)} days`;
}

/** Every foreign key of the schema, checked by query (MATCH SIMPLE: a NULL column exempts a row). */
async function foreignKeyOrphans(c: pg.Client, schema: string): Promise<CheckResult> {
  const fks = await c.query<{ name: string; child: string; parent: string; parent_schema: string; cols: string[]; refs: string[] }>(
    `SELECT con.conname AS name, cl.relname AS child, pl.relname AS parent, pn.nspname AS parent_schema,
            array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i)::text[] AS cols,
            array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)::text[] AS refs
       FROM pg_constraint con
       JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
       JOIN pg_class pl ON pl.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pl.relnamespace
      WHERE con.contype = 'f' AND cn.nspname = $1 ORDER BY con.conname`,
    [schema],
  );
  const orphans: string[] = [];
  for (const fk of fks.rows) {
    const notNull = fk.cols.map((col) => `c.${quoteIdent(col)} IS NOT NULL`).join(' AND ');
    const join = fk.cols.map((col, i) => `p.${quoteIdent(fk.refs[i]!)} = c.${quoteIdent(col)}`).join(' AND ');
    const r = await c.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${quoteIdent(schema)}.${quoteIdent(fk.child)} c
        WHERE ${notNull} AND NOT EXISTS (SELECT 1 FROM ${quoteIdent(fk.parent_schema)}.${quoteIdent(fk.parent)} p WHERE ${join})`,
    );
    const n = Number(r.rows[0]!.n);
    if (n > 0) orphans.push(`${fk.name}: ${n} rows of ${fk.child} point to missing ${fk.parent} rows`);
  }
  return { check: 'foreign-keys', ok: orphans.length === 0, detail: orphans.length ? orphans.join('; ') : `${fks.rows.length} foreign keys, no orphans` };
}
