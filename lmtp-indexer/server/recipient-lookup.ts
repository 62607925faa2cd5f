/**
 * RCPT-time recipient lookup in the accounts table (Dovecot's userdb): unknown recipients get
 * 550 5.1.1 from us before any byte of the message is sent. A failing lookup (database down) is
 * `onError`: 451 4.3.0 (Postfix keeps the mail and retries) or accept (Dovecot decides at its own
 * RCPT, so nothing is lost either way).
 */
import type pg from 'pg';
import { accountExists } from '../../accounts/repository.ts';
import type { LmtpConfig } from '../../core/config/lmtp.ts';
import type { RecipientCheck } from './lmtp-server.ts';

export function accountLookup(pool: pg.Pool, config: LmtpConfig['recipientLookup'], accountOf: (address: string) => string): RecipientCheck {
  return async (address, log) => {
    try {
      if (await accountExists(pool, accountOf(address))) return undefined;
      log.info({ rcpt: address }, 'unknown recipient rejected at RCPT');
      return { code: 550, enhanced: '5.1.1', message: `<${address}>: no such user here` };
    } catch (err) {
      log.warn({ err, rcpt: address, onError: config.onError }, 'recipient lookup failed');
      if (config.onError === 'accept') return undefined;
      return { code: 451, enhanced: '4.3.0', message: 'Recipient lookup temporarily unavailable, try again later' };
    }
  };
}

/**
 * The account a recipient is indexed under: the address, lower case, without a `+detail`
 * extension when `delimiter` is set (Postfix's recipient_delimiter; Dovecot delivers
 * user+detail to user).
 */
export function accountOfRecipient(delimiter: string): (address: string) => string {
  return (address) => {
    const lower = address.trim().toLowerCase();
    if (!delimiter) return lower;
    const at = lower.lastIndexOf('@');
    const local = at < 0 ? lower : lower.slice(0, at);
    const cut = [...delimiter].map((d) => local.indexOf(d)).filter((i) => i > 0);
    if (cut.length === 0) return lower;
    return local.slice(0, Math.min(...cut)) + (at < 0 ? '' : lower.slice(at));
  };
}
