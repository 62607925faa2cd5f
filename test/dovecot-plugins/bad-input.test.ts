// Bad input on the learning path, in a real Dovecot: a message without Message-ID, a 30 MB
// message, a user name with unusual characters, and a learner that hangs. The move always
// succeeds; training is done or skipped with a log line, never an IMAP error or a stuck session.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import test from 'node:test';
import type { ImapFlow } from 'imapflow';
import { message, startLearnStack, USERS } from './stack.ts';

async function moveAll(imap: ImapFlow, from: string, to: string): Promise<number> {
  const lock = await imap.getMailboxLock(from);
  try {
    const start = performance.now();
    assert.ok(await imap.messageMove('1:*', to), `MOVE ${from} -> ${to}`);
    return performance.now() - start;
  } finally {
    lock.release();
  }
}

test('a message without Message-ID is learned like any other', async (t) => {
  const stack = await startLearnStack(t);
  await stack.startLearner();
  const imap = await stack.imap();
  await imap.append('INBOX', message({ subject: 'no id', messageId: null }));
  await moveAll(imap, 'INBOX', 'Junk');
  await stack.waitForCounts({ spam: 1, ham: 0 });
});

test('a 30 MB message: the move succeeds, the learner skips it with a log line, through the gateway and the spool', async (t) => {
  const stack = await startLearnStack(t);
  const imap = await stack.imap();
  const big = message({ subject: 'huge', body: `${'x'.repeat(998)}\r\n`.repeat(30 * 1024) });
  assert.ok(big.length > 30_000_000);
  await imap.append('INBOX', big);
  await imap.append('INBOX', big.replace('Subject: huge', 'Subject: huge too'));
  // Through the fallback program first (no learner yet): it cuts the file at the limit.
  const lock = await imap.getMailboxLock('INBOX');
  try {
    assert.ok(await imap.messageMove('1', 'Junk'));
  } finally {
    lock.release();
  }
  const service = await stack.startLearner();
  const viaGateway = await moveAll(imap, 'INBOX', 'Junk');
  t.diagnostic(`MOVE of a 30 MB message through the gateway: ${viaGateway.toFixed(0)} ms`);
  const deadline = Date.now() + 10_000;
  while ((service.gateway!.outcomes.get('too-large') ?? 0) < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(service.gateway!.outcomes.get('too-large'), 1, 'the gateway skipped the one it received');
  const scan = await service.importer.scan();
  assert.equal(scan.imported, 0);
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(await stack.counts(), { spam: 0, ham: 0 }, 'neither was learned');
  assert.equal((await service.queue.counts()).queued, 0, 'nothing queued');
  const lock2 = await imap.getMailboxLock('Junk');
  try {
    assert.equal(imap.mailbox && imap.mailbox.exists, 2, 'both messages are in Junk');
  } finally {
    lock2.release();
  }
});

test('a user name with unusual characters is passed through exactly (per-user scope)', async (t) => {
  // Dovecot's default auth_username_chars refuses ' + = $ and non-ASCII at login; a site with such
  // users empties it, as here.
  const stack = await startLearnStack(t, { learn: { scope: 'user' }, dovecot: { extraConfig: 'auth_username_chars =' } });
  await stack.startLearner();
  const odd = USERS[2]!;
  const imap = await stack.imap(odd.name, odd.password);
  await imap.append('INBOX', message({ subject: 'odd user spam' }));
  await moveAll(imap, 'INBOX', 'Junk');
  await stack.waitForCounts({ spam: 1, ham: 0 }, 5_000, `user:${odd.name}`);
  assert.deepEqual(await stack.counts(''), { spam: 0, ham: 0 }, 'the global model was not trained');
});

test('a learner that hangs cannot hang Dovecot: the pipe times out, the move succeeds, Dovecot logs it', async (t) => {
  const stack = await startLearnStack(t, { pipeTimeout: '1s' });
  // A socket that accepts and never answers, where the gateway would be.
  const { mkdir } = await import('node:fs/promises');
  const path = await import('node:path');
  await mkdir(path.dirname(stack.dovecot.learnSocket), { recursive: true });
  const sockets: net.Socket[] = [];
  const hung = net.createServer((s) => sockets.push(s));
  await new Promise<void>((r) => hung.listen(stack.dovecot.learnSocket, r));
  const { chmod } = await import('node:fs/promises');
  await chmod(stack.dovecot.learnSocket, 0o666);
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => hung.close(r));
    await rm(stack.dovecot.learnSocket, { force: true });
  });
  const imap = await stack.imap();
  await imap.append('INBOX', message({ subject: 'stuck learner' }));
  const ms = await moveAll(imap, 'INBOX', 'Junk');
  t.diagnostic(`MOVE with a hung learner: ${ms.toFixed(0)} ms (sieve_pipe_exec_timeout = 1s)`);
  assert.ok(ms < 5_000, `the move returned after ${ms} ms`);
  const lock = await imap.getMailboxLock('Junk');
  try {
    assert.equal(imap.mailbox && imap.mailbox.exists, 1, 'the message is in Junk');
  } finally {
    lock.release();
  }
  await stack.dovecot.waitForLog(/pipe action|ceerion-learn/i, 5_000);
});
