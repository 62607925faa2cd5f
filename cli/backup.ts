/**
 * `ceerion backup`: encrypted backups to S3 and restore drills (backup/).
 *   run        back up the database (+ maildir, extras), then apply retention
 *   drill      restore the newest backup into a scratch database and check it (RPO/RTO report)
 *   list       backups in the bucket, with their state
 *   prune      apply retention now
 *   restore    restore a backup for real
 *   rotate-key new backups use a new key version; rewrap moves old ones onto it
 *   keyring    init / list / retire (the local keyring)
 * Exit status: 0 success, 1 any failure (a failed drill check, RPO/RTO over target), 2 usage.
 */
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { Config } from '../core/config/schema.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { createRegistry, serveMetrics } from '../core/metrics.ts';
import { table } from '../core/text-table.ts';
import { listBackups, verifyComplete } from '../backup/catalog.ts';
import type { KeyProvider, ObjectStore } from '../backup/contracts.ts';
import { runDrill } from '../backup/drill/drill.ts';
import { formatDrillReport } from '../backup/drill/report.ts';
import { createKeyProvider, initKeyring, keyringInfo, retireKeyVersion, rotateKeyring } from '../backup/keys/index.ts';
import { pruneBackups } from '../backup/prune.ts';
import { restoreBackup } from '../backup/restore.ts';
import { rewrapBackups } from '../backup/rewrap.ts';
import { rotateVaultKey } from '../backup/rotate.ts';
import { runBackup } from '../backup/run.ts';
import { BackupMetrics, initFromCatalog } from '../backup/metrics.ts';
import { runSchedule, WEEKDAYS, type ScheduleSpec } from '../backup/schedule.ts';
import { createObjectStore } from '../backup/storage/index.ts';
import { loadOrExit } from './runtime.ts';
import { Progress } from './progress.ts';

interface CommonOptions {
  config?: string;
  logLevel?: string;
}

interface Context {
  config: Config;
  log: Logger;
  store: ObjectStore;
  keys: KeyProvider;
}

class UsageError extends Error {}

async function command(name: string, fn: () => Promise<number | void>): Promise<void> {
  try {
    const code = await fn();
    if (typeof code === 'number') process.exitCode = code;
  } catch (err) {
    process.stderr.write(`ceerion backup ${name}: ${(err as Error).message}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}

/** Logs go to stderr as JSON (stdout carries the tables); quiet by default on a terminal. */
function context(opts: CommonOptions, overrides: Record<string, unknown> = {}, withKeys = true): Context {
  const config = loadOrExit({ ...(opts.config ? { config: opts.config } : {}) });
  if (Object.keys(overrides).length) Object.assign(config.backup.retention, overrides);
  const level = opts.logLevel ?? (process.stderr.isTTY ? 'warn' : config.log.level);
  const log = createLogger(level, 'backup', process.stderr);
  const store = createObjectStore(config.backup.s3, { log });
  const keys = withKeys ? createKeyProvider(config.backup.keys) : (undefined as unknown as KeyProvider);
  return { config, log, store, keys };
}

const common = (cmd: Command) =>
  cmd.option('-c, --config <file>', 'YAML configuration file (CEERION_* environment variables override it)').option('--log-level <level>', 'log level (stderr)');

function intOption(value: string, name: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${name} must be a whole number, not ${JSON.stringify(value)}`);
  return Number(value);
}

interface RetentionFlags {
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
}

function retentionOverrides(o: RetentionFlags): Record<string, number> {
  const out: Record<string, number> = {};
  if (o.keepDaily !== undefined) out.keepDaily = intOption(o.keepDaily, '--keep-daily');
  if (o.keepWeekly !== undefined) out.keepWeekly = intOption(o.keepWeekly, '--keep-weekly');
  if (o.keepMonthly !== undefined) out.keepMonthly = intOption(o.keepMonthly, '--keep-monthly');
  return out;
}

const withRetention = (cmd: Command) =>
  cmd
    .option('--keep-daily <n>', 'newest backup of each of the last N days (default backup.retention.keepDaily, 7)')
    .option('--keep-weekly <n>', 'newest of each of the last N ISO weeks (default 4)')
    .option('--keep-monthly <n>', 'newest of each of the last N months (default 6)');

const mb = (n: number) => (n / 1e6).toFixed(1);

export function registerBackupCommands(program: Command): void {
  const backup = program.command('backup').description('encrypted backups to S3, restore drills, key rotation');

  withRetention(common(backup.command('run')))
    .description('back up the database (and maildir/extras when configured), encrypted, to S3; then prune')
    .option('--no-maildir', 'skip the maildir tree this time (nightly database-only runs)')
    .option('--no-prune', 'do not apply retention afterwards')
    .action((o: CommonOptions & RetentionFlags & { maildir: boolean; prune: boolean }) =>
      command('run', async () => {
        const ctx = context(o, retentionOverrides(o));
        if (!o.maildir) ctx.config.backup.include.maildir = '';
        let bar: Progress | undefined;
        const r = await runBackup(ctx.config, {
          ...ctx,
          onProgress: process.stderr.isTTY
            ? (done, total) => {
                bar ??= new Progress('backup', Math.max(1, Math.round(total / 1e6)), 'MB');
                bar.update(Math.round(done / 1e6));
              }
            : undefined,
        });
        bar?.finish();
        const m = r.manifest;
        process.stdout.write(
          `backup ${m.id} complete in ${(r.durationMs / 1000).toFixed(1)} s → ${ctx.store.description}\n` +
            table(['object', 'source MB', 'stored MB', 'codec'], m.objects.map((x) => [x.name, mb(x.plaintextBytes), mb(x.size), x.codec])) +
            `\nkey: ${m.key.provider} ${m.key.keyId} v${m.key.version}; ${Object.keys(m.database.rowCounts).length} tables, ${Object.values(m.database.rowCounts).reduce((a, b) => a + b, 0)} rows\n`,
        );
        if (o.prune) {
          const p = await pruneBackups(ctx.config, ctx);
          process.stdout.write(`retention: kept ${p.kept.length}, removed ${p.removed.length + p.incompleteRemoved.length}${p.unverified.length ? `, ${p.unverified.length} not verifying (left in place)` : ''}\n`);
        }
      }),
    );

  common(backup.command('drill'))
    .description('restore the newest backup into a scratch database, verify it, report RPO/RTO (exit 1 on any failure)')
    .option('--backup <id>', 'drill this backup instead of the newest')
    .option('--target <url>', 'server for the scratch database (default backup.drill.target, else database.url)')
    .option('--docker', 'use a throwaway PostgreSQL container (needs a reachable Docker engine)')
    .option('--json <file>', 'also write the report as JSON to this file ("-" for stdout)')
    .action((o: CommonOptions & { backup?: string; target?: string; docker?: boolean; json?: string }) =>
      command('drill', async () => {
        const ctx = context(o);
        const report = await runDrill(ctx.config, ctx, { backupId: o.backup, target: o.target, docker: o.docker });
        if (o.json === '-') process.stdout.write(JSON.stringify(report, null, 2) + '\n');
        else {
          process.stdout.write(formatDrillReport(report));
          if (o.json) await writeFile(o.json, JSON.stringify(report, null, 2) + '\n');
        }
        return report.ok ? 0 : 1;
      }),
    );

  common(backup.command('list'))
    .description('backups in the bucket: time, size, key version, and whether each verifies')
    .option('--json', 'machine-readable output')
    .action((o: CommonOptions & { json?: boolean }) =>
      command('list', async () => {
        const ctx = context(o);
        const prefix = ctx.config.backup.s3.prefix;
        const rows = [];
        for (const b of await listBackups(ctx.store, prefix)) {
          const v = await verifyComplete(ctx.store, ctx.keys, prefix, b);
          if (v.ok) v.dataKey.fill(0);
          const m = v.manifest;
          rows.push({
            id: b.id,
            completedAt: m?.completedAt ?? null,
            bytes: b.objects.reduce((a, x) => a + x.size, 0),
            key: m ? `${m.key.provider} v${m.key.version}` : null,
            objects: m?.objects.map((x) => x.kind) ?? [],
            state: v.ok ? 'ok' : v.reason,
          });
        }
        if (o.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        else process.stdout.write(table(['backup', 'completed', 'MB', 'key', 'contents', 'state'], rows.map((r) => [r.id, r.completedAt ?? '-', mb(r.bytes), r.key ?? '-', r.objects.join('+') || '-', r.state])) + '\n');
      }),
    );

  withRetention(common(backup.command('prune')))
    .description('apply retention to verified-complete backups; remove parts of runs that never completed')
    .option('--dry-run', 'show what would be removed')
    .action((o: CommonOptions & RetentionFlags & { dryRun?: boolean }) =>
      command('prune', async () => {
        const ctx = context(o, retentionOverrides(o));
        const p = await pruneBackups(ctx.config, ctx, { dryRun: o.dryRun });
        const rows: string[][] = [
          ...p.kept.map((k) => [k.id, 'keep', k.reasons.join(', ')]),
          ...p.removed.map((id) => [id, o.dryRun ? 'would remove' : 'removed', 'outside the retention policy']),
          ...p.incompleteRemoved.map((id) => [id, o.dryRun ? 'would remove' : 'removed', 'incomplete (no manifest)']),
          ...p.unverified.map((u) => [u.id, 'left', `does not verify: ${u.reason}`]),
        ];
        process.stdout.write(table(['backup', 'action', 'why'], rows.sort((a, b) => (a[0]! < b[0]! ? 1 : -1))) + '\n');
      }),
    );

  common(backup.command('restore'))
    .description('restore a backup (default: the newest): database into --database, files into --maildir/--extras')
    .option('--backup <id>', 'the backup to restore')
    .option('--database <url>', 'postgres://…/dbname: created if missing; must not already hold the schema')
    .option('--maildir <dir>', 'extract the maildir tree here')
    .option('--extras <dir>', 'extract the extras (DKIM keys, config) here')
    .action((o: CommonOptions & { backup?: string; database?: string; maildir?: string; extras?: string }) =>
      command('restore', async () => {
        if (!o.database && !o.maildir && !o.extras) throw new UsageError('say what to restore: --database, --maildir and/or --extras');
        const ctx = context(o);
        const r = await restoreBackup(ctx.config, ctx, { backupId: o.backup, database: o.database, maildirDir: o.maildir, extrasDir: o.extras });
        process.stdout.write(`restored backup ${r.backupId}\n`);
      }),
    );

  common(backup.command('rotate-key'))
    .description('make new backups use a new key version (old backups stay decryptable; then run rewrap)')
    .action((o: CommonOptions) =>
      command('rotate-key', async () => {
        const ctx = context(o, {}, false);
        const k = ctx.config.backup.keys;
        if (k.provider === 'local') {
          const info = await rotateKeyring(k.local.keyring);
          process.stdout.write(`keyring ${info.id}: version ${info.current} is now current. Run \`ceerion backup rewrap\`, then \`ceerion backup keyring retire N\` for old versions.\n`);
        } else if (k.provider === 'vault') {
          const v = await rotateVaultKey(k.vault);
          process.stdout.write(`Vault transit key ${k.vault.keyName}: version ${v} is now current. Run \`ceerion backup rewrap\`.\n`);
        } else {
          process.stdout.write(
            'AWS KMS rotates key material itself (EnableKeyRotation / RotateKeyOnDemand) and decrypts old data keys transparently. ' +
              'To move to another key, set backup.keys.awsKms.keyId to it and run `ceerion backup rewrap` (KMS ReEncrypt).\n',
          );
        }
      }),
    );

  common(backup.command('rewrap'))
    .description("re-wrap every backup's data key under the current key version and re-sign its manifest (no data re-upload)")
    .action((o: CommonOptions) =>
      command('rewrap', async () => {
        const ctx = context(o);
        const r = await rewrapBackups(ctx.config, ctx);
        process.stdout.write(`rewrapped ${r.rewrapped.length}, already current ${r.alreadyCurrent.length}, failed ${r.failed.length}\n`);
        for (const f of r.failed) process.stdout.write(`  ${f.id}: ${f.reason}\n`);
        return r.failed.length ? 1 : 0;
      }),
    );

  const day = (v: string, flag: string) => {
    if (v === 'daily' || v === 'never' || (WEEKDAYS as readonly string[]).includes(v)) return v as ScheduleSpec['maildirDay'];
    throw new UsageError(`${flag} must be daily, never or one of ${WEEKDAYS.join(', ')}`);
  };
  withRetention(common(backup.command('schedule')))
    .description('stay running and back up every day at --at (UTC): for the compose service and hosts without systemd timers')
    .option('--at <HH:MM>', 'time of day, UTC', '02:30')
    .option('--maildir-day <day>', 'include the maildir on this weekday (daily, never, sun…sat)', 'sun')
    .option('--drill-day <day>', 'run the restore drill after the backup on this weekday', 'mon')
    .option('--metrics-port <port>', 'serve Prometheus /metrics here (default metrics.port; 0: off)')
    .action((o: CommonOptions & RetentionFlags & { at: string; maildirDay: string; drillDay: string; metricsPort?: string }) =>
      command('schedule', async () => {
        const spec: ScheduleSpec = { at: o.at, maildirDay: day(o.maildirDay, '--maildir-day'), drillDay: day(o.drillDay, '--drill-day') };
        const ctx = context(o, retentionOverrides(o));
        const maildir = ctx.config.backup.include.maildir;
        const stop = new AbortController();
        for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => stop.abort());
        // Backup age and failures are what the alerts watch (monitoring/alerts.yml).
        const port = o.metricsPort === undefined ? (ctx.config.metrics.enabled ? ctx.config.metrics.port : 0) : intOption(o.metricsPort, '--metrics-port');
        const registry = createRegistry();
        const metrics = new BackupMetrics(registry);
        const server = port ? await serveMetrics(registry, ctx.config.metrics.host, port, ctx.log) : undefined;
        try {
          await initFromCatalog(metrics, ctx.store, ctx.config.backup.s3.prefix, ctx.log);
          await runSchedule(
            spec,
            {
              log: ctx.log,
              metrics,
              backup: async (withMaildir) => {
                // A fresh provider per run: a rotated keyring is picked up without a restart.
                const keys = createKeyProvider(ctx.config.backup.keys);
                const config = { ...ctx.config, backup: { ...ctx.config.backup, include: { ...ctx.config.backup.include, maildir: withMaildir ? maildir : '' } } };
                const r = await runBackup(config, { ...ctx, keys });
                ctx.log.info({ backup: r.manifest.id, seconds: Math.round(r.durationMs / 1000) }, 'backup schedule: backup complete');
                const p = await pruneBackups(ctx.config, { ...ctx, keys });
                ctx.log.info({ kept: p.kept.length, removed: p.removed.length + p.incompleteRemoved.length, unverified: p.unverified.length }, 'backup schedule: retention applied');
                return { storedBytes: r.manifest.objects.reduce((a, x) => a + x.size, 0), completedAt: new Date(r.manifest.completedAt) };
              },
              drill: async () => {
                const report = await runDrill(ctx.config, { ...ctx, keys: createKeyProvider(ctx.config.backup.keys) });
                ctx.log.info({ rpoHours: report.rpoHours, rtoSeconds: report.rtoSeconds, report: report.drills.map((d) => ({ id: d.backupId, ok: d.ok, error: d.error })) }, 'backup schedule: drill report');
                return report.ok;
              },
            },
            stop.signal,
          );
        } finally {
          await server?.stop();
        }
      }),
    );

  const keyring = backup.command('keyring').description('the local keyring (backup.keys.local.keyring)');
  common(keyring.command('init'))
    .description('create the keyring with key version 1 (mode 0600); refuses to replace one')
    .action((o: CommonOptions) =>
      command('keyring init', async () => {
        const file = context(o, {}, false).config.backup.keys.local.keyring;
        const info = await initKeyring(file);
        process.stdout.write(`created keyring ${info.id} at ${file}. Keep a copy of this file somewhere safe and separate from the backups: without it they cannot be decrypted.\n`);
      }),
    );
  common(keyring.command('list'))
    .description('key versions and dates (no key material)')
    .action((o: CommonOptions) =>
      command('keyring list', async () => {
        const info = keyringInfo(context(o, {}, false).config.backup.keys.local.keyring);
        process.stdout.write(`keyring ${info.id}\n` + table(['version', 'created', 'state'], info.versions.map((v) => [v.version, v.created, v.retired ? `retired ${v.retired}` : v.version === info.current ? 'current' : 'old'])) + '\n');
      }),
    );
  // A positional argument: `--version` belongs to the program (it prints the version and exits).
  common(keyring.command('retire').argument('<version>', 'the key version to retire'))
    .description('delete the material of an old key version; refused while any backup still uses it')
    .action((versionArg: string, o: CommonOptions) =>
      command('keyring retire', async () => {
        const version = intOption(versionArg, 'the key version');
        const ctx = context(o);
        const prefix = ctx.config.backup.s3.prefix;
        const users: string[] = [];
        for (const b of await listBackups(ctx.store, prefix)) {
          const v = await verifyComplete(ctx.store, ctx.keys, prefix, b);
          if (v.ok) v.dataKey.fill(0);
          if (v.manifest && v.manifest.key.provider === 'local' && v.manifest.key.version === String(version)) users.push(b.id);
        }
        if (users.length) throw new Error(`key version ${version} still wraps ${users.length} backup(s) (${users.slice(0, 5).join(', ')}…): run \`ceerion backup rewrap\` first`);
        await retireKeyVersion(ctx.config.backup.keys.local.keyring, version);
        process.stdout.write(`key version ${version} retired\n`);
      }),
    );
}
