/**
 * The Learner the HTTP endpoint (and later the IMAP/Sieve hooks) call: raw message in, learn
 * event out. `StoreLearner` binds the storage side (idempotency, the event log every milter
 * replays) to the classifier side, which only has to turn a message into its feature payload.
 */
import type { MailClass } from '../types.ts';
import { contentHash, userScope, type PgModelStore } from '../model/store.ts';

export interface LearnOptions {
  /** Learn for this user's model only; absent: the global model. */
  user?: string;
}

export interface LearnOutcome {
  status: 'learned' | 'relearned' | 'duplicate';
  /** Decimal, since JSON has no bigint; absent for duplicates. */
  eventId?: string;
  contentHash: string;
}

export interface Learner {
  learn(raw: Buffer, cls: MailClass, opts: LearnOptions): Promise<LearnOutcome>;
}

export interface StoreLearnerOptions {
  store: Pick<PgModelStore, 'recordLearn'>;
  /**
   * The classifier's feature payload for a message: what each process needs to apply the learn
   * without the raw message (which is not stored).
   */
  payload(raw: Buffer, cls: MailClass): Buffer | Promise<Buffer>;
}

export class StoreLearner implements Learner {
  constructor(private readonly opts: StoreLearnerOptions) {}

  async learn(raw: Buffer, cls: MailClass, opts: LearnOptions = {}): Promise<LearnOutcome> {
    const hash = contentHash(raw);
    const payload = await this.opts.payload(raw, cls);
    const result = await this.opts.store.recordLearn({ contentHash: hash, scope: userScope(opts.user), cls, payload });
    if (result.status === 'duplicate') return { status: 'duplicate', contentHash: hash };
    return { status: result.status, eventId: result.eventId.toString(), contentHash: hash };
  }
}
