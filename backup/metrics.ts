/**
 * Prometheus metrics of `ceerion backup schedule`, the long-running scheduler, so that "the last
 * backup is too old" and "the last backup failed" can be alerts (monitoring/alerts.yml):
 *   ceerion_backup_last_success_timestamp_seconds  completion time of the newest complete backup
 *   ceerion_backup_last_failure_timestamp_seconds  when the last failed run gave up (0: none yet)
 *   ceerion_backup_runs_total{result}              success | failure
 *   ceerion_backup_duration_seconds                per successful run
 *   ceerion_backup_last_size_bytes                 stored (compressed, encrypted) bytes of the newest
 *   ceerion_backup_drills_total{result}            success | failure
 *
 * The last success is first read from the bucket (newest backup with a manifest, which is written
 * last), so restarting the scheduler does not make the backups look fresh, nor older than they are.
 * With no backup in the bucket, or a bucket that cannot be listed at start, it stays 0 until a run
 * succeeds: the age alert fires, as it should (nothing restorable is known).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../core/log.ts';
import { fetchManifest, listBackups } from './catalog.ts';
import type { ObjectStore } from './contracts.ts';

export interface BackupOutcome {
  /** Bytes stored in the bucket by this backup (every object). */
  storedBytes: number;
  /** The manifest's completion time (what a restart reads back from the bucket); default: now. */
  completedAt?: Date;
}

export class BackupMetrics {
  private readonly lastSuccess: Gauge;
  private readonly lastFailure: Gauge;
  private readonly runs: Counter<'result'>;
  private readonly duration: Histogram;
  private readonly size: Gauge;
  private readonly drills: Counter<'result'>;
  /** The gauge's value; 0 until a backup is known. */
  private lastSuccessSeconds = 0;

  constructor(registry: Registry) {
    const registers = [registry];
    this.lastSuccess = new Gauge({
      name: 'ceerion_backup_last_success_timestamp_seconds',
      help: 'Unix time the newest complete backup finished (from the bucket at start, then from each run; 0: none known)',
      registers,
    });
    this.lastFailure = new Gauge({ name: 'ceerion_backup_last_failure_timestamp_seconds', help: 'Unix time of the last failed backup run (0: none since start)', registers });
    this.runs = new Counter({ name: 'ceerion_backup_runs_total', help: 'Scheduled backup runs by result: success, failure', labelNames: ['result'], registers });
    this.duration = new Histogram({
      name: 'ceerion_backup_duration_seconds',
      help: 'Duration of successful backup runs (dump, archive, upload)',
      buckets: [10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800],
      registers,
    });
    this.size = new Gauge({ name: 'ceerion_backup_last_size_bytes', help: 'Bytes stored in the bucket by the newest complete backup', registers });
    this.drills = new Counter({ name: 'ceerion_backup_drills_total', help: 'Restore drills by result: success, failure', labelNames: ['result'], registers });
    // Both results exist from the start, so rate() and increase() see the first failure.
    for (const result of ['success', 'failure']) {
      this.runs.inc({ result }, 0);
      this.drills.inc({ result }, 0);
    }
  }

  /** The newest complete backup known; an older one never replaces a newer (catalog read racing a run). */
  lastBackup(completedAt: Date, storedBytes: number): void {
    const t = completedAt.getTime() / 1000;
    if (t >= this.lastSuccessSeconds) {
      this.lastSuccessSeconds = t;
      this.lastSuccess.set(t);
      this.size.set(storedBytes);
    }
  }

  success(at: Date, seconds: number, outcome: BackupOutcome | void): void {
    this.runs.inc({ result: 'success' });
    this.duration.observe(seconds);
    this.lastBackup(outcome?.completedAt ?? at, outcome?.storedBytes ?? 0);
  }

  failure(at: Date): void {
    this.runs.inc({ result: 'failure' });
    this.lastFailure.set(at.getTime() / 1000);
  }

  drill(ok: boolean): void {
    this.drills.inc({ result: ok ? 'success' : 'failure' });
  }
}

/** The newest backup with a readable manifest: its completion time and stored size; undefined for none. */
export async function newestCompleteBackup(store: ObjectStore, prefix: string): Promise<{ id: string; completedAt: Date; storedBytes: number } | undefined> {
  const backups = (await listBackups(store, prefix)).filter((b) => b.hasManifest);
  for (const b of backups.reverse()) {
    try {
      const m = await fetchManifest(store, prefix, b.id);
      return { id: b.id, completedAt: new Date(m.completedAt), storedBytes: b.objects.reduce((a, o) => a + o.size, 0) };
    } catch {
      // An unreadable manifest is not a backup anyone could restore: look at the one before.
    }
  }
  return undefined;
}

/** Sets the last-success gauges from the bucket; a bucket that cannot be listed is logged, not fatal. */
export async function initFromCatalog(metrics: BackupMetrics, store: ObjectStore, prefix: string, log: Logger): Promise<void> {
  try {
    const newest = await newestCompleteBackup(store, prefix);
    if (newest) {
      metrics.lastBackup(newest.completedAt, newest.storedBytes);
      log.info({ backup: newest.id, completedAt: newest.completedAt.toISOString() }, 'backup metrics: last success from the bucket');
    } else {
      log.warn({ prefix }, 'backup metrics: no complete backup in the bucket yet');
    }
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'backup metrics: cannot list the bucket; the last success is unknown until the next run');
  }
}
