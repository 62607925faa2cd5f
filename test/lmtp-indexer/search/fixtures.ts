/**
 * Index rows for the search tests, written straight into indexed_messages of a fresh schema, with
 * the tsvector weighted as the indexer builds it (lmtp-indexer/index/writer.ts): A subject, B sender
 * name and every address with its local part and domain, D body.
 */
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import type pg from 'pg';
import { createPool } from '../../../core/db/pool.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import { testSchema } from '../../harness/postgres.ts';

export interface Mail {
  account?: string;
  subject?: string | null;
  body?: string;
  fromAddress?: string | null;
  fromName?: string | null;
  to?: string[];
  cc?: string[];
  /** ISO 8601; defaults to a distinct second per row, in insertion order. */
  receivedAt?: string;
  hasAttachment?: boolean;
  mailbox?: string | null;
  uid?: number | null;
  flags?: string[];
  expunged?: boolean;
  language?: string;
}

export const ALICE = 'alice@example.com';
export const BOB = 'bob@example.org';

let clock = Date.UTC(2024, 0, 1);

/** The B-weighted text, as lmtp-indexer/index/writer.ts builds it: each address also as its local part and domain. */
function people(m: Mail): string {
  const from = m.fromAddress === undefined ? 'sender@example.net' : m.fromAddress;
  const name = m.fromName === undefined ? 'Some Sender' : m.fromName;
  return [name, from, ...(m.to ?? [m.account ?? ALICE]), ...(m.cc ?? [])]
    .filter((s): s is string => !!s)
    .flatMap((s) => (s.includes('@') ? [s, ...s.split('@')] : [s]))
    .join(' ');
}

/** Inserts one row; returns its id. */
export async function insertMail(pool: pg.Pool, m: Mail = {}): Promise<number> {
  const receivedAt = m.receivedAt ?? new Date((clock += 1000)).toISOString();
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO indexed_messages (account, content_sha256, size_bytes, received_at, from_address, from_name, to_addresses, cc_addresses,
       subject, sent_at, has_attachment, attachments, snippet, language, tsv, mailbox, uid_validity, imap_uid, flags, expunged_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $4, $10, $11, left($12, 200), $13::regconfig,
       setweight(to_tsvector($13::regconfig, coalesce($9, '')), 'A')
         || setweight(to_tsvector($13::regconfig, $18), 'B')
         || setweight(to_tsvector($13::regconfig, $12), 'D'),
       $14, CASE WHEN $14::text IS NULL THEN NULL ELSE 1 END, $15, $16, CASE WHEN $17 THEN now() END)
     RETURNING id`,
    [
      m.account ?? ALICE,
      randomBytes(32),
      1000 + (m.body ?? '').length,
      receivedAt,
      m.fromAddress === undefined ? 'sender@example.net' : m.fromAddress,
      m.fromName === undefined ? 'Some Sender' : m.fromName,
      m.to ?? [m.account ?? ALICE],
      m.cc ?? [],
      m.subject === undefined ? 'hello' : m.subject,
      m.hasAttachment ?? false,
      JSON.stringify(m.hasAttachment ? [{ name: 'a.pdf', contentType: 'application/pdf', size: 10 }] : []),
      m.body ?? 'nothing much',
      m.language ?? 'simple',
      m.mailbox === undefined ? 'INBOX' : m.mailbox,
      m.uid ?? null,
      m.flags ?? [],
      m.expunged ?? false,
      people(m),
    ],
  );
  return Number(rows[0]!.id);
}

/** A migrated schema of its own and a pool on it, closed after the test. */
export async function indexDb(t: TestContext): Promise<pg.Pool> {
  const db = testSchema(t);
  const pool = createPool(db, { max: 4 });
  t.after(() => pool.end());
  await migrateIndex(pool);
  return pool;
}
