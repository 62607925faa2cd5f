/**
 * The backup runbooks' environment: a backup bench (test/backup/fixture.ts: a schema with mail
 * metadata, a maildir, a private s3rver, a local keyring) exposed to the runbook blocks only
 * through CEERION_* variables, as an operator's env file would.
 */
import type { TestContext } from 'node:test';
import { benchEnv, startBench, type BackupBench } from '../backup/fixture.ts';

export async function backupEnv(t: TestContext): Promise<{ bench: BackupBench; env: Record<string, string> }> {
  const bench = await startBench(t, { messages: 300, maildirFiles: 12 });
  return { bench, env: benchEnv(bench) };
}
