/** Migrations the LMTP indexer needs: the accounts table (recipient lookup, token owners) and its own. */
import path from 'node:path';
import type pg from 'pg';
import { migrate, type AppliedMigration } from '../../core/db/migrate.ts';
import { migrateAccounts } from '../../accounts/repository.ts';

export const INDEX_MIGRATIONS_MODULE = 'lmtp-index';
const MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');

export async function migrateIndex(pool: pg.Pool): Promise<AppliedMigration[]> {
  return [...(await migrateAccounts(pool)), ...(await migrate(pool, INDEX_MIGRATIONS_MODULE, MIGRATIONS_DIR))];
}
