// Shared by the push tests: a migrated schema of its own, index rows as the LMTP indexer writes
// them (only the columns push cares about filled in), and readers for rows and events.
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import type pg from 'pg';
import { createPool } from '../../../core/db/pool.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import { testSchema } from '../../harness/postgres.ts';

export async function migratedPool(t: TestContext): Promise<{ pool: pg.Pool; url: string; schema: string }> {
  const db = testSchema(t);
  const pool = createPool(db);
  t.after(() => pool.end());
  await migrateIndex(pool);
  return { pool, ...db };
}

/** A row as the indexer writes it after Dovecot's 250: no mailbox, UID or flags yet. */
export async function insertIndexRow(pool: pg.Pool, row: { account: string; messageId: string | null; receivedAt?: Date }): Promise<number> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO indexed_messages (account, content_sha256, size_bytes, received_at, message_id, language, tsv)
     VALUES ($1, $2, 100, $3, $4, 'simple', to_tsvector('simple', 'push test'))
     RETURNING id`,
    [row.account, randomBytes(32), row.receivedAt ?? new Date(), row.messageId],
  );
  return Number(rows[0]!.id);
}

export interface IndexRow {
  mailbox: string | null;
  uidValidity: number | null;
  uid: number | null;
  flags: string[];
  expunged: boolean;
}

export async function readRow(pool: pg.Pool, id: number): Promise<IndexRow> {
  const { rows } = await pool.query<{ mailbox: string | null; uid_validity: string | null; imap_uid: string | null; flags: string[]; expunged_at: Date | null }>(
    'SELECT mailbox, uid_validity, imap_uid, flags, expunged_at FROM indexed_messages WHERE id = $1',
    [id],
  );
  const r = rows[0];
  if (!r) throw new Error(`no row ${id}`);
  return {
    mailbox: r.mailbox,
    uidValidity: r.uid_validity === null ? null : Number(r.uid_validity),
    uid: r.imap_uid === null ? null : Number(r.imap_uid),
    flags: [...r.flags].sort(),
    expunged: r.expunged_at !== null,
  };
}

export interface EventRow {
  kind: string;
  messageRow: number | null;
  payload: Record<string, unknown>;
}

export async function readEvents(pool: pg.Pool, account: string): Promise<EventRow[]> {
  const { rows } = await pool.query<{ kind: string; message_row: string | null; payload: Record<string, unknown> }>(
    'SELECT kind, message_row, payload FROM mail_events WHERE account = $1 ORDER BY seq',
    [account],
  );
  return rows.map((r) => ({ kind: r.kind, messageRow: r.message_row === null ? null : Number(r.message_row), payload: r.payload }));
}

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes; then throws with the last state. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`${what}: not reached within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
