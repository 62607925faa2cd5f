// A backup test bench: a schema of its own in the shared PostgreSQL with the suite's real
// migrations and generated mail metadata, a maildir of generated files, a private s3rver with its
// own bucket, and a local keyring, all under one temp dir and removed after the test.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import pg from 'pg';
import { createKeyProvider, initKeyring } from '../../backup/keys/index.ts';
import { createObjectStore } from '../../backup/storage/index.ts';
import type { KeyProvider, ObjectStore } from '../../backup/contracts.ts';
import { migrateIndex } from '../../lmtp-indexer/index/schema.ts';
import { configSchema, type Config } from '../../core/config/schema.ts';
import { createPool } from '../../core/db/pool.ts';
import { silentLogger } from '../../core/log.ts';
import { startS3rver } from '../harness/s3rver.ts';
import { SHARED_DATABASE_URL, dropSchema } from '../harness/postgres.ts';

export interface BackupBench {
  config: Config;
  store: ObjectStore;
  keys: () => KeyProvider;
  dir: string;
  maildir: string;
  schema: string;
  /** A client on the shared server, search_path = the test schema. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
  deps(): { store: ObjectStore; keys: KeyProvider; log: typeof silentLogger };
}

export interface BenchOptions {
  messages?: number;
  maildirFiles?: number;
  /** Extra config merged over the bench's (backup section). */
  backup?: Record<string, unknown>;
}

/** Mail metadata like the LMTP indexer writes it, generated in SQL (fast even for 100k rows). */
export async function fillMessages(client: pg.Client | pg.Pool, schema: string, n: number, start = 1): Promise<void> {
  await client.query(
    `INSERT INTO ${schema}.accounts (address, password) SELECT 'user' || g || '@example.com', '{BLF-CRYPT}x' FROM generate_series(1, 20) g ON CONFLICT DO NOTHING`,
  );
  await client.query(
    `INSERT INTO ${schema}.indexed_messages (account, content_sha256, size_bytes, received_at, message_id, from_address, subject, snippet, language, tsv)
     SELECT 'user' || (g % 20 + 1) || '@example.com', sha256(int8send(g)), 1000 + g % 5000,
            now() - g * interval '1 second', '<' || g || '@example.com>', 'sender' || g % 97 || '@example.org',
            'Subject ' || g, 'snippet of message ' || g, 'simple', to_tsvector('simple', 'subject ' || g || ' words here')
       FROM generate_series($1::bigint, $2::bigint) g`,
    [start, start + n - 1],
  );
  await client.query(
    `INSERT INTO ${schema}.mail_events (account, seq, kind, payload, message_row)
     SELECT m.account, m.id, 'new', '{}'::jsonb, m.id
       FROM ${schema}.indexed_messages m WHERE m.id % 10 = 0 AND m.id >= $1`,
    [start],
  );
}

/** user/{cur,new,tmp} folders with small messages, as Dovecot's maildir keeps them. */
export async function fillMaildir(root: string, files: number): Promise<void> {
  for (let i = 0; i < files; i++) {
    const user = `user${i % 20}`;
    const sub = i % 3 === 0 ? 'new' : 'cur';
    const dir = path.join(root, 'example.com', user, 'Maildir', sub);
    await mkdir(dir, { recursive: true });
    const body = `From: a@example.org\r\nSubject: ${i}\r\n\r\n${randomBytes(200 + (i % 700)).toString('base64')}\r\n`;
    await writeFile(path.join(dir, `${1_700_000_000 + i}.M${i}P1.host${sub === 'cur' ? ':2,S' : ''}`), body);
  }
}

export async function startBench(t: TestContext, opts: BenchOptions = {}): Promise<BackupBench> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-backup-test-'));
  const schema = `test_${randomBytes(6).toString('hex')}`;
  const s3 = await startS3rver();
  const maildir = path.join(dir, 'vmail');
  await mkdir(maildir, { recursive: true });
  const keyring = path.join(dir, 'keyring.json');
  await initKeyring(keyring);
  const config = configSchema.parse({
    database: { url: SHARED_DATABASE_URL, schema },
    backup: {
      s3: s3.config,
      keys: { provider: 'local', local: { keyring } },
      include: { maildir: opts.maildirFiles ? maildir : '', sampleFiles: 50 },
      encryption: { chunkBytes: 64 * 1024 },
      drill: { workDir: dir },
      ...(opts.backup ?? {}),
    },
  });
  const pool = createPool(config.database, { max: 2 });
  await migrateIndex(pool);
  if (opts.messages) await fillMessages(pool, schema, opts.messages);
  if (opts.maildirFiles) await fillMaildir(maildir, opts.maildirFiles);
  const store = createObjectStore(config.backup.s3, { log: silentLogger });
  t.after(async () => {
    await pool.end();
    await dropSchema(SHARED_DATABASE_URL, schema);
    await s3.close();
    await rm(dir, { recursive: true, force: true });
  });
  const keys = () => createKeyProvider(config.backup.keys);
  return {
    config,
    store,
    keys,
    dir,
    maildir,
    schema,
    query: (sql, params) => pool.query(sql, params as unknown[]),
    deps: () => ({ store, keys: keys(), log: silentLogger }),
  };
}

/** An object's bytes, for tests that tamper with the bucket as an attacker with write access would. */
export async function objectBytes(store: ObjectStore, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await store.get(key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The bench as an operator's environment: the CEERION_* variables `ceerion backup …` reads. */
export function benchEnv(bench: BackupBench): Record<string, string> {
  const b = bench.config.backup;
  return {
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
}
