/**
 * Bulk-loads the synthetic corpus (search-data.ts) into indexed_messages of a schema of its own:
 * 1. COPY the raw fields into an unlogged staging table through `psql` (COPY FROM STDIN needs a
 *    copy-stream package with node-postgres; psql ships with every PostgreSQL install);
 * 2. build the rows, tsvector included, in SQL as lmtp-indexer/index/writer.ts does (A subject,
 *    B names and addresses with their local parts and domains, D body), in id ranges on two
 *    connections;
 * 3. create the indexes after the data (one sorted build instead of a million inserts), ANALYZE.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type pg from 'pg';
import type { DatabaseConfig } from '../../core/config/policyd.ts';
import { copyLine, corpus, STAGING_COLUMNS, type CorpusShape } from './search-data.ts';

/** Indexes 0001_index.sql creates on indexed_messages that the load drops and rebuilds. */
const MIGRATION_INDEXES = [
  'CREATE INDEX indexed_messages_account_tsv ON indexed_messages USING gin (account, tsv)',
  'CREATE INDEX indexed_messages_account_received ON indexed_messages (account, received_at DESC, id DESC)',
  'CREATE INDEX indexed_messages_account_message_id ON indexed_messages (account, message_id)',
  'CREATE INDEX indexed_messages_account_uid ON indexed_messages (account, mailbox, imap_uid)',
];

export interface LoadTimes {
  copySeconds: number;
  buildSeconds: number;
  indexSeconds: number;
  analyzeSeconds: number;
}

async function copyStaging(config: DatabaseConfig, shape: CorpusShape, progress: (line: string) => void): Promise<void> {
  const psql = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', config.url, '-c', `COPY ${config.schema}.search_staging (${STAGING_COLUMNS}) FROM STDIN`], {
    stdio: ['pipe', 'inherit', 'inherit'],
  });
  const exited = once(psql, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let batch = '';
  for (const m of corpus(shape)) {
    batch += copyLine(m);
    if (batch.length > 1 << 20) {
      // Respect the pipe's backpressure: the generator is faster than COPY.
      if (!psql.stdin.write(batch)) await once(psql.stdin, 'drain');
      batch = '';
    }
    if (m.id % 100_000 === 0) progress(`  generated and copied ${m.id.toLocaleString('en-US')}`);
  }
  psql.stdin.end(batch);
  const [code, signal] = await exited;
  if (code !== 0) throw new Error(`psql COPY failed (exit ${code ?? signal})`);
}

const BUILD = `
INSERT INTO indexed_messages (id, account, content_sha256, size_bytes, received_at, message_id, from_address, from_name,
  to_addresses, cc_addresses, subject, sent_at, has_attachment, attachments, snippet, language, tsv, mailbox, uid_validity,
  imap_uid, flags, expunged_at)
SELECT id, account, sha256(convert_to(id::text, 'UTF8')), size_bytes, received_at, '<' || id || '@bench.example>', from_address,
  from_name, to_addresses, cc_addresses, subject, received_at - interval '7 seconds', jsonb_array_length(attachments) > 0,
  attachments, left(body, 200), 'simple',
  setweight(to_tsvector('simple', subject), 'A')
    || setweight(to_tsvector('simple', people), 'B')
    || to_tsvector('simple', body),
  mailbox, CASE WHEN mailbox IS NULL THEN NULL ELSE 1 END, imap_uid, flags,
  CASE WHEN expunged THEN received_at + interval '1 day' END
FROM search_staging WHERE id BETWEEN $1 AND $2`;

export async function loadCorpus(pool: pg.Pool, config: DatabaseConfig, shape: CorpusShape, opts: { proposals: boolean }, progress: (line: string) => void): Promise<LoadTimes> {
  const t0 = performance.now();
  await pool.query('DROP TABLE IF EXISTS search_staging');
  await pool.query(`CREATE UNLOGGED TABLE search_staging (id bigint PRIMARY KEY, account text, subject text, from_address text, from_name text,
    to_addresses text[], cc_addresses text[], received_at timestamptz, size_bytes bigint, attachments jsonb, mailbox text,
    imap_uid bigint, flags text[], expunged boolean, people text, body text)`);
  await pool.query('TRUNCATE indexed_messages CASCADE');
  // Storage settings apply to rows written after them: set (or reset) before the load.
  for (const sql of opts.proposals ? PROPOSED_STORAGE : BASELINE_STORAGE) await pool.query(sql);
  for (const sql of MIGRATION_INDEXES) await pool.query(`DROP INDEX IF EXISTS ${/INDEX (\S+)/.exec(sql)![1]}`);
  await copyStaging(config, shape, progress);
  const t1 = performance.now();
  const CHUNK = 50_000;
  let next = 1;
  let done = 0;
  await Promise.all(
    [0, 1].map(async () => {
      const client = await pool.connect();
      try {
        // A bench load, thrown away on a crash: no need to wait for the WAL flush per chunk.
        await client.query('SET synchronous_commit = off');
        for (let from = next; from <= shape.total; from = next) {
          next += CHUNK;
          await client.query(BUILD, [from, from + CHUNK - 1]);
          done += CHUNK;
          if (done % 100_000 === 0) progress(`  built ${Math.min(done, shape.total).toLocaleString('en-US')} rows`);
        }
      } finally {
        client.release();
      }
    }),
  );
  await pool.query(`SELECT setval(pg_get_serial_sequence('indexed_messages', 'id'), $1)`, [shape.total]);
  const t2 = performance.now();
  await Promise.all(
    // Two at a time: the machine has two cores.
    [MIGRATION_INDEXES.slice(0, 2), MIGRATION_INDEXES.slice(2)].map(async (group) => {
      const client = await pool.connect();
      try {
        await client.query("SET maintenance_work_mem = '512MB'");
        for (const sql of group) {
          await client.query(sql);
          progress(`  ${sql.slice(0, 80)}`);
        }
      } finally {
        client.release();
      }
    }),
  );
  const t3 = performance.now();
  await pool.query('DROP TABLE search_staging');
  await pool.query('VACUUM ANALYZE indexed_messages');
  const t4 = performance.now();
  return { copySeconds: (t1 - t0) / 1000, buildSeconds: (t2 - t1) / 1000, indexSeconds: (t3 - t2) / 1000, analyzeSeconds: (t4 - t3) / 1000 };
}

/**
 * Storage proposed for the migration: keep tsvectors up to ~8 KB in the heap row (PostgreSQL
 * moves anything over 2 KB to TOAST by default, and about a third of them are) and compress them
 * with lz4. Ranking and phrase checks read the tsvector of every candidate row: in the row, that
 * is the heap page the scan has already fetched, instead of a TOAST index lookup and chunk reads.
 */
export const PROPOSED_STORAGE = [
  'ALTER TABLE indexed_messages SET (toast_tuple_target = 8160)',
  'ALTER TABLE indexed_messages ALTER COLUMN tsv SET COMPRESSION lz4',
];
const BASELINE_STORAGE = ['ALTER TABLE indexed_messages RESET (toast_tuple_target)', 'ALTER TABLE indexed_messages ALTER COLUMN tsv SET COMPRESSION default'];

/**
 * Indexes proposed for the migration, created here until they are merged (IF NOT EXISTS: reruns):
 * - subject: words in the subject alone. Without it, subject:x reads every message with x
 *   anywhere (the tsvector's weights are not in GIN) and checks its subject;
 * - attachments, newest first: `has:attachment` with words walks only the 12% of rows that have
 *   one, instead of every row of the account until enough match.
 */
export const PROPOSED_INDEXES: string[] = [
  `CREATE INDEX IF NOT EXISTS indexed_messages_account_subject ON indexed_messages USING gin (account, to_tsvector(language, coalesce(subject, '')))`,
  'CREATE INDEX IF NOT EXISTS indexed_messages_account_attachment ON indexed_messages (account, received_at DESC, id DESC) WHERE has_attachment',
];
