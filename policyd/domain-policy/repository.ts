/**
 * Reading and writing `policy_domains` (the CLI, later the admin API). Writes are validated with
 * the same schemas policyd applies when it loads the table, so a row written here is never one
 * policyd ignores. Every write fires the table's NOTIFY trigger: running policy services reload.
 */
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { domainName } from '../../core/config/types.ts';
import { migrate, type AppliedMigration } from '../../core/db/migrate.ts';
import {
  DEFAULT_DOMAIN,
  greylistPatchSchema,
  limitsPatchSchema,
  parseRow,
  PolicyRowError,
  type GreylistPatch,
  type LimitsPatch,
} from './merge.ts';
import type { GreylistConfig, Limits, Rate } from '../../core/config/policyd.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
/** The name this module's migrations are recorded under in schema_migrations. */
export const MIGRATIONS_MODULE = 'policyd';

export function migratePolicyDomains(pool: pg.Pool): Promise<AppliedMigration[]> {
  return migrate(pool, MIGRATIONS_MODULE, MIGRATIONS_DIR);
}

/** Bad input from the caller (a domain that is not one, a value the schema refuses). */
export class PolicyInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyInputError';
  }
}

export interface DomainPolicy {
  domain: string;
  /** What this row overrides; empty when `invalid` is set. */
  limits: LimitsPatch;
  greylist: GreylistPatch;
  note: string | null;
  updatedAt: Date;
  /** Set when the stored JSON fails validation (written around this module): policyd ignores the row. */
  invalid?: string;
}

/**
 * A change to one row. A key set to `null` is removed, so the domain inherits it again; absent
 * keys stay as they are. `note: null` clears the note.
 */
export interface DomainPolicyPatch {
  limits?: { [K in keyof Limits]?: Rate | null };
  greylist?: { [K in keyof GreylistConfig]?: GreylistConfig[K] | null };
  note?: string | null;
}

/** `_default` or a domain name, lower-cased, without a trailing dot. */
export function normalizeDomain(input: string): string {
  if (input === DEFAULT_DOMAIN) return input;
  const parsed = domainName.safeParse(input.replace(/\.$/, ''));
  if (!parsed.success) throw new PolicyInputError(`${JSON.stringify(input)} is not a domain name such as example.com (or ${DEFAULT_DOMAIN})`);
  return parsed.data;
}

interface Row {
  domain: string;
  limits: unknown;
  greylist: unknown;
  note: string | null;
  updated_at: Date;
}

function toPolicy(row: Row): DomainPolicy {
  const base = { domain: row.domain, note: row.note, updatedAt: row.updated_at };
  try {
    return { ...base, ...parseRow(row) };
  } catch (err) {
    if (!(err instanceof PolicyRowError)) throw err;
    return { ...base, limits: {}, greylist: {}, invalid: err.message };
  }
}

/** Split a patch section into keys to set (validated) and keys to remove. */
function splitPatch(section: 'limits' | 'greylist', patch: Record<string, unknown> | undefined) {
  const set: Record<string, unknown> = {};
  const remove: string[] = [];
  for (const [key, value] of Object.entries(patch ?? {})) {
    if (value === null) remove.push(key);
    else if (value !== undefined) set[key] = value;
  }
  const schema = section === 'limits' ? limitsPatchSchema : greylistPatchSchema;
  const known = Object.keys(schema.shape);
  const unknown = remove.filter((k) => !known.includes(k));
  if (unknown.length) throw new PolicyInputError(`${section}.${unknown[0]}: unknown key`);
  const parsed = schema.safeParse(set);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.code === 'unrecognized_keys' ? issue.keys[0] : issue.path.join('.');
    throw new PolicyInputError(`${section}.${key}: ${issue.code === 'unrecognized_keys' ? 'unknown key' : issue.message}`);
  }
  return { set: parsed.data as Record<string, unknown>, remove };
}

const COLUMNS = 'domain, limits, greylist, note, updated_at';

/**
 * Create or change a domain's row in one transaction: the patch is merged into the stored JSON by
 * PostgreSQL (so concurrent writers to different keys both win), then the result is validated
 * and the transaction rolled back if it fails (say, a row made invalid by hand earlier).
 */
export async function setDomainPolicy(pool: pg.Pool, domainInput: string, patch: DomainPolicyPatch): Promise<DomainPolicy> {
  const domain = normalizeDomain(domainInput);
  const limits = splitPatch('limits', patch.limits);
  const greylist = splitPatch('greylist', patch.greylist);
  const client = await pool.connect();
  let broken: Error | undefined;
  // pg emits 'error' on a checked-out client when the server goes away, and the pool listens only
  // while the client is idle: without this listener that event would crash the process.
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<Row>(
      `INSERT INTO policy_domains AS p (domain, limits, greylist, note)
       VALUES ($1, $2::jsonb - $3::text[], $4::jsonb - $5::text[], $6)
       ON CONFLICT (domain) DO UPDATE SET
         limits = (p.limits || $2::jsonb) - $3::text[],
         greylist = (p.greylist || $4::jsonb) - $5::text[],
         note = CASE WHEN $7 THEN EXCLUDED.note ELSE p.note END
       RETURNING ${COLUMNS}`,
      [domain, JSON.stringify(limits.set), limits.remove, JSON.stringify(greylist.set), greylist.remove, patch.note ?? null, patch.note !== undefined],
    );
    const policy = toPolicy(rows[0]!);
    if (policy.invalid) {
      await client.query('ROLLBACK');
      throw new PolicyInputError(`${policy.invalid} (fix or reset the stored row: ceerion policy delete ${domain})`);
    }
    await client.query('COMMIT');
    return policy;
  } catch (err) {
    if (!(err instanceof PolicyInputError)) {
      broken = err as Error;
      await client.query('ROLLBACK').catch(() => {});
    }
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

export async function getDomainPolicy(pool: pg.Pool | pg.PoolClient, domainInput: string): Promise<DomainPolicy | undefined> {
  const { rows } = await pool.query<Row>(`SELECT ${COLUMNS} FROM policy_domains WHERE domain = $1`, [normalizeDomain(domainInput)]);
  return rows[0] && toPolicy(rows[0]);
}

/** Every row, `_default` first, then by domain. */
export async function listDomainPolicies(pool: pg.Pool | pg.PoolClient): Promise<DomainPolicy[]> {
  const { rows } = await pool.query<Row>(`SELECT ${COLUMNS} FROM policy_domains ORDER BY domain <> $1, domain`, [DEFAULT_DOMAIN]);
  return rows.map(toPolicy);
}

/** True when a row was deleted. `_default` is never deleted: every domain without a row needs it. */
export async function deleteDomainPolicy(pool: pg.Pool | pg.PoolClient, domainInput: string): Promise<boolean> {
  const domain = normalizeDomain(domainInput);
  if (domain === DEFAULT_DOMAIN) {
    throw new PolicyInputError(`${DEFAULT_DOMAIN} cannot be deleted; change it with \`ceerion policy set ${DEFAULT_DOMAIN} …\``);
  }
  const { rowCount } = await pool.query('DELETE FROM policy_domains WHERE domain = $1', [domain]);
  return (rowCount ?? 0) > 0;
}
