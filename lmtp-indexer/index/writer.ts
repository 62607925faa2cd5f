/**
 * Writes index entries (one row per recipient) to PostgreSQL, or to the durable backlog when it
 * cannot, and replays the backlog when PostgreSQL is back.
 *
 * - One transaction per message: every recipient's row, and a 'new' event for each row that was
 *   really inserted. `ON CONFLICT (account, content_sha256) DO NOTHING` makes a retried delivery
 *   or a replayed entry a no-op: no second row, no second event.
 * - The tsvector is built in SQL: subject (A), from/to/cc names and addresses (B), the parser's
 *   text (D). Words over 2,047 bytes are skipped by to_tsvector itself (a NOTICE, not an error);
 *   a tsvector over 1 MB is an error (54000 "string is too long for tsvector"), answered by
 *   halving the text and trying again.
 * - PostgreSQL unreachable (or any failure): the entry goes to the backlog and write() answers
 *   'backlogged'. Failures that are not about the connection are logged as errors: the entry is
 *   kept, and the replay sets it aside (rejected.jsonl) if PostgreSQL refuses it for its content.
 */
import pg from 'pg';
import type { Logger } from '../../core/log.ts';
import { MAIL_EVENTS_CHANNEL } from '../events/store.ts';
import type { IndexRecord } from '../types.ts';
import { Backlog, type ReplayOutcome } from './backlog.ts';
import { capUtf8, cleanText } from './text.ts';

export type IndexWriterOptions = {
  pool: pg.Pool;
  log: Logger;
  /** How often the backlog is retried while it is not empty (lmtp.index.replayIntervalMs). */
  replayIntervalMs: number;
  /** Milliseconds since the epoch (default Date.now): how long PostgreSQL has been failing, in logs. */
  now?: () => number;
} & (
  | { /** A backlog opened by the caller, who also closes it. */ backlog: Backlog }
  | { /** Or the writer opens (on first use) and closes its own here (lmtp.index.backlogDir). */ backlogDir: string; backlogMaxBytes?: number }
);

export interface WriteResult {
  status: 'indexed' | 'backlogged';
  /** Rows really inserted (0 when all were already indexed, or when backlogged). */
  inserted: number;
}

/** Failure kinds: retry later (the server), or never (this entry's content). */
type Failure = 'unavailable' | 'rejected' | 'internal';

/**
 * Not the server's answer (no SQLSTATE: refused, reset, timed out, pool ended) or a server
 * condition that passes (08 connection, 53 resources, 57 shutdown, 58 system, 40 rollback):
 * 'unavailable'. 22 data, 23 integrity, 54 limits: this entry will never fit, 'rejected'.
 * Anything else (42 undefined table: migrations not run; a bug) is 'internal': retried later.
 */
function classify(err: unknown): Failure {
  if (err instanceof pg.DatabaseError) {
    const cls = (err.code ?? '').slice(0, 2);
    if (['08', '53', '57', '58', '40'].includes(cls)) return 'unavailable';
    if (['22', '23', '54'].includes(cls)) return 'rejected';
    return 'internal';
  }
  return err instanceof TypeError || err instanceof RangeError ? 'internal' : 'unavailable';
}

const isTsvectorTooLong = (err: unknown): boolean =>
  err instanceof pg.DatabaseError && err.code === '54000' && /tsvector/i.test(err.message);

/** Message-ID and In-Reply-To share a btree index with the account; its tuples must stay under 2,704 bytes. */
const MAX_ID_BYTES = 1000;
const MAX_TEXT_BYTES = 16 * 1024 * 1024;

const str = (s: string | null | undefined, maxBytes = 64 * 1024): string | null => (s == null ? null : capUtf8(cleanText(String(s)), maxBytes));
const strs = (list: readonly string[] | null | undefined): string[] =>
  (Array.isArray(list) ? list : []).map((s) => str(s)).filter((s): s is string => s !== null);

function timestamp(iso: string | null | undefined): string | null {
  if (!iso) return null;
  const d = new Date(iso);
  const year = d.getUTCFullYear();
  return Number.isNaN(d.getTime()) || year < 1 || year > 9999 ? null : d.toISOString();
}

/** Everything PostgreSQL needs from a record, cleaned: a record from an old backlog file gets the same care. */
function row(r: IndexRecord, textBytes: number, extraProblem: string | null): { values: unknown[]; account: string; payload: Record<string, unknown> } {
  const receivedAt = timestamp(r.receivedAt) ?? new Date().toISOString();
  const attachments = (Array.isArray(r.attachments) ? r.attachments : []).map((a) => ({
    name: str(a?.name, 1024),
    contentType: str(a?.contentType, 255) ?? 'application/octet-stream',
    size: Number.isSafeInteger(a?.size) && a.size >= 0 ? a.size : 0,
  }));
  const people = [r.fromName, r.fromAddress, ...strs(r.to), ...strs(r.cc)]
    .filter((s): s is string => !!s)
    // Addresses also as their local part and domain, so `alice` or `example.com` finds them.
    .flatMap((s) => (s.includes('@') ? [s, ...s.split('@')] : [s]));
  const problems = strs(r.problems);
  if (extraProblem) problems.push(extraProblem);
  const score = typeof r.spamScore === 'number' && Number.isFinite(r.spamScore) ? r.spamScore : null;
  const account = String(r.account).toLowerCase();
  const subject = str(r.subject);
  const from = str(r.fromAddress, 1024);
  const snippet = str(r.snippet, 4096) ?? '';
  const spamStatus = str(r.spamStatus, 255);
  const values = [
    account,
    String(r.contentSha256).toLowerCase(),
    r.sizeBytes,
    receivedAt,
    str(r.queueId, 255),
    str(r.messageId, MAX_ID_BYTES),
    str(r.inReplyTo, MAX_ID_BYTES),
    strs(r.references).map((s) => capUtf8(s, MAX_ID_BYTES)),
    from,
    str(r.fromName, 1024),
    strs(r.to),
    strs(r.cc),
    subject,
    timestamp(r.sentAt),
    attachments.length > 0,
    JSON.stringify(attachments),
    score,
    spamStatus,
    str(r.authResults),
    str(r.spf, 64),
    str(r.dkim, 64),
    str(r.dmarc, 64),
    snippet,
    r.language,
    cleanText(people.join(' ')),
    capUtf8(cleanText(r.text ?? ''), textBytes),
    problems,
  ];
  // The event is what a WebSocket client shows at once: small.
  return { values, account, payload: { subject, from, size: r.sizeBytes, snippet, spamStatus } };
}

/**
 * One statement, so one round trip, for all recipients of a message ($1: their accounts):
 * - the tsvector, the costly part, is built once (MATERIALIZED: not re-evaluated per recipient);
 * - a recipient that already has the message (a retry or a replay) gets no row and no event;
 * - each new row gets its 'new' event: the account's counter row is bumped and stays locked until
 *   the statement commits, exactly as insertEvent (events/store.ts) does it, and the NOTIFY goes
 *   out on commit. A statement is atomic, so row and event exist together or not at all.
 * Casts are explicit because INSERT … SELECT does not take parameter types from the target columns.
 */
const INSERT = `
WITH doc AS MATERIALIZED (
  SELECT setweight(to_tsvector($24::regconfig, coalesce($13::text, '')), 'A')
      || setweight(to_tsvector($24::regconfig, $25::text), 'B')
      || to_tsvector($24::regconfig, $26::text) AS tsv
), ins AS (
  INSERT INTO indexed_messages (
    account, content_sha256, size_bytes, received_at, queue_id, message_id, in_reply_to, refs,
    from_address, from_name, to_addresses, cc_addresses, subject, sent_at, has_attachment, attachments,
    spam_score, spam_status, auth_results, spf, dkim, dmarc, snippet, language, tsv, parse_problems)
  SELECT
    r.account, decode($2::text, 'hex'), $3::bigint, $4::timestamptz, $5::text, $6::text, $7::text, $8::text[],
    $9::text, $10::text, $11::text[], $12::text[], $13::text, $14::timestamptz, $15::boolean, $16::jsonb,
    $17::real, $18::text, $19::text, $20::text, $21::text, $22::text, $23::text, $24::regconfig, doc.tsv, $27::text[]
  FROM unnest($1::text[]) WITH ORDINALITY AS r(account, n), doc
  ORDER BY r.n
  ON CONFLICT (account, content_sha256) DO NOTHING
  RETURNING id, account
), counter AS (
  INSERT INTO mail_event_counters AS c (account, seq)
  SELECT account, 1 FROM ins
  ON CONFLICT (account) DO UPDATE SET seq = c.seq + 1
  RETURNING account, seq
), event AS (
  INSERT INTO mail_events (account, seq, kind, message_row, payload)
  SELECT counter.account, counter.seq, 'new', ins.id, $28::jsonb FROM counter JOIN ins USING (account)
  RETURNING account, seq
)
SELECT ins.id, ins.account, pg_notify('${MAIL_EVENTS_CHANNEL}', json_build_object('account', event.account, 'seq', event.seq)::text) AS notified
FROM ins JOIN event USING (account)`;

type Row = ReturnType<typeof row>;
const sameValue = (a: unknown, b: unknown): boolean =>
  a === b || (Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => x === b[i]));
/** Rows that differ only in the account (the recipients of one message) go into one INSERT. */
function groupByMessage(rows: Row[]): Row[][] {
  const groups: Row[][] = [];
  for (const r of rows) {
    const group = groups.find((g) => g[0]!.values.every((v, i) => i === 0 || sameValue(v, r.values[i])));
    if (!group) groups.push([r]);
    else if (!group.some((m) => m.account === r.account)) group.push(r);
  }
  return groups;
}

export class IndexWriter {
  private readonly pool: pg.Pool;
  private readonly openBacklog: () => Promise<Backlog>;
  private readonly ownsBacklog: boolean;
  private backlogPromise: Promise<Backlog> | null = null;
  private readonly log: Logger;
  private readonly replayIntervalMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private replaying: Promise<void> | null = null;
  /** When writes started failing (for the logs); null while PostgreSQL answers. */
  private failingSince: number | null = null;

  constructor(opts: IndexWriterOptions) {
    this.pool = opts.pool;
    this.log = opts.log;
    if ('backlog' in opts) {
      const backlog = opts.backlog;
      this.openBacklog = async () => backlog;
      this.ownsBacklog = false;
    } else {
      const { backlogDir: dir, backlogMaxBytes: maxBytes } = opts;
      this.openBacklog = () => Backlog.open({ dir, log: this.log, ...(maxBytes !== undefined ? { maxBytes } : {}) });
      this.ownsBacklog = true;
    }
    this.replayIntervalMs = opts.replayIntervalMs;
    this.now = opts.now ?? Date.now;
  }

  /** The backlog, opened on first use; a failed open is retried at the next use. */
  private backlog(): Promise<Backlog> {
    this.backlogPromise ??= this.openBacklog().catch((err: unknown) => {
      this.backlogPromise = null;
      throw err;
    });
    return this.backlogPromise;
  }

  /** Opens the backlog (reading what a previous run left) and starts the replay timer. */
  async start(): Promise<void> {
    const backlog = await this.backlog();
    this.startReplay();
    if (backlog.nonEmpty) void this.replay();
  }

  /** Index entries waiting in the backlog (for health checks). */
  async backlogSize(): Promise<number> {
    return (await this.backlog()).size;
  }

  /**
   * True when the backlog is at its size bound: a write PostgreSQL refuses now would be lost, so
   * the LMTP server can answer 4xx before relaying (Postfix keeps the mail) instead.
   */
  async backlogFull(): Promise<boolean> {
    return (await this.backlog()).isFull();
  }

  /**
   * Indexes one message for all its recipients. Rejects only when PostgreSQL failed AND the
   * backlog could not store the entry (full, or a disk error): the caller logs; Dovecot has the mail.
   */
  async write(records: IndexRecord[]): Promise<WriteResult> {
    if (records.length === 0) return { status: 'indexed', inserted: 0 };
    let inserted: number;
    try {
      inserted = await this.insert(records);
    } catch (err) {
      this.failingSince ??= this.now();
      const kind = classify(err);
      const fields = { err: (err as Error).message, code: (err as { code?: string }).code, account: records.map((r) => r.account), sha256: records[0]?.contentSha256, messageId: records[0]?.messageId };
      if (kind === 'unavailable') this.log.warn(fields, 'PostgreSQL unavailable: index entry backlogged');
      else this.log.error({ ...fields, kind }, 'index write FAILED (not a connection problem): entry backlogged, check the message and the schema');
      await (await this.backlog()).append(records);
      return { status: 'backlogged', inserted: 0 };
    }
    if (this.failingSince !== null) {
      this.log.info({ downMs: this.now() - this.failingSince }, 'index writes succeed again');
      this.failingSince = null;
      // PostgreSQL answers again: catch up now rather than at the next tick.
      if (this.timer) void this.replay();
    }
    return { status: 'indexed', inserted };
  }

  /**
   * Whether this recipient already has this message: an indexed row or a backlog entry.
   * Undefined when PostgreSQL cannot answer (and the backlog does not know it).
   */
  async has(account: string, sha256hex: string): Promise<boolean | undefined> {
    const backlog = await this.backlog().catch((err: Error) => {
      this.log.error({ err: err.message }, 'index backlog cannot be opened');
      return null;
    });
    if (backlog?.has(account, sha256hex)) return true;
    try {
      const { rows } = await this.pool.query('SELECT 1 FROM indexed_messages WHERE account = $1 AND content_sha256 = decode($2, $3)', [
        account.toLowerCase(),
        sha256hex.toLowerCase(),
        'hex',
      ]);
      return rows.length > 0;
    } catch (err) {
      // write() logs the outage once per message; this is the same outage.
      this.log.debug({ err: (err as Error).message, account }, 'index lookup failed');
      return undefined;
    }
  }

  /**
   * has() for all recipients of one message in one query: per account true, false, or undefined
   * when PostgreSQL cannot answer (and the backlog does not know it).
   */
  async seen(accounts: string[], sha256hex: string): Promise<Array<boolean | undefined>> {
    const backlog = await this.backlog().catch(() => null);
    const lower = accounts.map((a) => a.toLowerCase());
    const inBacklog = lower.map((a) => backlog?.has(a, sha256hex) ?? false);
    if (inBacklog.every(Boolean)) return inBacklog;
    try {
      const { rows } = await this.pool.query<{ account: string }>('SELECT account FROM indexed_messages WHERE account = ANY($1::text[]) AND content_sha256 = decode($2, $3)', [
        lower,
        sha256hex.toLowerCase(),
        'hex',
      ]);
      const found = new Set(rows.map((r) => r.account));
      return lower.map((a, i) => inBacklog[i] || found.has(a));
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'index lookup failed');
      return lower.map((_, i) => (inBacklog[i] ? true : undefined));
    }
  }

  /** Replays the backlog every replayIntervalMs while it is not empty. */
  startReplay(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.replay(), this.replayIntervalMs);
    // The timer alone must not keep the process alive.
    this.timer.unref();
  }

  /** Stops the timer and waits for a replay in progress; closes the backlog if the writer opened it. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.replaying;
    if (this.ownsBacklog && this.backlogPromise) {
      const backlog = await this.backlogPromise.catch(() => null);
      this.backlogPromise = null;
      await backlog?.close();
    }
  }

  /** One pass over the backlog (what the timer runs); concurrent calls share the pass in progress. */
  replay(): Promise<void> {
    this.replaying ??= this.replayPass().finally(() => (this.replaying = null));
    return this.replaying;
  }

  private async replayPass(): Promise<void> {
    const started = this.now();
    try {
      const backlog = await this.backlog();
      if (!backlog.nonEmpty) return;
      const result = await backlog.replay((records) => this.replayEntry(records, backlog));
      if (result.committed || result.rejected) {
        this.log.info({ ...result, left: backlog.size, ms: this.now() - started }, 'index backlog replayed');
      }
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'index backlog replay failed; retrying at the next interval');
    }
  }

  private async replayEntry(records: IndexRecord[], backlog: Backlog): Promise<ReplayOutcome> {
    try {
      await this.insert(records);
      return 'committed';
    } catch (err) {
      const kind = classify(err);
      const fields = { err: (err as Error).message, code: (err as { code?: string }).code, left: backlog.size };
      if (kind === 'rejected') {
        this.log.error({ ...fields, account: records.map((r) => r.account), sha256: records[0]?.contentSha256 }, 'index backlog replay: PostgreSQL refuses this entry');
        return 'rejected';
      }
      if (kind === 'unavailable') this.log.debug(fields, 'index backlog replay: PostgreSQL still unavailable');
      else this.log.error(fields, 'index backlog replay failed (not a connection problem); retrying later');
      return 'stop';
    }
  }

  /** The transaction, retried with less text while the tsvector is over PostgreSQL's 1 MB. */
  private async insert(records: IndexRecord[]): Promise<number> {
    let textBytes = MAX_TEXT_BYTES;
    let note: string | null = null;
    for (;;) {
      try {
        return await this.transaction(records, textBytes, note);
      } catch (err) {
        const longest = Math.max(...records.map((r) => Buffer.byteLength(r.text ?? '')));
        if (!isTsvectorTooLong(err) || longest === 0 || textBytes === 0) throw err;
        textBytes = Math.floor(Math.min(textBytes, longest) / 2);
        note = `the search text was cut to ${textBytes} bytes to fit PostgreSQL's tsvector limit`;
      }
    }
  }

  private async transaction(records: IndexRecord[], textBytes: number, note: string | null): Promise<number> {
    const groups = groupByMessage(records.map((r) => row(r, textBytes, note)));
    const params = (group: Row[]) => [group.map((r) => r.account), ...group[0]!.values.slice(1), JSON.stringify(group[0]!.payload)];
    // The usual case, one message: a single statement is its own transaction.
    if (groups.length === 1) return (await this.pool.query(INSERT, params(groups[0]!))).rowCount ?? 0;
    const client = await this.pool.connect();
    // A connection dropped while checked out emits 'error' on the client: without a listener, a crash.
    const ignore = (): void => {};
    client.on('error', ignore);
    let failure: unknown;
    try {
      await client.query('BEGIN');
      let inserted = 0;
      for (const group of groups) inserted += (await client.query(INSERT, params(group))).rowCount ?? 0;
      await client.query('COMMIT');
      return inserted;
    } catch (err) {
      failure = err;
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.off('error', ignore);
      // A connection that failed outside a server answer is not handed out again.
      client.release(failure !== undefined && !(failure instanceof pg.DatabaseError) ? (failure as Error) : undefined);
    }
  }
}
