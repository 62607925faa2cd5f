// PushReceiver against real PostgreSQL: deliveries that arrive before their row (the normal order,
// since Dovecot posts before its 250 reaches the indexer), per-account order, waiting limits, and
// a private PostgreSQL stopped and started again under it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPool } from '../../../core/db/pool.ts';
import { migrateIndex } from '../../../lmtp-indexer/index/schema.ts';
import type { PushBatch, PushEvent } from '../../../lmtp-indexer/push/events.ts';
import { PushReceiver } from '../../../lmtp-indexer/push/receiver.ts';
import { startPostgres } from '../../harness/postgres.ts';
import { eventually, insertIndexRow, migratedPool, readEvents, readRow } from './helpers.ts';

const A = 'alice@example.com';
const V = 1_700_000_000;
const batch = (events: PushEvent[], user = A): PushBatch => ({ user, separator: '.', events, skipped: 0 });
const newMail = (uid: number, messageId: string, mailbox = 'INBOX'): PushEvent => ({ name: 'MessageNew', mailbox, uidValidity: V, uid, messageId, flags: [] });
const flagsSet = (uid: number, flags: string[], mailbox = 'INBOX'): PushEvent => ({ name: 'FlagsSet', mailbox, uidValidity: V, uid, flags });

test('a delivery posted before its row is placed by a timed retry once the row is written', async (t) => {
  const { pool } = await migratedPool(t);
  const receiver = new PushReceiver({ pool, retryDelaysMs: [20, 50] });
  t.after(() => receiver.close());
  const first = await receiver.receive(batch([newMail(1, '<r@x>')]));
  assert.deepEqual([first.placed, first.waiting, first.held], [0, 1, false]);
  // Flags set before the row exists wait behind the delivery instead of being lost.
  const second = await receiver.receive(batch([flagsSet(1, ['\\Seen'])]));
  assert.deepEqual([second.flagged, second.unmatched, second.waiting], [0, 0, 2]);

  const id = await insertIndexRow(pool, { account: A, messageId: '<r@x>' });
  await eventually('row placed', async () => (receiver.waitingCount() === 0 ? true : undefined));
  assert.deepEqual(await readRow(pool, id), { mailbox: 'INBOX', uidValidity: V, uid: 1, flags: ['\\Seen'], expunged: false });
  assert.deepEqual((await readEvents(pool, A)).map((e) => e.kind), ['flags']);
});

test('retryNow applies what waits at once (the indexer has just written the row)', async (t) => {
  const { pool } = await migratedPool(t);
  // Retries far in the future: only retryNow can apply it within the test.
  const receiver = new PushReceiver({ pool, retryDelaysMs: [3_600_000] });
  t.after(() => receiver.close());
  await receiver.receive(batch([newMail(2, '<now@x>'), { name: 'MessageAppend', mailbox: 'Junk', uidValidity: V + 1, uid: 1, messageId: '<now@x>', flags: [] }, { name: 'MessageExpunge', mailbox: 'INBOX', uidValidity: V, uid: 2 }]));
  assert.equal(receiver.waitingCount(A), 3);
  const id = await insertIndexRow(pool, { account: A, messageId: '<now@x>' });
  await receiver.retryNow(A);
  assert.equal(receiver.waitingCount(A), 0);
  assert.deepEqual(await readRow(pool, id), { mailbox: 'Junk', uidValidity: V + 1, uid: 1, flags: [], expunged: false });
  const [move] = await readEvents(pool, A);
  assert.equal(move?.payload.sourceExpunged, true);
});

test('a rename reaches events still waiting under the old name', async (t) => {
  const { pool } = await migratedPool(t);
  const receiver = new PushReceiver({ pool, retryDelaysMs: [3_600_000] });
  t.after(() => receiver.close());
  await receiver.receive(batch([newMail(1, '<ren@x>', 'Work.Sub')]));
  await receiver.receive(batch([{ name: 'MailboxRename', mailbox: 'Jobs', oldMailbox: 'Work' }]));
  // After the rename Dovecot speaks of the new name; this must wait behind the delivery too.
  await receiver.receive(batch([flagsSet(1, ['\\Flagged'], 'Jobs.Sub')]));
  const id = await insertIndexRow(pool, { account: A, messageId: '<ren@x>' });
  await receiver.retryNow(A);
  assert.deepEqual(await readRow(pool, id), { mailbox: 'Jobs.Sub', uidValidity: V, uid: 1, flags: ['\\Flagged'], expunged: false });
});

test('waiting events expire after maxWaitMs and are bounded by maxWaitingEvents', async (t) => {
  const { pool } = await migratedPool(t);
  let now = 1_000_000;
  const receiver = new PushReceiver({ pool, retryDelaysMs: [3_600_000], maxWaitMs: 60_000, maxWaitingEvents: 3, now: () => now });
  t.after(() => receiver.close());
  await receiver.receive(batch([newMail(1, '<a@x>'), newMail(2, '<b@x>')]));
  await receiver.receive(batch([newMail(3, '<c@x>'), newMail(4, '<d@x>')], 'bob@example.com'));
  assert.deepEqual([receiver.waitingCount(A), receiver.waitingCount('bob@example.com'), receiver.waitingCount()], [2, 1, 3]);
  now += 60_001;
  await receiver.retryNow(A);
  assert.equal(receiver.waitingCount(A), 0);
  // Nothing was placed: the rows never came.
  assert.equal(receiver.waitingCount(), 1);
});

test('POSTs for one account are applied in arrival order, even when sent at once', async (t) => {
  const { pool } = await migratedPool(t);
  const receiver = new PushReceiver({ pool });
  t.after(() => receiver.close());
  const id = await insertIndexRow(pool, { account: A, messageId: '<o@x>' });
  await receiver.receive(batch([newMail(1, '<o@x>')]));
  const flags = ['\\Seen', '\\Flagged', '\\Answered', '\\Draft', '$A', '$B', '$C', '$D'];
  await Promise.all(flags.map((f) => receiver.receive(batch([flagsSet(1, [f])]))));
  const events = await readEvents(pool, A);
  assert.deepEqual(
    events.map((e) => (e.payload.set as string[])[0]),
    flags,
  );
  assert.deepEqual((await readRow(pool, id)).flags, [...flags].sort());
});

test('PostgreSQL down: POSTs are held (answered at once), and applied in order when it is back', async (t) => {
  const server = await startPostgres();
  t.after(() => server.close());
  const pool = createPool({ url: server.url, schema: 'ceerion' }, { connectTimeoutMs: 2_000 });
  t.after(() => pool.end());
  await migrateIndex(pool);
  const receiver = new PushReceiver({ pool, retryDelaysMs: [3_600_000] });
  t.after(() => receiver.close());
  const id = await insertIndexRow(pool, { account: A, messageId: '<down@x>' });
  await receiver.receive(batch([newMail(1, '<down@x>')]));

  await server.stop();
  const held = await receiver.receive(batch([flagsSet(1, ['\\Seen'])]));
  assert.deepEqual([held.held, held.waiting], [true, 1]);
  // While blocked, later POSTs queue behind without touching the database.
  const later = await receiver.receive(batch([{ name: 'MessageAppend', mailbox: 'Junk', uidValidity: V + 1, uid: 1, messageId: '<down@x>', flags: ['\\Seen'] }, { name: 'MessageExpunge', mailbox: 'INBOX', uidValidity: V, uid: 1 }]));
  assert.deepEqual([later.held, later.waiting], [true, 3]);
  await receiver.retryNow(A);
  assert.equal(receiver.waitingCount(A), 3, 'still down: nothing is lost');
  // Other accounts are held too, without trying the database first (Dovecot is waiting).
  const bob = await receiver.receive(batch([newMail(7, '<bob-down@x>')], 'bob@example.com'));
  assert.deepEqual([bob.held, bob.waiting], [true, 1]);

  await server.start();
  await receiver.retryNow(A);
  assert.equal(receiver.waitingCount(A), 0);
  const bobRow = await insertIndexRow(pool, { account: 'bob@example.com', messageId: '<bob-down@x>' });
  await receiver.retryNow('bob@example.com');
  assert.equal((await readRow(pool, bobRow)).uid, 7);
  assert.deepEqual(await readRow(pool, id), { mailbox: 'Junk', uidValidity: V + 1, uid: 1, flags: ['\\Seen'], expunged: false });
  assert.deepEqual((await readEvents(pool, A)).map((e) => e.kind), ['flags', 'move']);
});

test('a permanent error drops the POST and rejects, without blocking the account', async (t) => {
  const { pool } = await migratedPool(t);
  const receiver = new PushReceiver({ pool });
  t.after(() => receiver.close());
  await insertIndexRow(pool, { account: A, messageId: '<p@x>' });
  await receiver.receive(batch([newMail(1, '<p@x>')]));
  await pool.query(`CREATE FUNCTION refuse_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$`);
  await pool.query('CREATE TRIGGER refuse_all BEFORE UPDATE ON indexed_messages FOR EACH ROW EXECUTE FUNCTION refuse_all()');
  await assert.rejects(receiver.receive(batch([flagsSet(1, ['\\Seen'])])), /refused/);
  assert.equal(receiver.waitingCount(), 0);
  await pool.query('DROP TRIGGER refuse_all ON indexed_messages');
  assert.equal((await receiver.receive(batch([flagsSet(1, ['\\Seen'])]))).flagged, 1);
});
