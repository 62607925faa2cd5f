/**
 * The backup runbooks' environment: a backup bench (test/backup/fixture.ts: a schema with mail
 * metadata, a maildir, a private s3rver, a local keyring) exposed to the runbook blocks only
 * through CEERION_* variables, as an operator's env file would.
 */
import type { TestContext } from 'node:test';
import { startBench, type BackupBench } from '../backup/fixture.ts';

export async function backupEnv(t: TestContext): Promise<{ bench: BackupBench; env: Record<string, string> }> {
  const bench = await startBench(t, { messages: 300, maildirFiles: 12 });
  const b = bench.config.backup;
  const env: Record<string, string> = {
    CEERION_DATABASE_URL: bench.config.database.url,
    CEERION_DATABASE_SCHEMA: bench.schema,
    CEERION_BACKUP_S3_ENDPOINT: b.s3.endpoint,
    CEERION_BACKUP_S3_BUCKET: b.s3.bucket,
    CEERION_BACKUP_S3_ACCESS_KEY_ID: b.s3.accessKeyId,
    CEERION_BACKUP_S3_SECRET_ACCESS_KEY: b.s3.secretAccessKey,
    CEERION_BACKUP_KEYS_LOCAL_KEYRING: b.keys.local.keyring,
    CEERION_BACKUP_INCLUDE_MAILDIR: bench.maildir,
    CEERION_BACKUP_DRILL_WORK_DIR: bench.dir,
  };
  return { bench, env };
}
