/**
 * The accounts table (Dovecot's passdb/userdb, Postfix's virtual mailbox map): migrations and the
 * lookups the LMTP indexer needs. Account management (`ceerion account …`) builds on this.
 */
import path from 'node:path';
import type pg from 'pg';
import { migrate, type AppliedMigration } from '../core/db/migrate.ts';

export const ACCOUNTS_MIGRATIONS_MODULE = 'accounts';
const MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');

export function migrateAccounts(pool: pg.Pool): Promise<AppliedMigration[]> {
  return migrate(pool, ACCOUNTS_MIGRATIONS_MODULE, MIGRATIONS_DIR);
}

/** Addresses are case-insensitive in practice; the table stores them lower case. */
export const normaliseAddress = (address: string): string => address.trim().toLowerCase();

/** Whether `address` is an enabled account (an exact, indexed lookup). */
export async function accountExists(pool: pg.Pool, address: string): Promise<boolean> {
  const { rowCount } = await pool.query('SELECT 1 FROM accounts WHERE address = $1 AND enabled', [normaliseAddress(address)]);
  return (rowCount ?? 0) > 0;
}

/** Adds an account with an already hashed password (`{SCHEME}hash`); returns its id. */
export async function insertAccount(pool: pg.Pool, account: { address: string; passwordHash: string; quotaRule?: string | null }): Promise<number> {
  const { rows } = await pool.query<{ id: string }>(
    'INSERT INTO accounts (address, password, quota_rule) VALUES ($1, $2, $3) RETURNING id',
    [normaliseAddress(account.address), account.passwordHash, account.quotaRule ?? null],
  );
  return Number(rows[0]!.id);
}
