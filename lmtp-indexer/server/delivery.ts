/**
 * One received message, delivered: the order of steps is what keeps mail from being lost or
 * indexed twice.
 *
 * 1. Duplicate check. A recipient that already has this exact message (recipient + SHA-256) in
 *    the index or the backlog got it from Dovecot before: Postfix is retrying because our 250 never
 *    reached it (a crash or a lost connection after Dovecot's 250). It is answered 250 without a
 *    second relay. Dovecot itself would store a second copy: its LMTP has no duplicate
 *    suppression (only Sieve's `duplicate` test and `lda_original_recipient_header` tricks).
 * 2. Relay to Dovecot. Its answer per recipient is what Postfix gets (552 stays 552, 4xx stays
 *    4xx); Dovecot down or slow gives 4xx, so Postfix keeps the mail and retries, and nothing is
 *    indexed for those recipients.
 * 3. Index the recipients Dovecot accepted, before we answer: into PostgreSQL, or when that fails
 *    into the fsync'd local backlog. Either way the answer is 250 (the mail is safe in Dovecot),
 *    and a crash before this point is a retry that step 1 or 2 resolves.
 *
 * Parsing runs while Dovecot receives the message, from its own read of the spool file.
 * What is left: a crash between Dovecot's 250 and step 3 leaves one copy in Dovecot with no index
 * row; Postfix's retry then delivers a second copy (and indexes it once).
 */
import type { Readable } from 'node:stream';
import type { Logger } from '../../core/log.ts';
import type { IndexRecord, ParsedMessage, RecipientReply } from '../types.ts';
import type { SpooledMessage } from './spool.ts';

export interface EnvelopeRecipient {
  address: string;
  /** RCPT parameters to pass on (ORCPT, NOTIFY), already validated by the LMTP server. */
  params?: Record<string, string>;
}

export interface Envelope {
  /** '' for the null sender. */
  mailFrom: string;
  /** MAIL parameters worth passing on (BODY, SMTPUTF8, RET, ENVID). */
  mailParams: Record<string, string | true>;
  recipients: EnvelopeRecipient[];
}

/** Dovecot's LMTP, as the relay client exposes it. */
export type RelayFn = (envelope: Envelope, body: () => Readable, size: number, log: Logger) => Promise<RecipientReply[]>;

/** The index writer as the pipeline needs it (IndexWriter implements it). */
export interface IndexSink {
  /** True when indexed or backlogged; undefined when that can't be known (database down). */
  has(account: string, sha256: string): Promise<boolean | undefined>;
  /** has() for several accounts in one go (one query instead of one per recipient). */
  seen?(accounts: string[], sha256: string): Promise<Array<boolean | undefined>>;
  write(records: IndexRecord[]): Promise<{ status: 'indexed' | 'backlogged'; inserted: number }>;
  /** The local backlog can take no more (a long database outage): deliver nothing until it drains. */
  backlogFull?(): Promise<boolean>;
}

export interface DeliveryDeps {
  relay: RelayFn;
  parse: (input: Readable) => Promise<ParsedMessage>;
  index: IndexSink;
  language: string;
  /** Maps an envelope recipient to the account it is indexed under. */
  accountOf: (recipient: string) => string;
  /** Called with the accounts whose rows were just written (not backlogged). */
  onIndexed?: (accounts: string[]) => void;
  now?: () => Date;
}

export interface DeliveryOutcome {
  replies: RecipientReply[];
  /** How many recipients were answered from the duplicate check, relayed, and accepted. */
  duplicates: number;
  relayed: number;
  accepted: number;
  index: 'indexed' | 'backlogged' | 'none';
}

const ALREADY_DELIVERED: RecipientReply = { code: 250, enhanced: '2.0.0', message: 'Already delivered (same message, retried); not stored twice' };

export class DeliveryPipeline {
  private readonly now: () => Date;

  constructor(private readonly deps: DeliveryDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  async deliver(envelope: Envelope, spool: SpooledMessage, log: Logger): Promise<DeliveryOutcome> {
    const receivedAt = this.now().toISOString();
    if (await this.deps.index.backlogFull?.()) {
      // Relaying now would store mail we could neither index nor remember as delivered, so a
      // retry would store it twice: Postfix keeps it until the backlog drains instead.
      log.error('index backlog full (database down too long): deferring every recipient');
      const full: RecipientReply = { code: 451, enhanced: '4.3.0', message: 'Index backlog full, try again later' };
      return { replies: envelope.recipients.map(() => full), duplicates: 0, relayed: 0, accepted: 0, index: 'none' };
    }
    const accounts = envelope.recipients.map((r) => this.deps.accountOf(r.address));
    const parsed = this.deps.parse(spool.open());
    // has() never throws: an unreachable database is `undefined`, and then we relay.
    const index = this.deps.index;
    const seen = index.seen ? await index.seen(accounts, spool.sha256) : await Promise.all(accounts.map((a) => index.has(a, spool.sha256)));
    const replies: (RecipientReply | undefined)[] = seen.map((s) => (s === true ? ALREADY_DELIVERED : undefined));
    const toRelay = envelope.recipients.filter((_, i) => replies[i] === undefined);
    let relayed: RecipientReply[] = [];
    if (toRelay.length > 0) {
      relayed = await this.deps.relay({ ...envelope, recipients: toRelay }, spool.open, spool.size, log);
      if (relayed.length !== toRelay.length) throw new Error(`relay returned ${relayed.length} replies for ${toRelay.length} recipients`);
    }
    let next = 0;
    const accepted: string[] = [];
    for (let i = 0; i < replies.length; i++) {
      if (replies[i] !== undefined) continue;
      const reply = relayed[next++]!;
      replies[i] = reply;
      if (reply.code >= 200 && reply.code < 300) accepted.push(accounts[i]!);
    }
    let written: DeliveryOutcome['index'] = 'none';
    if (accepted.length > 0) {
      const message = await parsed;
      const records: IndexRecord[] = accepted.map((account) => ({
        ...message,
        account,
        contentSha256: spool.sha256,
        sizeBytes: spool.size,
        receivedAt,
        language: this.deps.language,
      }));
      // write() backlogs on any database failure; it throws only if the backlog itself can't be
      // written (disk full), and then the caller answers 4xx: Postfix retries, and step 1 stops a
      // second copy for every recipient whose row did get written.
      written = (await index.write(records)).status;
      if (written === 'indexed') this.deps.onIndexed?.(accepted);
    } else {
      // Nothing to index, but the parser still holds a stream on the file: let it finish.
      await parsed.catch(() => undefined);
    }
    return {
      replies: replies as RecipientReply[],
      duplicates: seen.filter((s) => s === true).length,
      relayed: toRelay.length,
      accepted: accepted.length,
      index: written,
    };
  }
}
