// The pieces the Dovecot end-to-end tests share: a migrated PostgreSQL schema with accounts whose
// passwords Dovecot hashed itself (doveadm pw), the indexer's HTTP server with only POST /push, and
// the private Dovecot running the shipped snippets against both.
import { execFile } from 'node:child_process';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import type pg from 'pg';
import { silentLogger } from '../../../core/log.ts';
import { ApiServer } from '../../../lmtp-indexer/http/server.ts';
import { pushRoute, type PushRoute } from '../../../lmtp-indexer/push/route.ts';
import { startDovecot, type DovecotInstance, type DovecotOptions } from '../../harness/dovecot.ts';
import { migratedPool } from '../push/helpers.ts';

const run = promisify(execFile);

/** A hash in a scheme Dovecot verifies natively, made by Dovecot itself. */
export async function dovecotHash(password: string, scheme: 'BLF-CRYPT' | 'ARGON2ID'): Promise<string> {
  const { stdout } = await run('doveadm', ['pw', '-s', scheme, '-p', password]);
  return stdout.trim();
}

export async function addAccount(pool: pg.Pool, a: { address: string; password: string; scheme?: 'BLF-CRYPT' | 'ARGON2ID'; quotaRule?: string | null; enabled?: boolean }): Promise<void> {
  await pool.query('INSERT INTO accounts (address, password, quota_rule, enabled) VALUES ($1, $2, $3, $4)', [
    a.address,
    await dovecotHash(a.password, a.scheme ?? 'BLF-CRYPT'),
    a.quotaRule ?? null,
    a.enabled ?? true,
  ]);
}

export interface Stack {
  pool: pg.Pool;
  dovecot: DovecotInstance;
  push: PushRoute;
  pushUrl: string;
}

export const PUSH_TOKEN = 'e2e-push-token-4f1c';

/**
 * Schema + accounts table, the /push receiver on a free port, and Dovecot with SQL accounts, LMTP,
 * quota and push. `dovecotToken` is the token Dovecot sends (default: the right one).
 */
export async function startStack(t: TestContext, dovecot: Partial<DovecotOptions> = {}, dovecotToken = PUSH_TOKEN): Promise<Stack> {
  const { pool, url, schema } = await migratedPool(t);
  // Fast retries: the row a delivery waits for is written by the test right after the 250.
  const push = pushRoute({ pool, token: PUSH_TOKEN, log: silentLogger, receiverOptions: { retryDelaysMs: [20, 50, 100] } });
  const api = new ApiServer({ host: '127.0.0.1', port: 0, routes: [push], upgrades: [], log: silentLogger });
  const port = await api.listen();
  t.after(async () => {
    push.close();
    await api.stop();
  });
  const pushUrl = `http://127.0.0.1:${port}/push`;
  const instance = await startDovecot({
    sqlAccounts: { url, schema },
    lmtp: true,
    quota: {},
    push: { url: pushUrl, token: dovecotToken, backoffSecs: 3600 },
    ...dovecot,
  });
  t.after(() => instance.stop());
  return { pool, dovecot: instance, push, pushUrl };
}

/** A small message with this Message-ID, CRLF line ends. */
export function message(messageId: string | null, opts: { subject?: string; bodyBytes?: number } = {}): string {
  const body = 'x'.repeat(opts.bodyBytes ?? 40).replace(/(.{70})/g, '$1\r\n');
  return [
    'From: Sender <sender@example.net>',
    'To: alice@example.com',
    `Subject: ${opts.subject ?? 'push e2e'}`,
    'Date: Sat, 21 Nov 2026 12:00:00 +0000',
    ...(messageId ? [`Message-ID: ${messageId}`] : []),
    '',
    body,
    '',
  ].join('\r\n');
}
