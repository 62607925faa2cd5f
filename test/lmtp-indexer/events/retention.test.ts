import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createPool } from '../../../core/db/pool.ts';
import { pruneEvents } from '../../../lmtp-indexer/events/retention.ts';
import { insertEvent } from '../../../lmtp-indexer/events/store.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import { testSchema } from '../../harness/postgres.ts';

test('events older than the retention are pruned; newer ones and the seq counter stay', async (t) => {
  const pool = createPool(testSchema(t));
  t.after(() => pool.end());
  await migrateIndex(pool);
  const client = await pool.connect();
  try {
    for (let i = 0; i < 5; i++) {
      await client.query('BEGIN');
      await insertEvent(client, { account: 'a@x.test', kind: 'new', payload: { i } });
      await client.query('COMMIT');
    }
  } finally {
    client.release();
  }
  await pool.query("UPDATE mail_events SET created_at = now() - interval '40 days' WHERE seq <= 3");
  assert.equal(await pruneEvents(pool, 30), 3);
  assert.equal(await pruneEvents(pool, 30), 0, 'nothing left to prune');
  const { rows } = await pool.query<{ seq: string }>('SELECT seq FROM mail_events ORDER BY seq');
  assert.deepEqual(rows.map((r) => Number(r.seq)), [4, 5]);
  // The counter is untouched: the next event is 6, so resume cursors stay meaningful.
  const c2 = await pool.connect();
  try {
    await c2.query('BEGIN');
    assert.equal(await insertEvent(c2, { account: 'a@x.test', kind: 'new' }), 6);
    await c2.query('COMMIT');
  } finally {
    c2.release();
  }
});
