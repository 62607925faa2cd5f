/**
 * Virus scanning with clamd. The scan starts with the first body chunk (at end of message when
 * there is no body) and the message streams to clamd as it arrives, through a MessageStream with
 * backpressure, so it is never held in memory. At end of message the check waits for clamd:
 * a virus is refused with 554 5.7.1 naming the signature and the ref; clean continues, and the
 * trace header records `antivirus=clean`. clamd down, slow or answering ERROR throws, so the
 * pipeline applies the configured onError (tempfail by default) and logs it with the queue id.
 * Only the first `maxBytes` are scanned (clamd refuses more than its StreamMaxLength); the summary
 * then says so: `clean (first N bytes)`.
 */
import { Counter, type Registry } from 'prom-client';
import type { AntivirusConfig } from '../../core/config/schema.ts';
import { scanStream, type ScanResult } from '../clamd/client.ts';
import { buildReplyCode } from '../protocol/replycode.ts';
import { MessageStream, stateOf } from './message-stream.ts';
import type { Check, CheckContext, CheckResult, MessageState } from './types.ts';

const NAME = 'antivirus';

export interface AntivirusDeps {
  /** The clamd client; tests may point it elsewhere, the service uses the real one. */
  scan?: typeof scanStream;
  /** Where `ceerion_milter_av_result_total{result}` is counted. */
  registry?: Registry;
}

/** One message's scan: the stream clamd reads, clamd's answer, and how to call it all off. */
interface Scan {
  readonly stream: MessageStream;
  readonly result: Promise<ScanResult>;
  readonly controller: AbortController;
  readonly started: number;
}

export function antivirusCheck(
  cfg: Pick<AntivirusConfig, 'clamd' | 'timeoutMs' | 'onError' | 'maxBytes'>,
  deps: AntivirusDeps = {},
): Check {
  const scan = deps.scan ?? scanStream;
  const results = deps.registry
    ? ((deps.registry.getSingleMetric('ceerion_milter_av_result_total') as Counter<'result'> | undefined) ??
      new Counter({ name: 'ceerion_milter_av_result_total', help: 'Antivirus results: clean, virus, error', labelNames: ['result'], registers: [deps.registry] }))
    : undefined;

  const begin = (): Scan => {
    const stream = new MessageStream();
    const controller = new AbortController();
    const result = scan(cfg.clamd, stream.stream, { timeoutMs: cfg.timeoutMs, maxBytes: cfg.maxBytes, signal: controller.signal });
    // A failed scan frees the stream, so a write waiting for room returns; its error is thrown
    // at end of message.
    result.catch(() => stream.destroy());
    return { stream, result, controller, started: performance.now() };
  };
  const scanOf = (message: MessageState): Scan => stateOf(message, NAME, begin);

  /** Stop the scan: clamd's socket and the message stream go. */
  const release = (s: Scan): void => {
    s.controller.abort();
    s.stream.destroy();
  };

  /**
   * Run `step` with the scan released if the hook is abandoned (timeout, lost connection) or fails;
   * a pipeline that gave up on the check never calls it again for this message.
   */
  const guarded = async <T>(ctx: CheckContext, s: Scan, step: () => Promise<T>): Promise<T> => {
    const signal = ctx.signal;
    const onAbort = () => release(s);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await step();
    } catch (err) {
      release(s);
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  };

  /** A destroyed stream means the scan failed (or was called off): its error is the answer. */
  const failedScan = async (s: Scan): Promise<never> => {
    await s.result;
    throw new Error('clamd scan stopped before the end of the message');
  };

  return {
    name: NAME,
    timeoutMs: cfg.timeoutMs,
    onError: cfg.onError,
    wantsHeaders: true,
    wantsBody: true,

    async body(ctx, chunk) {
      const s = scanOf(ctx.message);
      // A failed scan stops the streaming but is reported at end of message, where the queue id
      // is known (Postfix sends it with the end-of-message macros, not with body chunks).
      // Past the cap clamd has all it will read; the rest of the body is not streamed.
      if (s.stream.stream.destroyed || s.stream.bytes > cfg.maxBytes) return;
      await guarded(ctx, s, () => s.stream.write(ctx.message, chunk));
    },

    async endOfMessage(ctx): Promise<CheckResult> {
      const m = ctx.message;
      const s = scanOf(m);
      const waitFrom = performance.now();
      let r: ScanResult;
      try {
        r = await guarded(ctx, s, async () => {
          if (s.stream.stream.destroyed) await failedScan(s);
          await s.stream.end(m);
          return s.result;
        });
      } catch (err) {
        results?.inc({ result: 'error' });
        throw err;
      }
      results?.inc({ result: r.kind });
      // ms: the whole scan, first byte to clamd's answer; waitMs: what end of message waited for it.
      const now = performance.now();
      const fields = {
        check: NAME,
        ref: m.messageId,
        ms: Math.round(now - s.started),
        waitMs: Math.round(now - waitFrom),
        bytes: r.bytes,
        truncated: r.truncated,
      };
      if (r.kind === 'virus') {
        const signature = printable(r.name);
        ctx.log.warn({ ...fields, virus: signature }, 'virus found');
        return {
          verdict: { kind: 'replycode', reply: buildReplyCode(554, '5.7.1', `Virus found: ${signature} (ref ${m.messageId})`) },
          summary: `virus ${signature}`,
        };
      }
      ctx.log.info(fields, 'clamd scan clean');
      return { summary: r.truncated ? `clean (first ${r.bytes} bytes)` : 'clean' };
    },

    abort(message) {
      const s = message.checkState.get(NAME) as Scan | undefined;
      if (s) release(s);
      message.checkState.delete(NAME);
    },
  };
}

/** A signature name fit for a reply line and a header: printable ASCII only, bounded. */
function printable(name: string): string {
  return name.replace(/[^\x21-\x7e]/g, '?').slice(0, 200);
}
