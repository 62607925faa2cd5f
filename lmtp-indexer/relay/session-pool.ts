import { formatListen, type ListenAddress } from '../../core/listen.ts';
import type { LmtpSession } from './lmtp-session.ts';

/**
 * Idle LMTP connections to one Dovecot, reused for the next delivery as Postfix's own connection
 * cache does: each new connection costs Dovecot a process hand-off, an LHLO and (TCP) a handshake.
 * Idle connections are closed after IDLE_MS, well under Dovecot's own idle timeout, and never
 * keep the process alive. A stale one is detected at MAIL and the delivery retried once.
 */
export class SessionPool {
  private readonly idle: LmtpSession[] = [];

  take(): LmtpSession | undefined {
    for (let s = this.idle.pop(); s; s = this.idle.pop()) {
      clearTimeout(s.idleTimer);
      if (s.reusable && s.transactions < MAX_TRANSACTIONS) {
        s.setIdle(false);
        return s;
      }
      s.close();
    }
    return undefined;
  }

  give(s: LmtpSession): void {
    if (this.idle.length >= MAX_IDLE) {
      void s.quit();
      return;
    }
    s.setIdle(true);
    s.idleTimer = setTimeout(() => {
      const i = this.idle.indexOf(s);
      if (i >= 0) this.idle.splice(i, 1);
      void s.quit();
    }, IDLE_MS);
    s.idleTimer.unref();
    this.idle.push(s);
  }

  closeAll(): void {
    for (const s of this.idle.splice(0)) {
      clearTimeout(s.idleTimer);
      void s.quit();
    }
  }
}

const MAX_IDLE = 20;
const IDLE_MS = 10_000;
/** Rotate connections now and then, so a long-lived Dovecot process never accumulates state. */
const MAX_TRANSACTIONS = 1_000;
const pools = new Map<string, SessionPool>();

export function poolFor(address: ListenAddress, lhloName: string, timeoutMs: number): SessionPool {
  const key = `${formatListen(address)} ${lhloName} ${timeoutMs}`;
  let pool = pools.get(key);
  if (!pool) pools.set(key, (pool = new SessionPool()));
  return pool;
}

/** Closes every idle connection (service shutdown, tests that stop Dovecot). */
export function closeIdleDovecotConnections(): void {
  for (const pool of pools.values()) pool.closeAll();
}

