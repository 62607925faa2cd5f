/**
 * The per-account event log (mail_events). Events are written inside the same transaction as the
 * index change they describe, so a client never hears of a message the index does not have.
 * The NOTIFY is transactional too: listeners hear of it only after commit.
 */
import type pg from 'pg';
import type { MailEvent, MailEventKind } from '../types.ts';

/** The channel every indexer process LISTENs on; the payload is `{"account":…,"seq":…}`. */
export const MAIL_EVENTS_CHANNEL = 'ceerion_mail_events';

/**
 * Appends an event for `account` and returns its seq. Must run inside a transaction on `client`:
 * the counter row stays locked until commit, which is what keeps each account's seqs gap-free
 * and in commit order.
 */
export async function insertEvent(
  client: pg.PoolClient | pg.Client,
  event: { account: string; kind: MailEventKind; messageRow?: number | null; payload?: Record<string, unknown> },
): Promise<number> {
  const { rows } = await client.query<{ seq: string }>(
    `INSERT INTO mail_event_counters AS c (account, seq) VALUES ($1, 1)
     ON CONFLICT (account) DO UPDATE SET seq = c.seq + 1
     RETURNING seq`,
    [event.account],
  );
  const seq = Number(rows[0]!.seq);
  await client.query('INSERT INTO mail_events (account, seq, kind, message_row, payload) VALUES ($1, $2, $3, $4, $5)', [
    event.account,
    seq,
    event.kind,
    event.messageRow ?? null,
    JSON.stringify(event.payload ?? {}),
  ]);
  await client.query('SELECT pg_notify($1, $2)', [MAIL_EVENTS_CHANNEL, JSON.stringify({ account: event.account, seq })]);
  return seq;
}

interface EventRow {
  account: string;
  seq: string;
  kind: MailEventKind;
  message_row: string | null;
  payload: Record<string, unknown>;
  created_at: Date;
}

const toEvent = (r: EventRow): MailEvent => ({
  account: r.account,
  seq: Number(r.seq),
  kind: r.kind,
  messageRow: r.message_row === null ? null : Number(r.message_row),
  payload: r.payload,
  createdAt: r.created_at.toISOString(),
});

/** The account's events after `afterSeq`, oldest first, at most `limit`. */
export async function eventsAfter(pool: pg.Pool, account: string, afterSeq: number, limit = 1000): Promise<MailEvent[]> {
  const { rows } = await pool.query<EventRow>(
    'SELECT account, seq, kind, message_row, payload, created_at FROM mail_events WHERE account = $1 AND seq > $2 ORDER BY seq LIMIT $3',
    [account, afterSeq, limit],
  );
  return rows.map(toEvent);
}
