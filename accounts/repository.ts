/**
 * The accounts table (Dovecot's passdb/userdb, Postfix's virtual mailbox map): migrations, the
 * lookups the LMTP indexer needs, and what `ceerion account …` changes. Aliases are in aliases.ts,
 * removing an account (and what the indexer keeps for it) in remove.ts.
 *
 * Functions take addresses as typed by an operator and normalise them; the ones that create rows
 * also validate them (address.ts). Failures an operator can act on are typed errors with a
 * one-line message.
 */
import path from 'node:path';
import type pg from 'pg';
import { migrate, type AppliedMigration } from '../core/db/migrate.ts';
import { accountAddress, normaliseAddress } from './address.ts';

export { normaliseAddress } from './address.ts';

export const ACCOUNTS_MIGRATIONS_MODULE = 'accounts';
const MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');

export function migrateAccounts(pool: pg.Pool): Promise<AppliedMigration[]> {
  return migrate(pool, ACCOUNTS_MIGRATIONS_MODULE, MIGRATIONS_DIR);
}

export class AccountExistsError extends Error {
  constructor(readonly address: string) {
    super(`${address} already exists`);
    this.name = 'AccountExistsError';
  }
}

export class NoSuchAccountError extends Error {
  constructor(readonly address: string) {
    super(`there is no account ${address}`);
    this.name = 'NoSuchAccountError';
  }
}

const UNIQUE_VIOLATION = '23505';
export const isUniqueViolation = (err: unknown): boolean => (err as { code?: string }).code === UNIQUE_VIOLATION;

/** Whether `address` is an enabled account (an exact, indexed lookup). */
export async function accountExists(pool: pg.Pool, address: string): Promise<boolean> {
  const { rowCount } = await pool.query('SELECT 1 FROM accounts WHERE address = $1 AND enabled', [normaliseAddress(address)]);
  return (rowCount ?? 0) > 0;
}

/**
 * Adds an account with an already hashed password (`{SCHEME}hash`); returns its id. The address is
 * only lower-cased (see createAccount for the checked way). AccountExistsError if it is taken.
 */
export async function insertAccount(pool: pg.Pool, account: { address: string; passwordHash: string; quotaRule?: string | null; enabled?: boolean }): Promise<number> {
  const address = normaliseAddress(account.address);
  try {
    const { rows } = await pool.query<{ id: string }>(
      'INSERT INTO accounts (address, password, quota_rule, enabled) VALUES ($1, $2, $3, $4) RETURNING id',
      [address, account.passwordHash, account.quotaRule ?? null, account.enabled ?? true],
    );
    return Number(rows[0]!.id);
  } catch (err) {
    if (isUniqueViolation(err)) throw new AccountExistsError(address);
    throw err;
  }
}

/** insertAccount for an address that passes accountAddress (InvalidAddressError otherwise). */
export async function createAccount(pool: pg.Pool, account: { address: string; passwordHash: string; quotaRule?: string | null; enabled?: boolean }): Promise<number> {
  return insertAccount(pool, { ...account, address: accountAddress(account.address) });
}

export interface Account {
  address: string;
  enabled: boolean;
  /** Dovecot quota_rule; null: quota.conf's default rule. */
  quotaRule: string | null;
  createdAt: Date;
  /** The `{SCHEME}` of the stored hash, e.g. ARGON2ID. */
  scheme: string;
}

export interface AccountSummary extends Account {
  /** Aliases whose destination is this account. */
  aliases: number;
}

interface AccountRow {
  address: string;
  enabled: boolean;
  quota_rule: string | null;
  created_at: Date;
  scheme: string;
}

const ACCOUNT_COLUMNS = `address, enabled, quota_rule, created_at, substring(password from '^\\{([A-Z0-9-]+)\\}') AS scheme`;

const toAccount = (r: AccountRow): Account => ({ address: r.address, enabled: r.enabled, quotaRule: r.quota_rule, createdAt: r.created_at, scheme: r.scheme });

export async function getAccount(pool: pg.Pool, address: string): Promise<Account | undefined> {
  const { rows } = await pool.query<AccountRow>(`SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE address = $1`, [normaliseAddress(address)]);
  return rows[0] && toAccount(rows[0]);
}

/** Every account, by domain then address, with the number of aliases delivering to it. */
export async function listAccounts(pool: pg.Pool): Promise<AccountSummary[]> {
  const { rows } = await pool.query<AccountRow & { aliases: string }>(
    `SELECT ${ACCOUNT_COLUMNS}, (SELECT count(*) FROM aliases WHERE destination = accounts.address) AS aliases
       FROM accounts ORDER BY split_part(address, '@', 2), address`,
  );
  return rows.map((r) => ({ ...toAccount(r), aliases: Number(r.aliases) }));
}

/** One UPDATE of one account; NoSuchAccountError when no row has that address. */
async function updateAccount(pool: pg.Pool, address: string, set: string, value: unknown): Promise<void> {
  const normal = normaliseAddress(address);
  const { rowCount } = await pool.query(`UPDATE accounts SET ${set} = $2 WHERE address = $1`, [normal, value]);
  if (!rowCount) throw new NoSuchAccountError(normal);
}

/** Replaces the stored hash (`{SCHEME}hash`, e.g. from hashPassword). */
export function setPassword(pool: pg.Pool, address: string, passwordHash: string): Promise<void> {
  return updateAccount(pool, address, 'password', passwordHash);
}

/** A Dovecot quota_rule (quota.ts's quotaRuleFor), or null for the default rule. */
export function setQuotaRule(pool: pg.Pool, address: string, quotaRule: string | null): Promise<void> {
  return updateAccount(pool, address, 'quota_rule', quotaRule);
}

/** A disabled account keeps its row and mail but neither logs in nor receives mail. */
export function setEnabled(pool: pg.Pool, address: string, enabled: boolean): Promise<void> {
  return updateAccount(pool, address, 'enabled', enabled);
}
