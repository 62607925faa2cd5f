/**
 * smtp-server derives the enhanced status code of every reply from its numeric code (552 →
 * 5.2.2, 451 → 4.3.0). We pass on Dovecot's own answers, whose enhanced codes are more precise
 * (a 550 from Dovecot may be 5.1.1 or 5.7.1; a 451 may be 4.4.1 or 4.3.0). A reply text that
 * already starts with an enhanced code (RFC 3463 class.subject.detail) is sent as it is; every
 * other reply keeps smtp-server's code. One prototype patch, installed once, because the per-
 * recipient LMTP replies go through `send()` with no way to pass a context. The same patch
 * batches the replies of one tick into one write.
 */
import type { Socket } from 'node:net';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
let installed = false;

export function installReplyPassThrough(): void {
  if (installed) return;
  installed = true;
  const proto = SMTPConnection.prototype as unknown as { send(code: number, data?: unknown, context?: unknown): void };
  const original = proto.send;
  proto.send = function send(this: { _socket?: Socket }, code: number, data?: unknown, context?: unknown): void {
    // Replies written in the same tick (one per recipient after DATA, the pipelined MAIL/RCPT
    // answers) leave in one writev instead of one syscall each.
    const socket = this._socket;
    if (socket && !socket.writableCorked && !socket.destroyed) {
      socket.cork();
      process.nextTick(() => socket.uncork());
    }
    if (typeof data === 'string' && ENHANCED.test(data)) return original.call(this, code, data, false);
    return original.call(this, code, data, context);
  };
}
