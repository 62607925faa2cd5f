/**
 * The trace header, as rspamd's X-Spamd-Result or amavis's X-Virus-Scanned: who looked at the
 * message, which version, and what it decided. Copies of our header that arrived with the message
 * are deleted first, so a forged one never survives; ours goes on top, where trace headers belong.
 */
import { VERSION } from '../../core/version.ts';
import { deleteHeaders, prependHeader } from '../headers.ts';
import { Action } from '../protocol/constants.ts';
import type { Check } from './types.ts';

export interface TraceHeaderOptions {
  header: string;
  hostname: string;
  timeoutMs?: number;
  onError?: Check['onError'];
}

export function traceHeaderCheck(opts: TraceHeaderOptions): Check {
  return {
    name: 'trace',
    actions: Action.ADDHDRS | Action.CHGHDRS,
    wantsHeaders: true,
    ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    ...(opts.onError ? { onError: opts.onError } : {}),
    endOfMessage(ctx) {
      const m = ctx.message;
      const quarantined = ctx.modifications.some((mod) => mod.kind === 'quarantine');
      const fields = [
        `ceerion-milter ${VERSION} on ${opts.hostname}`,
        `verdict=${quarantined ? 'quarantine' : 'accept'}`,
        ...(m.queueId ? [`queue-id=${m.queueId}`] : []),
        `ref=${m.messageId}`,
        // Each check that ran: its result and how long it held the message at end of message.
        ...ctx.outcomes.map((o) => `${o.check}=${o.summary ?? (o.failed ? 'failed' : 'ok')} (${(o.ms ?? 0).toFixed(1)} ms)`),
      ];
      return {
        modifications: [...deleteHeaders(m.headers, opts.header), prependHeader(opts.header, fields.join('; '))],
      };
    },
  };
}
