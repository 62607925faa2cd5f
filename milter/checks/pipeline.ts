/**
 * Runs checks in order at each stage, Haraka-style: the first answer that is not `continue` wins.
 * Every check call has its own deadline; a check that throws or times out becomes its configured
 * failure verdict (default tempfail), logged with the queue id, and never takes the session down.
 */
import type { FailureVerdict } from '../../core/config/schema.ts';
import type { Logger } from '../../core/log.ts';
import type { MilterMetrics } from '../metrics.ts';
import { buildReplyCode } from '../protocol/replycode.ts';
import type { Modification, Verdict } from '../protocol/responses.ts';
import type { Check, CheckContext, CheckOutcome, CheckResult, CheckStage, MessageState } from './types.ts';

export interface PipelineOptions {
  defaultTimeoutMs: number;
  defaultOnError: FailureVerdict;
  metrics: MilterMetrics;
}

export interface StageResult {
  verdict: Verdict;
  modifications: Modification[];
  outcomes: CheckOutcome[];
}

class CheckTimeout extends Error {
  constructor(ms: number) {
    super(`timed out after ${ms} ms`);
  }
}

const CONTINUE: Verdict = { kind: 'continue' };

export class CheckPipeline {
  constructor(
    readonly checks: readonly Check[],
    private readonly opts: PipelineOptions,
  ) {}

  hooks(stage: CheckStage | 'body'): boolean {
    return this.checks.some((c) => typeof c[stage] === 'function');
  }

  get actions(): number {
    return this.checks.reduce((a, c) => a | (c.actions ?? 0), 0);
  }

  async run(
    stage: CheckStage,
    message: MessageState,
    log: Logger,
    signal: AbortSignal,
    ...args: unknown[]
  ): Promise<StageResult> {
    const outcomes: CheckOutcome[] = [];
    const modifications: Modification[] = [];
    for (const check of this.checks) {
      const hook = check[stage] as ((ctx: CheckContext, ...a: unknown[]) => unknown) | undefined;
      if (!hook) continue;
      const ctx: CheckContext = { message, log, signal, outcomes, modifications };
      const failedEarlier = message.failedChecks?.get(check.name);
      const outcome = failedEarlier
        ? { outcome: { check: check.name, verdict: failedEarlier, failed: true } }
        : await this.runOne(check, ctx, (c) => hook.call(check, c, ...args), message);
      outcomes.push(outcome.outcome);
      modifications.push(...(outcome.modifications ?? []));
      if (outcome.outcome.verdict.kind !== 'continue') {
        return { verdict: outcome.outcome.verdict, modifications, outcomes };
      }
    }
    return { verdict: CONTINUE, modifications, outcomes };
  }

  /** Tell every check the message is gone, so streams and buffers it holds are released. */
  abort(message: MessageState): void {
    for (const check of this.checks) {
      try {
        check.abort?.(message);
      } catch {
        // Releasing state must never fail the session.
      }
    }
  }

  /**
   * Body chunks go to every check that reads the body, each call under the check's deadline. A
   * check that fails here is not called again for this message; at end of message its failure
   * verdict stands in for it.
   */
  async body(message: MessageState, log: Logger, signal: AbortSignal, chunk: Buffer): Promise<void> {
    for (const check of this.checks) {
      const read = check.body;
      if (!read || message.failedChecks?.has(check.name)) continue;
      const ctx: CheckContext = { message, log, signal, outcomes: [], modifications: [] };
      const { outcome } = await this.runOne(check, ctx, (c) => read.call(check, c, chunk), message);
      if (outcome.failed) (message.failedChecks ??= new Map()).set(check.name, outcome.verdict);
    }
  }

  private async runOne(
    check: Check,
    ctx: CheckContext,
    call: (ctx: CheckContext) => unknown,
    message: MessageState,
  ): Promise<{ outcome: CheckOutcome; modifications?: Modification[] }> {
    const started = performance.now();
    const timeoutMs = check.timeoutMs ?? this.opts.defaultTimeoutMs;
    // A check gets its own signal (aborted on its timeout or with the session's); the controller
    // is made on first use, so synchronous checks that never look cost nothing.
    let controller: AbortController | undefined;
    let unlink: (() => void) | undefined;
    const ownSignal = () => {
      if (!controller) {
        const c = (controller = new AbortController());
        const onParentAbort = () => c.abort();
        ctx.signal.addEventListener('abort', onParentAbort, { once: true });
        unlink = () => ctx.signal.removeEventListener('abort', onParentAbort);
      }
      return controller.signal;
    };
    const own: CheckContext = {
      message: ctx.message,
      log: ctx.log,
      outcomes: ctx.outcomes,
      modifications: ctx.modifications,
      get signal() {
        return ownSignal();
      },
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      let result = call(own) as CheckResult | void | Promise<CheckResult | void>;
      if (result instanceof Promise) {
        // Only asynchronous checks pay for a timer.
        const deadline = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            ownSignal();
            controller!.abort();
            reject(new CheckTimeout(timeoutMs));
          }, timeoutMs);
        });
        result = await Promise.race([result, deadline]);
      }
      this.opts.metrics.checkSeconds(check.name, 'ok', (performance.now() - started) / 1000);
      const r = result ?? {};
      return {
        outcome: { check: check.name, verdict: r.verdict ?? CONTINUE, ms: performance.now() - started, ...(r.summary ? { summary: r.summary } : {}) },
        ...(r.modifications ? { modifications: r.modifications } : {}),
      };
    } catch (err) {
      const timedOut = err instanceof CheckTimeout;
      const seconds = (performance.now() - started) / 1000;
      this.opts.metrics.checkSeconds(check.name, timedOut ? 'timeout' : 'failed', seconds);
      this.opts.metrics.error(timedOut ? 'check_timeout' : 'check_failed');
      const onError = check.onError ?? this.opts.defaultOnError;
      ctx.log.warn(
        { check: check.name, err: timedOut ? undefined : err, reason: (err as Error)?.message, onError, ref: message.messageId },
        timedOut ? 'check timed out' : 'check failed',
      );
      return {
        outcome: { check: check.name, verdict: failureVerdict(onError, check.name, message.messageId), failed: true, ms: seconds * 1000 },
      };
    } finally {
      if (timer) clearTimeout(timer);
      unlink?.();
    }
  }
}

/** The answer for a failed check; the reference id lets a bounce be matched to our logs. */
export function failureVerdict(onError: FailureVerdict, check: string, ref: string): Verdict {
  switch (onError) {
    case 'accept':
      return CONTINUE;
    case 'reject':
      return { kind: 'replycode', reply: buildReplyCode(550, '5.7.1', `Message refused by the ${check} check (ref ${ref})`) };
    case 'tempfail':
      return {
        kind: 'replycode',
        reply: buildReplyCode(451, '4.7.1', `Temporary failure in the ${check} check, try again later (ref ${ref})`),
      };
  }
}
