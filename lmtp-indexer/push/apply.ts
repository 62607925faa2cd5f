/**
 * Applies Dovecot's push events (events.ts) to the index: where each indexed message lives
 * (mailbox, UIDVALIDITY, UID), its flags, moves and expunges. One POST is one transaction, and
 * every row change writes its mail_events entry in it (kinds 'flags', 'move', 'expunge'), so
 * clients never hear of a change the index does not have, and a MOVE's append + expunge land
 * together.
 *
 * How a row is found:
 * - MessageNew (a delivery): by Message-ID, among the account's rows not yet placed, newest first.
 *   The LMTP indexer writes its row only after Dovecot's 250, and Dovecot posts during the
 *   delivery, before that 250: the row is usually not there yet. Such events come back in
 *   `waiting`, with every later event of the batch about the same message, for the caller
 *   (receiver.ts) to retry once the row exists.
 * - Everything else: by (mailbox, UIDVALIDITY, UID), which the placement recorded.
 *
 * Moves and copies. IMAP MOVE reaches us as MessageAppend in the target (same Message-ID) and
 * MessageExpunge in the source; COPY is the append alone, and clients without MOVE do COPY, then
 * \Deleted + EXPUNGE later. A row has one location, so it follows the newest copy: on an append of
 * a message the index has placed elsewhere, the row moves there ('move' event, with
 * sourceExpunged telling whether this POST also expunged the old place); the source's expunge then
 * matches no row and is not an 'expunge'.
 *
 * Weak spots, on purpose:
 * - No Message-ID, no match. Postfix adds one only to mail from local/submission clients (or with
 *   always_add_missing_headers = yes); a delivered message without one is never placed, and
 *   messages appended over IMAP without one are never tied to a row. They stay searchable, without
 *   mailbox or flags.
 * - Same Message-ID, several rows (a duplicate that differs in content, mailing-list copies):
 *   a delivery takes the newest unplaced row; an append prefers the row whose location this POST
 *   expunges, then the newest.
 * - After a COPY the row tracks the copy. If the user then deletes the copy and keeps the original,
 *   the row is marked expunged although the original still exists. Likewise a message the user
 *   sends to themself: the Sent copy (appended after delivery) takes the row from INBOX.
 * - Renaming a mailbox renames its children by `separator` (the script sends the configured one);
 *   there are no events for renames.
 */
import type pg from 'pg';
import { insertEvent } from '../events/store.ts';
import { mergeFlags, type PushEvent, type SavedEvent } from './events.ts';

export interface ApplyOptions {
  /** Hierarchy separator of the mail namespace; default ".". */
  separator?: string;
  /**
   * Keys (waitingKeys()) of messages whose placement is still waiting: events about them are
   * returned in `waiting` instead of being applied, so they keep their order. Not modified.
   */
  waitingKeys?: ReadonlySet<string>;
}

export interface ApplyResult {
  placed: number;
  moved: number;
  flagged: number;
  expunged: number;
  /** Rows whose mailbox a rename changed. */
  renamed: number;
  /** Events with nothing to do: message not indexed, already applied, flags unchanged. */
  unmatched: number;
  /** Events to retry later, in order: deliveries whose row is not there yet, and what followed them. */
  waiting: PushEvent[];
}

const loc = (mailbox: string, uidValidity: number, uid: number): string => `loc\0${mailbox}\0${uidValidity}\0${uid}`;

/** Keys an event is about: its location, and for saves its Message-ID. */
export function eventKeys(e: PushEvent): string[] {
  if (e.name === 'MailboxRename') return [];
  const keys = [loc(e.mailbox, e.uidValidity, e.uid)];
  if ((e.name === 'MessageNew' || e.name === 'MessageAppend') && e.messageId) keys.push(`mid\0${e.messageId}`);
  return keys;
}

/** `name` after renaming `from` to `to` (children included), or null if the rename does not touch it. */
export function renamedMailbox(name: string, from: string, to: string, separator: string): string | null {
  if (name === from) return to;
  if (name.startsWith(from + separator)) return to + name.slice(from.length);
  return null;
}

interface Row {
  id: string;
  mailbox: string | null;
  uid_validity: string | null;
  imap_uid: string | null;
  flags: string[];
}

const COLUMNS = 'id, mailbox, uid_validity, imap_uid, flags';

async function rowAt(client: pg.PoolClient, account: string, mailbox: string, uidValidity: number, uid: number): Promise<Row | undefined> {
  const { rows } = await client.query<Row>(
    `SELECT ${COLUMNS} FROM indexed_messages
     WHERE account = $1 AND mailbox = $2 AND imap_uid = $3 AND uid_validity = $4 AND expunged_at IS NULL
     ORDER BY id DESC LIMIT 1 FOR UPDATE`,
    [account, mailbox, uid, uidValidity],
  );
  return rows[0];
}

const sameSet = (a: string[], b: string[]): boolean => {
  const x = new Set(a.map((f) => f.toLowerCase()));
  return a.length === b.length && b.every((f) => x.has(f.toLowerCase()));
};

class BatchApplier {
  readonly result: ApplyResult = { placed: 0, moved: 0, flagged: 0, expunged: 0, renamed: 0, unmatched: 0, waiting: [] };
  private readonly waitingKeys: Set<string>;
  /** Locations this batch expunges: tells a MOVE from a COPY. */
  private readonly expunges: Set<string>;

  constructor(
    private readonly client: pg.PoolClient,
    private readonly account: string,
    events: readonly PushEvent[],
    private readonly opts: ApplyOptions,
  ) {
    this.waitingKeys = new Set(opts.waitingKeys ?? []);
    this.expunges = new Set(events.flatMap((e) => (e.name === 'MessageExpunge' ? [loc(e.mailbox, e.uidValidity, e.uid)] : [])));
  }

  private wait(e: PushEvent): void {
    this.result.waiting.push(e);
    for (const k of eventKeys(e)) this.waitingKeys.add(k);
  }

  async apply(e: PushEvent): Promise<void> {
    if (e.name === 'MailboxRename') return this.rename(e.oldMailbox, e.mailbox);
    if (eventKeys(e).some((k) => this.waitingKeys.has(k))) return this.wait(e);
    // A repeated POST (or a placement retried after it was applied) finds the row already there.
    const here = await rowAt(this.client, this.account, e.mailbox, e.uidValidity, e.uid);
    switch (e.name) {
      case 'MessageNew':
        if (here) return void this.result.unmatched++;
        return this.place(e);
      case 'MessageAppend':
        if (here) return void this.result.unmatched++;
        return this.follow(e);
      case 'FlagsSet':
      case 'FlagsClear': {
        if (!here) return void this.result.unmatched++;
        const cleared = new Set(e.flags.map((f) => f.toLowerCase()));
        const flags = e.name === 'FlagsSet' ? mergeFlags(here.flags, e.flags) : here.flags.filter((f) => !cleared.has(f.toLowerCase()));
        if (sameSet(flags, here.flags)) return void this.result.unmatched++;
        await this.client.query('UPDATE indexed_messages SET flags = $2 WHERE id = $1', [here.id, flags]);
        await insertEvent(this.client, {
          account: this.account,
          kind: 'flags',
          messageRow: Number(here.id),
          payload: { mailbox: e.mailbox, uidValidity: e.uidValidity, uid: e.uid, flags, [e.name === 'FlagsSet' ? 'set' : 'cleared']: e.flags },
        });
        this.result.flagged++;
        return;
      }
      case 'MessageExpunge':
        if (!here) return void this.result.unmatched++;
        await this.client.query('UPDATE indexed_messages SET expunged_at = now() WHERE id = $1', [here.id]);
        await insertEvent(this.client, { account: this.account, kind: 'expunge', messageRow: Number(here.id), payload: { mailbox: e.mailbox, uidValidity: e.uidValidity, uid: e.uid } });
        this.result.expunged++;
        return;
    }
  }

  private async place(e: SavedEvent): Promise<void> {
    if (!e.messageId) return void this.result.unmatched++;
    const { rows } = await this.client.query<{ id: string }>(
      `SELECT id FROM indexed_messages
       WHERE account = $1 AND message_id = $2 AND mailbox IS NULL AND expunged_at IS NULL
       ORDER BY received_at DESC, id DESC LIMIT 1 FOR UPDATE`,
      [this.account, e.messageId],
    );
    if (!rows[0]) return this.wait(e);
    await this.client.query('UPDATE indexed_messages SET mailbox = $2, uid_validity = $3, imap_uid = $4, flags = $5 WHERE id = $1', [rows[0].id, e.mailbox, e.uidValidity, e.uid, e.flags]);
    this.result.placed++;
  }

  private async follow(e: SavedEvent): Promise<void> {
    // Unplaced rows belong to deliveries (MessageNew); an append only moves rows already placed.
    if (!e.messageId) return void this.result.unmatched++;
    const { rows } = await this.client.query<Row>(
      `SELECT ${COLUMNS} FROM indexed_messages
       WHERE account = $1 AND message_id = $2 AND mailbox IS NOT NULL AND expunged_at IS NULL
       ORDER BY id DESC FOR UPDATE`,
      [this.account, e.messageId],
    );
    const at = (r: Row): string => loc(r.mailbox!, Number(r.uid_validity), Number(r.imap_uid));
    const from = rows.find((r) => this.expunges.has(at(r))) ?? rows[0];
    if (!from) return void this.result.unmatched++;
    await this.client.query('UPDATE indexed_messages SET mailbox = $2, uid_validity = $3, imap_uid = $4, flags = $5 WHERE id = $1', [from.id, e.mailbox, e.uidValidity, e.uid, e.flags]);
    await insertEvent(this.client, {
      account: this.account,
      kind: 'move',
      messageRow: Number(from.id),
      payload: {
        mailbox: e.mailbox,
        uidValidity: e.uidValidity,
        uid: e.uid,
        flags: e.flags,
        from: { mailbox: from.mailbox, uidValidity: Number(from.uid_validity), uid: Number(from.imap_uid) },
        sourceExpunged: this.expunges.has(at(from)),
      },
    });
    this.result.moved++;
  }

  private async rename(from: string, to: string): Promise<void> {
    const sep = this.opts.separator ?? '.';
    const { rowCount } = await this.client.query(
      `UPDATE indexed_messages SET mailbox = $3 || substr(mailbox, length($2) + 1)
       WHERE account = $1 AND expunged_at IS NULL AND (mailbox = $2 OR starts_with(mailbox, $2 || $4))`,
      [this.account, from, to, sep],
    );
    this.result.renamed += rowCount ?? 0;
    // Events still waiting were recorded under the old names; later ones use the new names.
    this.result.waiting = this.result.waiting.map((w) => renameEvent(w, from, to, sep));
    for (const key of [...this.waitingKeys]) {
      const [kind, mailbox, ...rest] = key.split('\0');
      const renamed = kind === 'loc' && mailbox !== undefined ? renamedMailbox(mailbox, from, to, sep) : null;
      if (renamed !== null) this.waitingKeys.add(['loc', renamed, ...rest].join('\0'));
    }
  }
}

/** The event as it would read after the rename (waiting events were recorded under old names). */
export function renameEvent(e: PushEvent, from: string, to: string, separator: string): PushEvent {
  if (e.name === 'MailboxRename') return e;
  const mailbox = renamedMailbox(e.mailbox, from, to, separator);
  return mailbox === null ? e : { ...e, mailbox };
}

/**
 * Applies one POST's events for `user` (the account) in one transaction, in order. Throws when
 * PostgreSQL does (nothing is applied then); the caller decides about retrying.
 */
export async function applyPushEvents(pool: pg.Pool, user: string, events: readonly PushEvent[], opts: ApplyOptions = {}): Promise<ApplyResult> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const applier = new BatchApplier(client, user.toLowerCase(), events, opts);
    for (const e of events) await applier.apply(e);
    await client.query('COMMIT');
    return applier.result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    // A connection that failed mid-transaction must not go back to the pool.
    client.release(broken);
  }
}
