/**
 * Dovecot's auth cache (lmtp-indexer/dovecot/sql-accounts.conf: auth_cache_ttl = 5 mins) keeps
 * the last answer per user, so a changed password, quota or enabled flag, or a removed account,
 * takes up to the TTL to apply; a new password works at once (a failed cached check is looked up
 * again), but the old one keeps working until then. `doveadm auth cache flush` applies it now.
 * It is flushed whole: a userdb entry's cache key is not the user name alone.
 *
 * Best effort: the CLI may run where there is no doveadm, or no right to Dovecot's auth socket.
 */
import { execFile } from 'node:child_process';

export interface FlushResult {
  flushed: boolean;
  /** One line for stderr: what happened, and what to do when it did not. */
  message: string;
}

const LATER = 'Dovecot applies the change within its auth_cache_ttl (5 min as shipped); `doveadm auth cache flush` on the Dovecot host applies it now';

/** Runs `doveadm [-c config] auth cache flush`; never throws. */
export function flushAuthCache(opts: { dovecotConfig?: string | undefined; doveadm?: string; timeoutMs?: number } = {}): Promise<FlushResult> {
  const args = [...(opts.dovecotConfig ? ['-c', opts.dovecotConfig] : []), 'auth', 'cache', 'flush'];
  return new Promise((resolve) => {
    execFile(opts.doveadm ?? 'doveadm', args, { timeout: opts.timeoutMs ?? 10_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') return resolve({ flushed: false, message: `no doveadm here: ${LATER}` });
      // doveadm 2.3 exits 0 and prints "0 cache entries flushed" even when it could not reach
      // Dovecot's auth-master socket: only its stderr tells.
      const problem = /^(?:\S+: )?(?:Error|Fatal|Panic): .*$/m.exec(stderr)?.[0];
      if (!err && !problem) return resolve({ flushed: true, message: `flushed Dovecot's auth cache${stdout.trim() ? ` (${stdout.trim().split('\n')[0]})` : ''}` });
      const why = problem ?? (stderr.trim().split('\n').pop() || err?.message || 'unknown error');
      resolve({ flushed: false, message: `could not flush Dovecot's auth cache (${why.replace(/^(?:\S+: )?(?:Error|Fatal|Panic): /, '')}): ${LATER}` });
    });
  });
}

/** The reminder printed when flushing was switched off (--no-flush). */
export const FLUSH_SKIPPED = `not flushing Dovecot's auth cache: ${LATER}`;
