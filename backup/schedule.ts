/**
 * `ceerion backup schedule`: the compose service's scheduler, for hosts without systemd timers.
 * Every day at `at` (UTC) it runs a backup (with the maildir only on `maildirDay`, as the guide's
 * nightly-database / weekly-mail-storage rhythm), applies retention, and on `drillDay` runs the
 * drill. A failure is logged and the next day comes anyway; it never exits on its own.
 * The clock and the sleep are injected so the calendar logic is tested without waiting. With
 * `metrics` (backup/metrics.ts), every run and drill is counted and timestamped for the alerts.
 */
import type { Logger } from '../core/log.ts';
import type { BackupMetrics, BackupOutcome } from './metrics.ts';

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface ScheduleSpec {
  /** HH:MM, UTC. */
  at: string;
  /** The weekday whose run includes the maildir (`daily`: every run; `never`). */
  maildirDay: Weekday | 'daily' | 'never';
  drillDay: Weekday | 'daily' | 'never';
}

export function parseAt(at: string): { h: number; m: number } {
  const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(at);
  if (!m) throw new Error(`--at ${JSON.stringify(at)}: expected HH:MM (24 h, UTC)`);
  return { h: Number(m[1]), m: Number(m[2]) };
}

/** The first HH:MM UTC strictly after `now`. */
export function nextRun(now: Date, at: string): Date {
  const { h, m } = parseAt(at);
  const t = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), h, m));
  if (t.getTime() <= now.getTime()) t.setUTCDate(t.getUTCDate() + 1);
  return t;
}

export function isDay(when: Date, day: ScheduleSpec['maildirDay']): boolean {
  return day === 'daily' || (day !== 'never' && WEEKDAYS[when.getUTCDay()] === day);
}

export interface ScheduleDeps {
  log: Logger;
  now?: () => Date;
  /** Resolves after ms, or early (false) when the scheduler is stopped. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** One backup; what it stored, for the size gauge. */
  backup(withMaildir: boolean): Promise<BackupOutcome | void>;
  drill(): Promise<boolean>;
  metrics?: BackupMetrics;
}

const realSleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });

/** Runs until `signal` aborts; resolves then. */
export async function runSchedule(spec: ScheduleSpec, deps: ScheduleDeps, signal: AbortSignal): Promise<void> {
  parseAt(spec.at);
  const now = deps.now ?? (() => new Date());
  const sleep = deps.sleep ?? realSleep;
  while (!signal.aborted) {
    const when = nextRun(now(), spec.at);
    deps.log.info({ next: when.toISOString() }, 'backup schedule: waiting');
    // Sleep in slices of at most an hour: a suspended VM or a clock step is noticed within one.
    while (!signal.aborted && now() < when) await sleep(Math.min(when.getTime() - now().getTime(), 3_600_000), signal);
    if (signal.aborted) break;
    const t0 = performance.now();
    try {
      const outcome = await deps.backup(isDay(when, spec.maildirDay));
      deps.metrics?.success(now(), (performance.now() - t0) / 1000, outcome);
    } catch (err) {
      deps.metrics?.failure(now());
      deps.log.error({ err: (err as Error).message }, 'backup schedule: backup failed');
    }
    if (isDay(when, spec.drillDay)) {
      let ok = false;
      try {
        ok = await deps.drill();
        deps.log[ok ? 'info' : 'error']({ ok }, 'backup schedule: drill finished');
      } catch (err) {
        deps.log.error({ err: (err as Error).message }, 'backup schedule: drill failed');
      }
      deps.metrics?.drill(ok);
    }
  }
}
