// applyPushEvents against real PostgreSQL (a schema of its own per test): placement, moves,
// copies, flags, expunges and renames, with the mail_events each writes, and one transaction per
// POST. Event shapes are those Dovecot 2.3.19 sends (see the e2e test for the real thing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyPushEvents, eventKeys, renamedMailbox } from '../../../lmtp-indexer/push/apply.ts';
import type { PushEvent } from '../../../lmtp-indexer/push/events.ts';
import { isTransientDbError } from '../../../lmtp-indexer/push/receiver.ts';
import { insertIndexRow, migratedPool, readEvents, readRow } from './helpers.ts';

const A = 'alice@example.com';
const V = 1_700_000_000;
const newMail = (uid: number, messageId: string | null, mailbox = 'INBOX', flags: string[] = []): PushEvent => ({ name: 'MessageNew', mailbox, uidValidity: V, uid, messageId, flags });
const append = (mailbox: string, uid: number, messageId: string | null, flags: string[] = []): PushEvent => ({ name: 'MessageAppend', mailbox, uidValidity: V + 1, uid, messageId, flags });
const expunge = (mailbox: string, uid: number, uidValidity = V): PushEvent => ({ name: 'MessageExpunge', mailbox, uidValidity, uid });
const flagsSet = (uid: number, flags: string[], mailbox = 'INBOX', uidValidity = V): PushEvent => ({ name: 'FlagsSet', mailbox, uidValidity, uid, flags });
const flagsClear = (uid: number, flags: string[], mailbox = 'INBOX', uidValidity = V): PushEvent => ({ name: 'FlagsClear', mailbox, uidValidity, uid, flags });

test('a delivery places the newest unplaced row with that Message-ID, and writes no event', async (t) => {
  const { pool } = await migratedPool(t);
  const older = await insertIndexRow(pool, { account: A, messageId: '<dup@x>', receivedAt: new Date(Date.now() - 60_000) });
  const newer = await insertIndexRow(pool, { account: A, messageId: '<dup@x>' });
  const other = await insertIndexRow(pool, { account: 'bob@example.com', messageId: '<dup@x>' });

  const r1 = await applyPushEvents(pool, A, [newMail(1, '<dup@x>', 'INBOX', ['\\Seen'])]);
  assert.equal(r1.placed, 1);
  assert.deepEqual(await readRow(pool, newer), { mailbox: 'INBOX', uidValidity: V, uid: 1, flags: ['\\Seen'], expunged: false });
  assert.equal((await readRow(pool, older)).mailbox, null);
  // Then the older duplicate: placed rows are not taken again.
  await applyPushEvents(pool, A, [newMail(2, '<dup@x>')]);
  assert.deepEqual([(await readRow(pool, older)).uid, (await readRow(pool, newer)).uid], [2, 1]);
  assert.equal((await readRow(pool, other)).mailbox, null, "another account's row is never touched");
  assert.deepEqual(await readEvents(pool, A), []);
});

test('a delivery whose row is not written yet waits, with every later event about the same message', async (t) => {
  const { pool } = await migratedPool(t);
  const known = await insertIndexRow(pool, { account: A, messageId: '<known@x>' });
  const events = [newMail(5, '<late@x>'), newMail(6, '<known@x>'), flagsSet(5, ['\\Seen']), append('Junk', 1, '<late@x>'), expunge('INBOX', 5), flagsSet(6, ['\\Flagged'])];
  const r = await applyPushEvents(pool, A, events);
  assert.deepEqual(r.waiting, [events[0], events[2], events[3], events[4]]);
  assert.deepEqual({ placed: r.placed, flagged: r.flagged }, { placed: 1, flagged: 1 });
  assert.deepEqual(await readRow(pool, known), { mailbox: 'INBOX', uidValidity: V, uid: 6, flags: ['\\Flagged'], expunged: false });

  // The indexer writes the row; replaying what waited applies it all in order.
  const late = await insertIndexRow(pool, { account: A, messageId: '<late@x>' });
  const again = await applyPushEvents(pool, A, r.waiting);
  assert.deepEqual(again.waiting, []);
  assert.deepEqual(await readRow(pool, late), { mailbox: 'Junk', uidValidity: V + 1, uid: 1, flags: [], expunged: false });
  assert.deepEqual(
    (await readEvents(pool, A)).map((e) => [e.kind, e.messageRow]),
    [
      ['flags', known],
      ['flags', late],
      ['move', late],
    ],
  );
});

test('waitingKeys from earlier POSTs divert events about those messages', async (t) => {
  const { pool } = await migratedPool(t);
  const first = await applyPushEvents(pool, A, [newMail(9, '<w@x>')]);
  const keys = new Set(first.waiting.flatMap(eventKeys));
  const r = await applyPushEvents(pool, A, [flagsSet(9, ['\\Seen']), append('Junk', 3, '<w@x>')], { waitingKeys: keys });
  assert.equal(r.waiting.length, 2);
  assert.equal(r.unmatched, 0);
});

test('an IMAP MOVE (append + expunge in one POST) moves the row: one move event, no expunge', async (t) => {
  const { pool } = await migratedPool(t);
  const id = await insertIndexRow(pool, { account: A, messageId: '<m@x>' });
  await applyPushEvents(pool, A, [newMail(1, '<m@x>')]);
  const r = await applyPushEvents(pool, A, [append('Junk', 4, '<m@x>', ['\\Seen']), expunge('INBOX', 1)]);
  assert.deepEqual({ moved: r.moved, expunged: r.expunged, unmatched: r.unmatched }, { moved: 1, expunged: 0, unmatched: 1 });
  assert.deepEqual(await readRow(pool, id), { mailbox: 'Junk', uidValidity: V + 1, uid: 4, flags: ['\\Seen'], expunged: false });
  const events = await readEvents(pool, A);
  assert.deepEqual(events, [
    {
      kind: 'move',
      messageRow: id,
      payload: { mailbox: 'Junk', uidValidity: V + 1, uid: 4, flags: ['\\Seen'], from: { mailbox: 'INBOX', uidValidity: V, uid: 1 }, sourceExpunged: true },
    },
  ]);
});

test('a COPY moves the row to the copy; the original expunged later changes nothing, the copy expunged does', async (t) => {
  const { pool } = await migratedPool(t);
  const id = await insertIndexRow(pool, { account: A, messageId: '<c@x>' });
  await applyPushEvents(pool, A, [newMail(1, '<c@x>')]);
  await applyPushEvents(pool, A, [append('Archive', 1, '<c@x>')]);
  const [move] = await readEvents(pool, A);
  assert.equal(move?.payload.sourceExpunged, false);
  // A client without MOVE: STORE \Deleted + EXPUNGE on the original, in later commands.
  await applyPushEvents(pool, A, [flagsSet(1, ['\\Deleted']), expunge('INBOX', 1)]);
  assert.deepEqual(await readRow(pool, id), { mailbox: 'Archive', uidValidity: V + 1, uid: 1, flags: [], expunged: false });
  await applyPushEvents(pool, A, [expunge('Archive', 1, V + 1)]);
  assert.equal((await readRow(pool, id)).expunged, true);
  assert.deepEqual(
    (await readEvents(pool, A)).map((e) => e.kind),
    ['move', 'expunge'],
  );
});

test('an append prefers the row whose old place the same POST expunges (two rows, one Message-ID)', async (t) => {
  const { pool } = await migratedPool(t);
  const a = await insertIndexRow(pool, { account: A, messageId: '<same@x>' });
  const b = await insertIndexRow(pool, { account: A, messageId: '<same@x>' });
  await applyPushEvents(pool, A, [newMail(1, '<same@x>'), newMail(2, '<same@x>')]);
  const placedAt1 = (await readRow(pool, a)).uid === 1 ? a : b;
  await applyPushEvents(pool, A, [append('Junk', 1, '<same@x>'), expunge('INBOX', 1)]);
  assert.equal((await readRow(pool, placedAt1)).mailbox, 'Junk');
  assert.equal((await readRow(pool, placedAt1 === a ? b : a)).mailbox, 'INBOX');
});

test('flags: set and cleared per event, \\Recent ignored, no event when nothing changes', async (t) => {
  const { pool } = await migratedPool(t);
  const id = await insertIndexRow(pool, { account: A, messageId: '<f@x>' });
  await applyPushEvents(pool, A, [newMail(3, '<f@x>')]);
  const r = await applyPushEvents(pool, A, [flagsClear(3, []), flagsSet(3, ['\\Seen', '$Junk']), flagsSet(3, ['\\Seen']), flagsClear(3, ['\\Seen'])]);
  assert.deepEqual({ flagged: r.flagged, unmatched: r.unmatched }, { flagged: 2, unmatched: 2 });
  assert.deepEqual((await readRow(pool, id)).flags, ['$Junk']);
  assert.deepEqual(
    (await readEvents(pool, A)).map((e) => e.payload),
    [
      { mailbox: 'INBOX', uidValidity: V, uid: 3, flags: ['\\Seen', '$Junk'], set: ['\\Seen', '$Junk'] },
      { mailbox: 'INBOX', uidValidity: V, uid: 3, flags: ['$Junk'], cleared: ['\\Seen'] },
    ],
  );
});

test('events for another UIDVALIDITY (a recreated mailbox) do not touch the row', async (t) => {
  const { pool } = await migratedPool(t);
  const id = await insertIndexRow(pool, { account: A, messageId: '<v@x>' });
  await applyPushEvents(pool, A, [newMail(1, '<v@x>')]);
  const r = await applyPushEvents(pool, A, [flagsSet(1, ['\\Seen'], 'INBOX', V + 7), expunge('INBOX', 1, V + 7)]);
  assert.equal(r.unmatched, 2);
  assert.deepEqual(await readRow(pool, id), { mailbox: 'INBOX', uidValidity: V, uid: 1, flags: [], expunged: false });
});

test('expunge marks the row and writes an event once; a repeated POST changes nothing', async (t) => {
  const { pool } = await migratedPool(t);
  const id = await insertIndexRow(pool, { account: A, messageId: '<e@x>' });
  const batch = [newMail(1, '<e@x>'), flagsSet(1, ['\\Deleted']), expunge('INBOX', 1)];
  const first = await applyPushEvents(pool, A, batch);
  const second = await applyPushEvents(pool, A, batch);
  assert.deepEqual([first.placed, first.flagged, first.expunged], [1, 1, 1]);
  // The expunged row no longer matches its old place: the delivery finds no unplaced row and
  // waits (for a row that will not come), taking the events about the same place with it.
  assert.deepEqual([second.placed, second.flagged, second.expunged, second.waiting.length], [0, 0, 0, 3]);
  assert.equal((await readRow(pool, id)).expunged, true);
  assert.deepEqual(
    (await readEvents(pool, A)).map((e) => e.kind),
    ['flags', 'expunge'],
  );
});

test('messages without a Message-ID are never matched', async (t) => {
  const { pool } = await migratedPool(t);
  const id = await insertIndexRow(pool, { account: A, messageId: null });
  const r = await applyPushEvents(pool, A, [newMail(1, null), append('Sent', 1, null)]);
  assert.deepEqual([r.placed, r.moved, r.unmatched, r.waiting.length], [0, 0, 2, 0]);
  assert.equal((await readRow(pool, id)).mailbox, null);
});

test('a rename renames the mailbox and its children by the separator, not siblings sharing the prefix', async (t) => {
  const { pool } = await migratedPool(t);
  const ids: Record<string, number> = {};
  let uid = 1;
  for (const mailbox of ['Work', 'Work.Sub', 'Work.Sub.Deep', 'Workshop', 'Work/Slash', 'INBOX']) {
    ids[mailbox] = await insertIndexRow(pool, { account: A, messageId: `<${mailbox}@x>` });
    await applyPushEvents(pool, A, [newMail(uid++, `<${mailbox}@x>`, mailbox)]);
  }
  const bob = await insertIndexRow(pool, { account: 'bob@example.com', messageId: '<bob@x>' });
  await applyPushEvents(pool, 'bob@example.com', [newMail(1, '<bob@x>', 'Work')]);
  const r = await applyPushEvents(pool, A, [{ name: 'MailboxRename', mailbox: 'Jobs', oldMailbox: 'Work' }], { separator: '.' });
  assert.equal(r.renamed, 3);
  const names = await Promise.all(Object.entries(ids).map(async ([before, id]) => [before, (await readRow(pool, id)).mailbox]));
  assert.deepEqual(Object.fromEntries(names), { Work: 'Jobs', 'Work.Sub': 'Jobs.Sub', 'Work.Sub.Deep': 'Jobs.Sub.Deep', Workshop: 'Workshop', 'Work/Slash': 'Work/Slash', INBOX: 'INBOX' });
  assert.equal((await readRow(pool, bob)).mailbox, 'Work');
  // Later events use the new name and find the row.
  assert.equal((await applyPushEvents(pool, A, [flagsSet(2, ['\\Seen'], 'Jobs.Sub')])).flagged, 1);
  assert.deepEqual(await readEvents(pool, A).then((e) => e.map((x) => x.kind)), ['flags']);
});

test('renamedMailbox: exact name and children only', () => {
  const table: Array<[string, string | null]> = [
    ['A', 'B'],
    ['A/x', 'B/x'],
    ['A/x/y', 'B/x/y'],
    ['AB', null],
    ['A.x', null],
    ['x/A', null],
  ];
  for (const [name, want] of table) assert.equal(renamedMailbox(name, 'A', 'B', '/'), want, name);
});

test('one POST is one transaction: a failure part-way leaves nothing applied and no events', async (t) => {
  const { pool } = await migratedPool(t);
  const id = await insertIndexRow(pool, { account: A, messageId: '<t@x>' });
  await applyPushEvents(pool, A, [newMail(1, '<t@x>')]);
  // A trigger that refuses one mailbox name stands in for any error in the middle of a POST.
  await pool.query(`CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.mailbox = 'Boom' THEN RAISE EXCEPTION 'boom refused'; END IF; RETURN NEW; END $$`);
  await pool.query('CREATE TRIGGER refuse_boom BEFORE UPDATE ON indexed_messages FOR EACH ROW EXECUTE FUNCTION refuse_boom()');
  const err = await applyPushEvents(pool, A, [flagsSet(1, ['\\Seen']), append('Boom', 1, '<t@x>')]).then(
    () => assert.fail('expected the POST to fail'),
    (e: unknown) => e,
  );
  assert.match((err as Error).message, /boom refused/);
  assert.equal(isTransientDbError(err), false, 'a raised exception is not PostgreSQL being down');
  assert.deepEqual(await readRow(pool, id), { mailbox: 'INBOX', uidValidity: V, uid: 1, flags: [], expunged: false });
  assert.deepEqual(await readEvents(pool, A), []);
  // The pool is still usable afterwards.
  assert.equal((await applyPushEvents(pool, A, [flagsSet(1, ['\\Seen'])])).flagged, 1);
});

test('isTransientDbError: connection trouble retries, statement errors do not', () => {
  const table: Array<[unknown, boolean]> = [
    [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), true],
    [new Error('timeout exceeded when trying to connect'), true],
    [new Error('Connection terminated unexpectedly'), true],
    [Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }), true],
    [Object.assign(new Error('the database system is starting up'), { code: '57P03' }), true],
    [Object.assign(new Error('deadlock detected'), { code: '40P01' }), true],
    [Object.assign(new Error('connection failure'), { code: '08006' }), true],
    [Object.assign(new Error('syntax error'), { code: '42601' }), false],
    [Object.assign(new Error('raise'), { code: 'P0001' }), false],
    [Object.assign(new Error('check violation'), { code: '23514' }), false],
  ];
  for (const [err, want] of table) assert.equal(isTransientDbError(err), want, (err as Error).message);
});
