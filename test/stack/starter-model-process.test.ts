// `ceerion start` trains the starter model in a child process (`ceerion model starter`), so the
// supervisor's event loop stays free. Real child processes against the real PostgreSQL, a schema
// of their own, a small slice of the corpus.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { PgModelStore } from '../../classifier/model/store.ts';
import { createPool } from '../../core/db/pool.ts';
import { createLogger } from '../../core/log.ts';
import { STARTER_NOTE } from '../../stack/starter-model.ts';
import { trainStarterModel } from '../../stack/starter-model-process.ts';
import { testSchema } from '../harness/postgres.ts';

const BIN = path.resolve(import.meta.dirname, '../../bin/ceerion.mjs');

function planFor(db: { url: string; schema: string }, extra: string[] = []) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST')));
  return {
    cli: (args: string[]) => ({ command: process.execPath, args: [BIN, ...args, ...extra], env: { ...env, CEERION_DATABASE_URL: db.url, CEERION_DATABASE_SCHEMA: db.schema } }),
  };
}

test('trained once in a child process, then present; the stored version says it is the starter model', { timeout: 120_000 }, async (t) => {
  const db = testSchema(t);
  const log = createLogger('silent', 'supervisor');
  const plan = planFor(db, ['--limit', '40']);
  assert.equal(await trainStarterModel(plan, log), 'trained');
  assert.equal(await trainStarterModel(plan, log), 'present');

  const pool = createPool(db, { max: 1 });
  t.after(() => pool.end());
  const active = await new PgModelStore(pool).loadActive();
  assert.ok(active, 'an active model is stored');
  const versions = await pool.query<{ note: string }>('SELECT note FROM classifier_models');
  assert.deepEqual(versions.rows.map((r) => r.note), [STARTER_NOTE]);
});

test('a failing child rejects with its last stderr line; an abort ends it', { timeout: 60_000 }, async (t) => {
  const db = testSchema(t);
  const log = createLogger('silent', 'supervisor');
  await assert.rejects(trainStarterModel(planFor(db, ['--limit', 'x']), log), /model starter exited with 2: .*--limit must be a whole number/);
  const abort = new AbortController();
  const running = trainStarterModel(planFor(db), log, abort.signal);
  setTimeout(() => abort.abort(), 300);
  await assert.rejects(running, /abort/i);
});
