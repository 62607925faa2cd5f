// The whole delivery path for end-to-end tests: a private Postfix whose virtual_transport is our
// LMTP indexer (started in-process from the real config schema), a private Dovecot with accounts
// in PostgreSQL (the shipped sql/lmtp/quota/push snippets), and PostgreSQL: a schema of the shared
// server, or a private server the test can stop and start.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { ImapFlow } from 'imapflow';
import type pg from 'pg';
import { configSchema, type Config } from '../../../core/config/schema.ts';
import { createPool } from '../../../core/db/pool.ts';
import { silentLogger } from '../../../core/log.ts';
import { createToken } from '../../../lmtp-indexer/auth/tokens.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import { startLmtpService, type LmtpService } from '../../../lmtp-indexer/service.ts';
import { startDovecot, type DovecotInstance } from '../../harness/dovecot.ts';
import { startPostgres, testSchema, type PrivatePostgres } from '../../harness/postgres.ts';
import { freePort, startPostfix, type PostfixInstance } from '../../harness/postfix.ts';
import { addAccount } from '../dovecot/stack.ts';

export const DOMAIN = 'example.test';
export const PASSWORD = 'correct horse';
const PUSH_TOKEN = 'e2e-stack-push-token';

export interface LmtpStack {
  config: Config;
  pool: pg.Pool;
  service: LmtpService;
  dovecot: DovecotInstance;
  postfix: PostfixInstance;
  /** Only with `privatePostgres`. */
  postgres?: PrivatePostgres;
  api: string;
  /** A search/events token per account local part. */
  tokens: Record<string, string>;
  imap(user: string): Promise<ImapFlow>;
}

export interface LmtpStackOptions {
  /** Accounts (local parts) and their Dovecot quota_rule (null: none). */
  accounts?: Record<string, string | null>;
  privatePostgres?: boolean;
  /** Index replay interval: short, so tests see the catch-up quickly. */
  replayIntervalMs?: number;
  /** SMTP AUTH on Postfix's smtpd through Dovecot's auth socket, and /mail/send pointed at it. */
  submission?: boolean;
}

export async function startLmtpStack(t: TestContext, opts: LmtpStackOptions = {}): Promise<LmtpStack> {
  const accounts = opts.accounts ?? { alice: null, bob: null };
  let database: { url: string; schema: string };
  let postgres: PrivatePostgres | undefined;
  if (opts.privatePostgres) {
    postgres = await startPostgres();
    t.after(() => postgres!.close());
    database = { url: postgres.url, schema: 'ceerion' };
  } else database = testSchema(t);
  const pool = createPool(database);
  t.after(() => pool.end());
  // The schema must exist before Dovecot's first userdb lookup; the service migrates again (a no-op).
  if (postgres) await pool.query('CREATE SCHEMA IF NOT EXISTS ceerion');
  await migrateIndex(pool);
  for (const [name, quotaRule] of Object.entries(accounts)) await addAccount(pool, { address: `${name}@${DOMAIN}`, password: PASSWORD, quotaRule });

  const work = await mkdtemp(path.join(os.tmpdir(), 'ceerion-lmtp-e2e-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  // Postfix's smtpd (user postfix) must reach Dovecot's auth socket in here.
  await chmod(work, 0o755);
  const authSocket = path.join(work, 'auth-postfix');
  const httpPort = await freePort();
  const dovecot = await startDovecot({
    sqlAccounts: database,
    lmtp: true,
    quota: {},
    push: { url: `http://127.0.0.1:${httpPort}/push`, token: PUSH_TOKEN },
    ...(opts.submission ? { extraConfig: `service auth {\n  unix_listener ${authSocket} {\n    mode = 0666\n  }\n}` } : {}),
  });
  t.after(() => dovecot.stop());

  const config = configSchema.parse({
    hostname: 'mx.example.test',
    log: { level: 'silent' },
    database,
    lmtp: {
      listen: `inet:127.0.0.1:${await freePort()}`,
      spoolDir: path.join(work, 'spool'),
      dovecot: { address: `inet:127.0.0.1:${dovecot.lmtpPort}`, timeoutMs: 10_000 },
      recipientLookup: { enabled: true },
      index: { backlogDir: path.join(work, 'backlog'), replayIntervalMs: opts.replayIntervalMs ?? 500 },
      http: { port: httpPort, pushToken: PUSH_TOKEN },
      // Filled in below, once Postfix has its port.
      submission: { host: '127.0.0.1', port: 1 },
    },
  });
  const service = await startLmtpService(config, { log: silentLogger });
  t.after(() => service.stop());

  const postfix = await startPostfix({
    relayPort: await freePort(),
    main: {
      virtual_mailbox_domains: DOMAIN,
      virtual_transport: `lmtp:${service.address}`,
      smtpd_reject_unlisted_recipient: 'no',
      // Bad-input tests send up to 50 MB.
      message_size_limit: String(60 * 1024 * 1024),
      ...(opts.submission
        ? { smtpd_sasl_auth_enable: 'yes', smtpd_sasl_type: 'dovecot', smtpd_sasl_path: authSocket, smtpd_sasl_security_options: 'noanonymous', smtpd_tls_auth_only: 'no' }
        : {}),
    },
  });
  t.after(() => postfix.stop());
  // The route reads its config object when a request comes, so the port can be set now.
  config.lmtp.submission.port = postfix.smtpPort;

  const tokens: Record<string, string> = {};
  for (const name of Object.keys(accounts)) tokens[name] = await createToken(pool, `${name}@${DOMAIN}`);
  const imap = async (user: string): Promise<ImapFlow> => {
    const client = new ImapFlow({ host: '127.0.0.1', port: dovecot.imapPort, secure: false, auth: { user: `${user}@${DOMAIN}`, pass: PASSWORD }, logger: false });
    await client.connect();
    t.after(() => client.logout().catch(() => client.close()));
    return client;
  };
  return { config, pool, service, dovecot, postfix, ...(postgres ? { postgres } : {}), api: `http://127.0.0.1:${service.httpPort}`, tokens, imap };
}

/** Polls `probe` until it returns a value that is not undefined. */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The Subjects in a user's mailbox, over IMAP. */
export async function subjects(client: ImapFlow, mailbox = 'INBOX'): Promise<string[]> {
  const lock = await client.getMailboxLock(mailbox);
  try {
    const out: string[] = [];
    if ((client.mailbox && typeof client.mailbox === 'object' ? client.mailbox.exists : 0) === 0) return out;
    for await (const m of client.fetch('1:*', { envelope: true })) out.push(m.envelope?.subject ?? '');
    return out.sort();
  } finally {
    lock.release();
  }
}

export async function search(stack: LmtpStack, user: string, q: string): Promise<{ status: number; body: { hits?: Array<Record<string, unknown>>; error?: string } }> {
  const res = await fetch(`${stack.api}/search?q=${encodeURIComponent(q)}`, { headers: { authorization: `Bearer ${stack.tokens[user]}` } });
  return { status: res.status, body: (await res.json()) as { hits?: Array<Record<string, unknown>> } };
}
