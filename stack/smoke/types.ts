/**
 * The shape of a smoke check, and what checks hand each other. A check passes when `run` resolves
 * (its value is the detail column) and fails when it throws (the message is the detail). Checks
 * that read what others sent (IMAP read, search) wait on `Shared` instead of sending their own, so
 * a failed send shows up as that check's failure plus a clear "nothing to read" in the readers.
 */
import type { SmokeContext } from './context.ts';

export interface SentMessage {
  /** The marker word: in the subject, the body and the X-Ceerion-Smoke header. */
  marker: string;
  subject: string;
  /** The end-of-data reply, e.g. `250 2.0.0 Ok: queued as 4XyZ1Q`. */
  reply: string;
  queueId?: string;
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(err: Error): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A reader may never come (its check was left out): no unhandled rejection for that.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

export interface Shared {
  /** Check 1's message, once Postfix accepted it. */
  submitted: Deferred<SentMessage>;
  /** Check 2's message, once Postfix accepted it. */
  received: Deferred<SentMessage>;
}

export const newShared = (): Shared => ({ submitted: deferred(), received: deferred() });

export interface SmokeCheck {
  /** Short id for `--only`: submit, receive, spam, eicar, rate, imap, search, events. */
  id: string;
  title: string;
  run(ctx: SmokeContext, shared: Shared): Promise<string>;
}

export interface CheckResult {
  id: string;
  title: string;
  ok: boolean;
  detail: string;
  ms: number;
}

/** `queued as 4XyZ1Q` in Postfix's 250 reply. */
export function queueIdOf(reply: string): string | undefined {
  return /queued as ([0-9A-Za-z]+)/.exec(reply)?.[1];
}
