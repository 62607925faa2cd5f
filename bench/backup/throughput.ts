// Backup benchmark (issue 8): a ~1 GB generated mail database, backed up by `ceerion backup run`
// (pg_dump → zstd → AES-256-GCM STREAM → S3 multipart to s3rver in another process) against
// `pg_dump -Fc -Z0 | zstd -1 > file` in the same run; then the drill's RTO on that backup, and the
// peak RSS of both.
//
//   node --import tsx bench/backup/throughput.ts [--rows 1200000] [--rounds 2] [--regenerate]
//
// The database is kept between runs (database ceerion_bench, schema bench_backup): generating it
// takes a few minutes; --regenerate rebuilds it.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { createPool } from '../../core/db/pool.ts';
import { table } from '../../core/text-table.ts';
import { migrateIndex } from '../../lmtp-indexer/index/schema.ts';
import { initKeyring } from '../../backup/keys/index.ts';
import { fillMessages } from '../../test/backup/fixture.ts';

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const ROWS = opt('rows', 1_200_000);
const ROUNDS = opt('rounds', 2);
const SERVER = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = 'ceerion_bench';
const SCHEMA = 'bench_backup';
const dbUrl = (() => {
  const u = new URL(SERVER);
  u.pathname = `/${DB}`;
  return u.toString();
})();

async function prepare(): Promise<number> {
  const admin = new pg.Client({ connectionString: SERVER });
  await admin.connect();
  const exists = (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DB])).rowCount;
  if (!exists) await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  const pool = createPool({ url: dbUrl, schema: SCHEMA }, { max: 2 });
  try {
    const have = await pool.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1 AND tablename = 'indexed_messages'`, [SCHEMA]);
    let rows = 0;
    if (have.rows[0].n && !args.includes('--regenerate')) rows = (await pool.query('SELECT count(*)::int AS n FROM indexed_messages')).rows[0].n;
    if (rows !== ROWS) {
      process.stderr.write(`generating ${ROWS} messages in ${DB}.${SCHEMA} …\n`);
      await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
      await pool.query(`CREATE SCHEMA ${SCHEMA}`);
      await migrateIndex(pool);
      for (let start = 1; start <= ROWS; start += 100_000) {
        await fillMessages(pool, SCHEMA, Math.min(100_000, ROWS - start + 1), start);
        process.stderr.write(`  ${Math.min(start + 99_999, ROWS)}\n`);
      }
      await pool.query('VACUUM ANALYZE');
    }
    const size = await pool.query(`SELECT sum(pg_total_relation_size(c.oid))::bigint AS b FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`, [SCHEMA]);
    return Number(size.rows[0].b);
  } finally {
    await pool.end();
  }
}

function baseline(out: string): { ms: number; bytes: number } {
  const t0 = performance.now();
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', `pg_dump -Fc -Z0 --schema=${SCHEMA} -d '${dbUrl}' | zstd -q -1 -T0 > '${out}'`]);
  if (r.status !== 0) throw new Error(`baseline failed: ${r.stderr}`);
  const ms = performance.now() - t0;
  const plain = spawnSync('bash', ['-o', 'pipefail', '-c', `zstd -dc '${out}' | wc -c`]);
  return { ms, bytes: Number(plain.stdout.toString().trim()) };
}

function child(mode: 'run' | 'drill', configFile: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--max-semi-space-size=2', '--import', 'tsx', path.join(import.meta.dirname, 'child.ts'), mode, configFile], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (b) => (out += b));
    p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${mode} child exited ${code}: ${out}`))));
  });
}

async function startS3(): Promise<{ config: Record<string, unknown>; stop(): void }> {
  const p = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 's3rver-process.ts')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve) => createInterface({ input: p.stdout }).once('line', resolve));
  return { config: JSON.parse(line), stop: () => p.kill('SIGTERM') };
}

const sizeBytes = await prepare();
const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-bench-backup-'));
const s3 = await startS3();
const keyring = path.join(dir, 'keyring.json');
await initKeyring(keyring);
const config = (level: number) => ({
  database: { url: dbUrl, schema: SCHEMA },
  log: { level: 'silent' },
  backup: { s3: s3.config, keys: { local: { keyring } }, compression: { codec: 'zstd', level }, drill: { workDir: dir } },
});
const files: Record<number, string> = {};
for (const level of [1, 3]) {
  files[level] = path.join(dir, `config-${level}.json`);
  await writeFile(files[level]!, JSON.stringify(config(level)));
}

const rows: Array<Array<string | number>> = [];
let lastRun: Record<string, unknown> = {};
const MB = 1e6;
try {
  for (let round = 1; round <= ROUNDS; round++) {
    const base = baseline(path.join(dir, 'baseline.dump.zst'));
    const baseMBs = base.bytes / MB / (base.ms / 1000);
    rows.push([round, 'pg_dump -Fc -Z0 | zstd -1 > file', (base.ms / 1000).toFixed(1), (base.bytes / MB).toFixed(0), baseMBs.toFixed(1), '1.00', '-']);
    for (const level of [1, 3]) {
      const r = await child('run', files[level]!);
      lastRun = r;
      const mbs = (r.plaintextBytes as number) / MB / ((r.ms as number) / 1000);
      rows.push([round, `ceerion backup run (zstd -${level}, encrypt, S3)`, ((r.ms as number) / 1000).toFixed(1), ((r.plaintextBytes as number) / MB).toFixed(0), mbs.toFixed(1), (mbs / baseMBs).toFixed(2), (r.maxRssMb as number).toFixed(0)]);
    }
  }
  const drill = await child('drill', files[3]!);
  const ph = drill.phasesMs as Record<string, number>;
  const baseSize = (await stat(path.join(dir, 'baseline.dump.zst'))).size;
  process.stdout.write(
    `\nDatabase: ${(sizeBytes / MB).toFixed(0)} MB on disk (tables + indexes), ${ROWS} messages; pg_dump archive ${((lastRun.plaintextBytes as number) / MB).toFixed(0)} MB, zstd -1 file ${(baseSize / MB).toFixed(0)} MB, stored (zstd -3, encrypted; the last run) ${((lastRun.storedBytes as number) / MB).toFixed(0)} MB\n\n` +
      table(['round', 'what', 's', 'dump MB', 'MB/s', 'ratio', 'peak RSS MB'], rows) +
      '\n\n' +
      table(
        ['drill', 'manifest s', 'download s', 'decrypt s', 'restore s', 'verify s', 'cleanup s', 'RTO s', 'peak RSS MB', 'ok'],
        [['newest', ...['manifest', 'download', 'decrypt', 'restore', 'verify', 'cleanup'].map((p) => ((ph[p] ?? 0) / 1000).toFixed(1)), (drill.rtoSeconds as number).toFixed(1), (drill.maxRssMb as number).toFixed(0), String(drill.ok)]],
      ) +
      '\n',
  );
  if (!drill.ok) process.stdout.write(`drill error: ${JSON.stringify(drill.error ?? drill.failed)}\n`);
} finally {
  s3.stop();
  await rm(dir, { recursive: true, force: true });
}
