/**
 * Removing an account, and everything this database holds for it, in one transaction:
 * - the accounts row (Dovecot and Postfix stop knowing the address: new mail is refused);
 * - aliases delivering to it (each would now bounce its copy) and aliases from it;
 * - when the LMTP indexer's tables exist (lmtp-indexer/index/migrations): its indexed messages,
 *   events and event counter, and its API tokens. Tokens are not checked against the accounts
 *   table when used, so a kept token would go on searching the old mail, and would open the mail
 *   of a future account that reuses the address.
 * The mail itself is Dovecot's, under the account's mail home: it stays until an admin deletes it.
 */
import type pg from 'pg';
import { normaliseAddress } from './address.ts';
import { NoSuchAccountError } from './repository.ts';

export interface Removal {
  address: string;
  /** Aliases deleted with the account, as source → destination. */
  aliases: Array<{ source: string; destination: string }>;
  /** Rows of the LMTP indexer's tables; all 0 when the indexer's tables don't exist. */
  indexedMessages: number;
  events: number;
  tokens: number;
}

/** Deletes `DELETE … WHERE account = $1` from the indexer's `table` when it exists; returns the count. */
async function deleteIndexRows(client: pg.PoolClient, table: string, address: string): Promise<number> {
  const { rows } = await client.query<{ exists: boolean }>(`SELECT to_regclass(format('%I.%I', current_schema(), $1::text)) IS NOT NULL AS exists`, [table]);
  if (!rows[0]?.exists) return 0;
  const { rowCount } = await client.query(`DELETE FROM ${table} WHERE account = $1`, [address]);
  return rowCount ?? 0;
}

export async function removeAccount(pool: pg.Pool, addressInput: string): Promise<Removal> {
  const address = normaliseAddress(addressInput);
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    try {
      const { rowCount } = await client.query('DELETE FROM accounts WHERE address = $1', [address]);
      if (!rowCount) throw new NoSuchAccountError(address);
      const aliases = await client.query<{ source: string; destination: string }>(
        'DELETE FROM aliases WHERE destination = $1 OR source = $1 RETURNING source, destination',
        [address],
      );
      // Events first: they reference indexed_messages.
      const events = await deleteIndexRows(client, 'mail_events', address);
      await deleteIndexRows(client, 'mail_event_counters', address);
      const indexedMessages = await deleteIndexRows(client, 'indexed_messages', address);
      const tokens = await deleteIndexRows(client, 'api_tokens', address);
      await client.query('COMMIT');
      const sorted = aliases.rows.sort((a, b) => a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination));
      return { address, aliases: sorted, indexedMessages, events, tokens };
    } catch (err) {
      await client.query('ROLLBACK').catch((e: Error) => (broken = e));
      throw err;
    }
  } finally {
    client.release(broken);
  }
}
