// Learning from users' moves, end to end: a real Dovecot running the shipped imapsieve-learn.conf
// and Sieve scripts, driven over IMAP with imapflow; `ceerion learner` (gateway + worker) on its
// socket; the classifier's learn log in PostgreSQL. Counts are the classifier's own record
// (classifier_learned), so a relearn shows as one message changing class.
import assert from 'node:assert/strict';
import test from 'node:test';
import type { ImapFlow } from 'imapflow';
import { message, startLearnStack } from './stack.ts';

async function appendTo(imap: ImapFlow, mailbox: string, subject: string, extra: Parameters<typeof message>[0] = { subject }): Promise<void> {
  await imap.append(mailbox, message({ ...extra, subject }));
}

async function move(imap: ImapFlow, from: string, range: string, to: string): Promise<number> {
  const lock = await imap.getMailboxLock(from);
  try {
    const start = performance.now();
    const r = await imap.messageMove(range, to);
    assert.ok(r, `MOVE ${range} from ${from} to ${to} succeeded`);
    return performance.now() - start;
  } finally {
    lock.release();
  }
}

test('moving into Junk trains spam within 5 s; moving back out retrains it as ham; Trash does not train', async (t) => {
  const stack = await startLearnStack(t);
  await stack.startLearner();
  const imap = await stack.imap();
  await appendTo(imap, 'INBOX', 'cheap pills');
  await move(imap, 'INBOX', '1', 'Junk');
  const ms = await stack.waitForCounts({ spam: 1, ham: 0 }, 5_000);
  t.diagnostic(`spam learned ${ms} ms after the MOVE returned`);
  await move(imap, 'Junk', '1', 'INBOX');
  await stack.waitForCounts({ spam: 0, ham: 1 }, 5_000);
  // Junk -> Trash is deletion, not a verdict; INBOX -> Trash neither.
  await move(imap, 'INBOX', '1', 'Junk');
  await stack.waitForCounts({ spam: 1, ham: 0 }, 5_000);
  await imap.mailboxCreate('Trash').catch(() => undefined);
  await move(imap, 'Junk', '1', 'Trash');
  await new Promise((r) => setTimeout(r, 1_000));
  assert.deepEqual(await stack.counts(), { spam: 1, ham: 0 }, 'moving to Trash learned nothing');
});

test('re-moves and copies of the same message do not double count', async (t) => {
  const stack = await startLearnStack(t);
  const service = await stack.startLearner();
  const imap = await stack.imap();
  await appendTo(imap, 'INBOX', 'same spam twice');
  const lock = await imap.getMailboxLock('INBOX');
  try {
    await imap.messageCopy('1', 'Junk');
    await imap.messageCopy('1', 'Junk');
  } finally {
    lock.release();
  }
  await stack.waitForCounts({ spam: 1, ham: 0 });
  const deadline = Date.now() + 5_000;
  while (service.worker!.stats.learned + service.worker!.stats.duplicate < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual({ learned: service.worker!.stats.learned, duplicate: service.worker!.stats.duplicate }, { learned: 1, duplicate: 1 });
  const { rows } = await stack.pool.query<{ n: string }>('SELECT count(*) AS n FROM classifier_events');
  assert.equal(Number(rows[0]!.n), 1, 'one learn event for two copies');
});

test('flag-based training: $Junk trains spam, $NotJunk trains ham (imapsieve-flags.conf)', async (t) => {
  const stack = await startLearnStack(t, { flags: true });
  await stack.startLearner();
  const imap = await stack.imap();
  await appendTo(imap, 'INBOX', 'flag me');
  const lock = await imap.getMailboxLock('INBOX');
  try {
    await imap.messageFlagsAdd('1', ['$Junk']);
    await stack.waitForCounts({ spam: 1, ham: 0 });
    await imap.messageFlagsRemove('1', ['$Junk']);
    await imap.messageFlagsAdd('1', ['$NotJunk']);
    await stack.waitForCounts({ spam: 0, ham: 1 });
    // Another flag on the same message trains nothing new.
    await imap.messageFlagsAdd('1', ['\\Seen']);
  } finally {
    lock.release();
  }
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(await stack.counts(), { spam: 0, ham: 1 });
});

test('classifier down: moves still return at once, and training is applied when it is back', async (t) => {
  const stack = await startLearnStack(t);
  const imap = await stack.imap();
  for (let i = 0; i < 5; i++) await appendTo(imap, 'INBOX', `while down ${i}`);

  // 1. The learner is not running at all: no socket, so Dovecot runs the fallback program, which spools.
  const spooled = await move(imap, 'INBOX', '1:3', 'Junk');
  t.diagnostic(`MOVE of 3 with no learner: ${spooled.toFixed(0)} ms`);
  assert.ok(spooled < 3_000, `MOVE returned in ${spooled} ms`);
  assert.deepEqual(await stack.counts(), { spam: 0, ham: 0 });

  // 2. The gateway runs but the worker (the classifier side) does not: entries wait in Redis.
  const gatewayOnly = await stack.startLearner({ worker: false });
  await new Promise((r) => setTimeout(r, 500));
  const queuedMove = await move(imap, 'INBOX', '1:2', 'Junk');
  t.diagnostic(`MOVE of 2 with the classifier down: ${queuedMove.toFixed(0)} ms`);
  const waiting = await gatewayOnly.queue.counts();
  assert.equal(waiting.queued, 5, '3 from the spool + 2 from the gateway are queued');
  assert.deepEqual(await stack.counts(), { spam: 0, ham: 0 }, 'nothing learned while the classifier is down');

  // 3. The classifier is back: everything is learned.
  await stack.startLearner({ gateway: false });
  await stack.waitForCounts({ spam: 5, ham: 0 }, 10_000);
  assert.equal((await gatewayOnly.queue.counts()).queued, 0, 'the queue is drained');
});
