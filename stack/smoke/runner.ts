/**
 * Runs the smoke checks: all at once (each poses as its own client, so they cannot disturb each
 * other, and the run takes as long as the slowest check, not the sum), each under its own deadline.
 * A check that throws or overruns fails alone; the others go on. Results come back in the listed
 * order whatever order they finish in.
 */
import { receiveCheck, submitCheck, eicarCheck, rateCheck } from './checks-send.ts';
import { spamCheck } from './checks-spam.ts';
import { eventsCheck, imapCheck, searchCheck } from './checks-read.ts';
import type { SmokeContext } from './context.ts';
import { newShared, type CheckResult, type SmokeCheck } from './types.ts';

/** In the order: the table reads like the list in the guide. */
export const ALL_CHECKS: SmokeCheck[] = [submitCheck, receiveCheck, spamCheck, eicarCheck, rateCheck, imapCheck, searchCheck, eventsCheck];

export interface RunOptions {
  checks?: SmokeCheck[];
  /** Deadline per check (default 120 s: the rate check sends 101 messages and waits for them). */
  checkTimeoutMs?: number;
  /** Called as each check finishes (progress on a terminal). */
  onResult?: (r: CheckResult) => void;
}

export async function runChecks(ctx: SmokeContext, opts: RunOptions = {}): Promise<CheckResult[]> {
  const checks = opts.checks ?? ALL_CHECKS;
  const shared = newShared();
  const timeoutMs = opts.checkTimeoutMs ?? 120_000;
  // A reader whose writer was left out (--only) must not wait for ever.
  const ids = new Set(checks.map((c) => c.id));
  if (!ids.has('submit')) shared.submitted.reject(new Error('the submit check was not run'));
  if (!ids.has('receive')) shared.received.reject(new Error('the receive check was not run'));
  return Promise.all(
    checks.map(async (check) => {
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
      });
      let result: CheckResult;
      try {
        const detail = await Promise.race([check.run(ctx, shared), deadline]);
        result = { id: check.id, title: check.title, ok: true, detail, ms: performance.now() - started };
      } catch (err) {
        result = { id: check.id, title: check.title, ok: false, detail: oneLine((err as Error).message ?? String(err)), ms: performance.now() - started };
      } finally {
        clearTimeout(timer);
      }
      opts.onResult?.(result);
      return result;
    }),
  );
}

/** Pick checks by id (`--only submit,imap`); unknown ids are an error naming the known ones. */
export function selectChecks(only: string | undefined): SmokeCheck[] {
  if (!only) return ALL_CHECKS;
  const wanted = only.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = wanted.filter((w) => !ALL_CHECKS.some((c) => c.id === w));
  if (unknown.length) throw new Error(`unknown check ${unknown.join(', ')} (known: ${ALL_CHECKS.map((c) => c.id).join(', ')})`);
  return ALL_CHECKS.filter((c) => wanted.includes(c.id));
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' / ');
