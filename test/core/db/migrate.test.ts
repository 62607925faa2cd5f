/**
 * The migrator and the pool against the real PostgreSQL, one fresh schema per test: migrations
 * apply once, reruns apply nothing, an edited applied file is refused, a failing file leaves
 * nothing behind, and two starters racing apply each migration exactly once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { migrate, MigrationError, readMigrations } from '../../../core/db/migrate.ts';
import { createPool, redactUrl } from '../../../core/db/pool.ts';
import { testSchema } from '../../harness/postgres.ts';

function migrationsDir(t: TestContext, files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-migrations-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, sql] of Object.entries(files)) writeFileSync(path.join(dir, name), sql);
  return dir;
}

function pool(t: TestContext, db = testSchema(t)) {
  const p = createPool(db);
  t.after(() => p.end());
  return { pool: p, schema: db.schema, db };
}

const versions = (applied: Array<{ version: number }>) => applied.map((a) => a.version);

test('createPool creates the schema on first use and puts it first on the search_path', async (t) => {
  const { pool: p, schema } = pool(t);
  const { rows } = await p.query<{ schema: string; path: string }>('SELECT current_schema() AS schema, current_setting($1) AS path', ['search_path']);
  assert.deepEqual(rows, [{ schema, path: `${schema},public` }]);
  await p.query('CREATE TABLE probe (x int)');
  const where = await p.query<{ n: string }>('SELECT count(*) AS n FROM pg_tables WHERE schemaname = $1 AND tablename = $2', [schema, 'probe']);
  assert.equal(where.rows[0]?.n, '1');
});

test('createPool refuses a schema name that is not a plain identifier', () => {
  assert.throws(() => createPool({ url: 'postgres://x@127.0.0.1/db', schema: 'x; DROP TABLE y' }), /not a lower-case SQL identifier/);
});

test('redactUrl hides the password only', () => {
  assert.equal(redactUrl('postgres://app:s3cr%40t@db.example:5432/mail'), 'postgres://app:***@db.example:5432/mail');
  assert.equal(redactUrl('postgres://postgres@127.0.0.1/postgres'), 'postgres://postgres@127.0.0.1/postgres');
});

test('migrations apply once, in order; a rerun applies nothing; a new file applies alone', async (t) => {
  const { pool: p, schema } = pool(t);
  const files: Record<string, string> = {
    '0002_fill.sql': 'INSERT INTO items (name) VALUES (\'first\');',
    '0001_items.sql': 'CREATE TABLE items (name text NOT NULL);\nCREATE INDEX items_name ON items (name);',
    'README.md': 'not a migration',
  };
  const dir = migrationsDir(t, files);
  const first = await migrate(p, 'demo', dir);
  assert.deepEqual(first, [
    { module: 'demo', version: 1, name: 'items' },
    { module: 'demo', version: 2, name: 'fill' },
  ]);
  assert.deepEqual(await migrate(p, 'demo', dir), []);
  assert.equal((await p.query('SELECT name FROM items')).rowCount, 1);

  const recorded = await p.query(`SELECT module, version, name, checksum FROM ${schema}.schema_migrations ORDER BY version`);
  const onDisk = await readMigrations(dir);
  assert.deepEqual(
    recorded.rows,
    onDisk.map((f) => ({ module: 'demo', version: f.version, name: f.name, checksum: f.checksum })),
  );

  writeFileSync(path.join(dir, '0003_more.sql'), 'INSERT INTO items (name) VALUES (\'second\');');
  assert.deepEqual(versions(await migrate(p, 'demo', dir)), [3]);
  assert.equal((await p.query('SELECT name FROM items')).rowCount, 2);
  // Another module's versions are its own.
  const other = migrationsDir(t, { '0001_other.sql': 'CREATE TABLE other_items (x int);' });
  assert.deepEqual(versions(await migrate(p, 'other', other)), [1]);
});

test('an applied migration whose file changed is refused, naming it, and nothing else is applied', async (t) => {
  const { pool: p } = pool(t);
  const dir = migrationsDir(t, { '0001_items.sql': 'CREATE TABLE items (name text);' });
  await migrate(p, 'demo', dir);
  writeFileSync(path.join(dir, '0001_items.sql'), 'CREATE TABLE items (name text, extra int);');
  writeFileSync(path.join(dir, '0002_fill.sql'), 'INSERT INTO items (name) VALUES (\'x\');');
  await assert.rejects(migrate(p, 'demo', dir), (err: Error) => {
    assert.ok(err instanceof MigrationError);
    assert.match(err.message, /demo migration 0001_items\.sql was changed after it was applied to schema test_[0-9a-f]+ \(checksum [0-9a-f]{12}… recorded, [0-9a-f]{12}… on disk\)/);
    return true;
  });
  assert.equal((await p.query('SELECT * FROM items')).rowCount, 0);
});

test('a recorded migration with no file is refused (a database migrated by a newer release)', async (t) => {
  const { pool: p } = pool(t);
  const dir = migrationsDir(t, { '0001_a.sql': 'SELECT 1;', '0002_b.sql': 'SELECT 2;' });
  await migrate(p, 'demo', dir);
  rmSync(path.join(dir, '0002_b.sql'));
  await assert.rejects(migrate(p, 'demo', dir), /demo migration 0002_b is recorded in .* but has no file/);
});

test('a failing migration is rolled back whole, names its file, and applies once fixed', async (t) => {
  const { pool: p, schema } = pool(t);
  const dir = migrationsDir(t, {
    '0001_ok.sql': 'CREATE TABLE ok (x int);',
    '0002_broken.sql': 'CREATE TABLE half (x int);\nINSERT INTO missing_table VALUES (1);',
  });
  await assert.rejects(migrate(p, 'demo', dir), /demo migration 0002_broken\.sql failed: relation "missing_table" does not exist/);
  const tables = await p.query<{ tablename: string }>('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1', [schema]);
  assert.deepEqual(tables.rows.map((r) => r.tablename), ['ok', 'schema_migrations']);
  writeFileSync(path.join(dir, '0002_broken.sql'), 'CREATE TABLE half (x int);');
  assert.deepEqual(versions(await migrate(p, 'demo', dir)), [2]);
});

test('misnamed and duplicate migration files are errors, not silently skipped', async (t) => {
  await assert.rejects(readMigrations(migrationsDir(t, { '1_init.sql': '' })), /named NNNN_name\.sql/);
  await assert.rejects(readMigrations(migrationsDir(t, { '0001_Init.sql': '' })), /named NNNN_name\.sql/);
  await assert.rejects(readMigrations(migrationsDir(t, { '0001_a.sql': '', '0001_b.sql': '' })), /0001_a\.sql and 0001_b\.sql have the same version 0001/);
  await assert.rejects(readMigrations(path.join(os.tmpdir(), 'ceerion-no-such-dir')), /cannot read migrations folder/);
});

test('two starters at once (separate pools, new schema): each migration is applied exactly once', async (t) => {
  const db = testSchema(t);
  const a = pool(t, db).pool;
  const b = pool(t, db).pool;
  // Not idempotent on purpose: applying either file twice fails (CREATE TABLE) or shows (two rows).
  // The sleep widens the window in which an unserialized second starter would run the same file.
  const dir = migrationsDir(t, {
    '0001_runs.sql': 'CREATE TABLE runs (version int NOT NULL);\nINSERT INTO runs VALUES (1);\nSELECT pg_sleep(0.2);',
    '0002_more.sql': 'INSERT INTO runs VALUES (2);',
  });
  const [ra, rb] = await Promise.all([migrate(a, 'demo', dir), migrate(b, 'demo', dir)]);
  assert.deepEqual([...versions(ra), ...versions(rb)].sort(), [1, 2]);
  const runs = await a.query<{ version: number }>('SELECT version FROM runs ORDER BY version');
  assert.deepEqual(runs.rows.map((r) => r.version), [1, 2]);
  // The lock was released: a third run gets it and finds nothing to do.
  assert.deepEqual(await migrate(b, 'demo', dir), []);
});
