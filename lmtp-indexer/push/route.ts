/**
 * POST /push: where Dovecot's push_notification Lua script (lmtp-indexer/dovecot/
 * push-notification.lua) reports mail events. Dovecot waits for the answer while the user's IMAP
 * command or the delivery waits, so the answer is quick: events that cannot be applied yet wait
 * in the receiver (202 when PostgreSQL is down), and whatever we answer, the script never fails
 * the user's command.
 *
 * Authentication: `Authorization: Bearer <lmtp.http.pushToken>`, compared in constant time. With
 * no token configured, only loopback clients are accepted (Dovecot on the same host).
 *
 * Answers: 200 {placed, moved, flagged, expunged, renamed, unmatched, skipped, waiting}; 202 the
 * same with held: true (PostgreSQL down), or {pending: true} when applying takes longer than
 * answerWithinMs; 400 with the first invalid field (logged with the reason, never the body);
 * 401/403 without the right token or from elsewhere; 413 over PUSH_LIMITS.maxBodyBytes.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type pg from 'pg';
import type { Logger } from '../../core/log.ts';
import { HttpError, readJson, sendJson, type Route } from '../http/route.ts';
import { parsePushBatch, PushValidationError, PUSH_LIMITS } from './events.ts';
import { PushReceiver, type PushReceiverOptions } from './receiver.ts';

export interface PushRouteOptions {
  pool: pg.Pool;
  /** lmtp.http.pushToken; empty: loopback clients only, no token asked. */
  token: string;
  /** Defaults to the request's logger. */
  log?: Logger;
  /** A receiver of your own (tests, shared retries); otherwise one is made from `pool`. */
  receiver?: PushReceiver;
  receiverOptions?: Omit<PushReceiverOptions, 'pool' | 'log'>;
  maxBodyBytes?: number;
  /**
   * Answer 202 {pending: true} if applying takes longer than this (default 1000 ms, under the
   * script's 2000 ms timeout), and finish in the background.
   */
  answerWithinMs?: number;
}

export interface PushRoute extends Route {
  readonly receiver: PushReceiver;
  /** Stops the receiver's retries. */
  close(): void;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Constant-time comparison of a presented token with the configured one (both hashed to 32 bytes first). */
export function tokenMatches(presented: string, configured: string): boolean {
  return timingSafeEqual(digest(presented), digest(configured));
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4 === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

function authorise(req: IncomingMessage, token: string): void {
  if (token === '') {
    if (!isLoopback(req.socket.remoteAddress)) throw new HttpError(403, 'push accepts loopback clients only when lmtp.http.pushToken is empty');
    return;
  }
  const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
  if (!m || !tokenMatches(m[1]!, token)) throw new HttpError(401, 'a valid bearer token is required');
}

/** Reads and discards up to `maxBytes` of the request body. */
async function drain(req: IncomingMessage, maxBytes: number): Promise<void> {
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) return;
  }
}

export function pushRoute(opts: PushRouteOptions): PushRoute {
  const receiver = opts.receiver ?? new PushReceiver({ pool: opts.pool, ...(opts.log ? { log: opts.log } : {}), ...opts.receiverOptions });
  const maxBodyBytes = opts.maxBodyBytes ?? PUSH_LIMITS.maxBodyBytes;
  const answerWithinMs = opts.answerWithinMs ?? 1_000;
  return {
    method: 'POST',
    path: '/push',
    receiver,
    close: () => receiver.close(),
    async handle(req, res, ctx) {
      const log = (opts.log ?? ctx.log).child({ route: 'push' });
      try {
        authorise(req, opts.token);
      } catch (err) {
        log.warn({ remote: req.socket.remoteAddress, reason: (err as Error).message }, 'push: refused');
        // Read the body before answering. Dovecot's HTTP client sends `Expect: 100-continue`;
        // answering before its body arrives makes it miss the answer now and then (seen with
        // 2.3.19: the request then runs into its timeout instead of getting the 401).
        await drain(req, maxBodyBytes);
        throw err;
      }
      let batch;
      try {
        batch = parsePushBatch(await readJson(req, maxBodyBytes));
      } catch (err) {
        if (!(err instanceof PushValidationError) && !(err instanceof HttpError)) throw err;
        log.warn({ reason: err.message }, 'push: invalid events refused');
        throw err instanceof HttpError ? err : new HttpError(400, err.message);
      }
      const work = receiver.receive(batch, log);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), answerWithinMs);
      });
      const result = await Promise.race([work, late]).finally(() => clearTimeout(timer));
      if (!result) {
        // A big POST (a MOVE of thousands of messages) may take longer than Dovecot waits: answer
        // now and let it finish; the receiver keeps later POSTs of the account behind it.
        work.then(
          (r) => log.debug({ user: batch.user, events: batch.events.length, ...r }, 'push: applied after answering'),
          (err: unknown) => log.error({ err, user: batch.user }, 'push: events could not be applied'),
        );
        sendJson(res, 202, { pending: true, events: batch.events.length, skipped: batch.skipped });
        return;
      }
      log.debug({ user: batch.user, events: batch.events.length, ...result }, 'push: applied');
      sendJson(res, result.held ? 202 : 200, { ...result, skipped: batch.skipped });
    },
  };
}
