// What the dovecot-plugins end-to-end tests share: a private Dovecot running the shipped Sieve
// and IMAPSieve snippets (LMTP for delivery, IMAP for moves), a per-test PostgreSQL schema with
// the classifier's learn log, a per-test Redis key prefix, and `ceerion learner` on the Dovecot's
// gateway socket. Nothing is mocked: the learner is the real service with the real classifier.
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { ImapFlow } from 'imapflow';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { migrateClassifier } from '../../classifier/model/store.ts';
import { configSchema, type Config } from '../../core/config/schema.ts';
import { createPool } from '../../core/db/pool.ts';
import { silentLogger } from '../../core/log.ts';
import { ensureSpool } from '../../dovecot-plugins/learn/spool.ts';
import { startLearnerService, type LearnerService, type LearnerServiceDeps } from '../../dovecot-plugins/learn/service.ts';
import { startDovecot, type DovecotInstance, type DovecotOptions } from '../harness/dovecot.ts';
import { testSchema } from '../harness/postgres.ts';

export interface LearnStack {
  dovecot: DovecotInstance;
  config: Config;
  pool: pg.Pool;
  spoolDir: string;
  redis: Redis;
  /** Starts the learner (gateway + worker) on the Dovecot's socket; stopped after the test. */
  startLearner(deps?: LearnerServiceDeps): Promise<LearnerService>;
  imap(user?: string, password?: string): Promise<ImapFlow>;
  /** classifier_learned rows per class (scope as configured: '' for global). */
  counts(scope?: string): Promise<{ spam: number; ham: number }>;
  /** Polls counts() until `want` holds; resolves with the elapsed ms. */
  waitForCounts(want: { spam: number; ham: number }, timeoutMs?: number, scope?: string): Promise<number>;
}

export const USERS = [
  { name: 'alice', password: 'secret' },
  { name: 'bob', password: 'hunter2' },
  // Unusual but legal: +detail, non-ASCII, shell and Sieve metacharacters ($ =).
  { name: 'jürgen+tag=x$y.o_k@exämple.com', password: 'pässwörd' },
];

export async function startLearnStack(t: TestContext, opts: { dovecot?: Partial<DovecotOptions>; learn?: Record<string, unknown>; flags?: boolean; pipeTimeout?: string } = {}): Promise<LearnStack> {
  const db = testSchema(t);
  const pool = createPool(db);
  t.after(() => pool.end());
  await migrateClassifier(pool);
  const prefix = `ceerion-test-${randomBytes(5).toString('hex')}:`;
  const redis = new Redis('redis://127.0.0.1:6379', { lazyConnect: false });
  t.after(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });
  const spoolDir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-learn-spool-'));
  await chmod(spoolDir, 0o755);
  await ensureSpool(spoolDir);
  t.after(() => rm(spoolDir, { recursive: true, force: true }));
  const dovecot = await startDovecot({ users: USERS, lmtp: true, sieveDelivery: true, learn: { spoolDir, flags: opts.flags ?? false, timeout: opts.pipeTimeout ?? '10s' }, ...opts.dovecot });
  t.after(() => dovecot.stop());
  const config = configSchema.parse({
    redis: { url: 'redis://127.0.0.1:6379', keyPrefix: prefix },
    database: db,
    learn: {
      gateway: { socket: dovecot.learnSocket },
      spool: { dir: spoolDir, scanIntervalMs: 200 },
      worker: { retryDelayMs: 300 },
      ...opts.learn,
    },
  });
  const counts = async (scope = ''): Promise<{ spam: number; ham: number }> => {
    const { rows } = await pool.query<{ cls: 'spam' | 'ham'; n: string }>('SELECT cls, count(*) AS n FROM classifier_learned WHERE scope = $1 GROUP BY cls', [scope]);
    const out = { spam: 0, ham: 0 };
    for (const r of rows) out[r.cls] = Number(r.n);
    return out;
  };
  return {
    dovecot,
    config,
    pool,
    spoolDir,
    redis,
    async startLearner(deps = {}) {
      const service = await startLearnerService(config, { log: silentLogger, ...deps });
      t.after(() => service.stop());
      return service;
    },
    async imap(user = 'alice', password = 'secret') {
      const client = new ImapFlow({ host: '127.0.0.1', port: dovecot.imapPort, secure: false, auth: { user, pass: password }, logger: process.env.IMAP_DEBUG ? { debug: () => {}, info: () => {}, warn: (o: unknown) => console.log('W', o), error: (o: unknown) => console.log('E', o) } : false });
      await client.connect();
      t.after(async () => {
        if (client.usable) await client.logout().catch(() => client.close());
      });
      return client;
    },
    counts,
    async waitForCounts(want, timeoutMs = 5_000, scope = '') {
      const start = Date.now();
      for (;;) {
        const got = await counts(scope);
        if (got.spam === want.spam && got.ham === want.ham) return Date.now() - start;
        if (Date.now() - start > timeoutMs) throw new Error(`classifier counts ${JSON.stringify(got)}, wanted ${JSON.stringify(want)} within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

/** A plain message; `headers` are added on top (e.g. X-Spam-Flag: YES). */
export function message(opts: { subject: string; headers?: Record<string, string>; messageId?: string | null; body?: string }): string {
  const lines = ['From: Sender <sender@example.net>', 'To: alice@example.com', `Subject: ${opts.subject}`, 'Date: Sat, 21 Nov 2026 10:00:00 +0000'];
  if (opts.messageId !== null) lines.push(`Message-ID: ${opts.messageId ?? `<${randomBytes(8).toString('hex')}@example.net>`}`);
  for (const [k, v] of Object.entries(opts.headers ?? {})) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n${opts.body ?? `Hello, this is ${opts.subject}.\r\n`}`;
}
