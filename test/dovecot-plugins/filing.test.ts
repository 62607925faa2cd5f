// Delivery-time filing through the shipped sieve-delivery.conf + junk-filing.sieve, in a real
// Dovecot over LMTP: junk-marked mail lands in Junk (created on demand), other mail in INBOX, and
// the user's own Sieve script still runs after ours.
import assert from 'node:assert/strict';
import { mkdir, writeFile, chown, symlink, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import { lmtpSend } from '../helpers/lmtp-client.ts';
import { uidOf } from '../harness/dovecot-config.ts';
import { message, startLearnStack, type LearnStack } from './stack.ts';

async function deliver(stack: LearnStack, to: string, raw: string): Promise<void> {
  const tx = await lmtpSend({ port: stack.dovecot.lmtpPort! }, { from: 'sender@example.net', to: [to], message: raw });
  assert.equal(tx.results[0]?.code, 250, `delivery to ${to}: ${tx.results[0]?.line ?? tx.rcpts[0]?.line}`);
}

async function subjectsIn(stack: LearnStack, mailbox: string, user = 'alice', password = 'secret'): Promise<string[]> {
  try {
    return await subjectsInRaw(stack, mailbox, user, password);
  } catch (err) {
    const e = err as Error & { responseText?: string };
    throw new Error(`listing ${mailbox} of ${user}: ${e.message}${e.responseText ? ` (${e.responseText})` : ''}`);
  }
}

async function subjectsInRaw(stack: LearnStack, mailbox: string, user: string, password: string): Promise<string[]> {
  const imap = await stack.imap(user, password);
  const exists = (await imap.list()).some((b) => b.path === mailbox);
  if (!exists) return [];
  const lock = await imap.getMailboxLock(mailbox);
  try {
    const out: string[] = [];
    if (imap.mailbox && imap.mailbox.exists === 0) return out;
    for await (const m of imap.fetch('1:*', { envelope: true })) out.push(m.envelope?.subject ?? '');
    return out.sort();
  } finally {
    lock.release();
    await imap.logout();
  }
}

/** A user's active Sieve script, where sieve-delivery.conf looks: ~/sieve/NAME.sieve + ~/.dovecot.sieve. */
async function userScript(stack: LearnStack, user: string, script: string): Promise<void> {
  const home = path.join(stack.dovecot.mailRoot, user);
  const nobody = uidOf('nobody');
  await mkdir(path.join(home, 'sieve'), { recursive: true });
  await writeFile(path.join(home, 'sieve', 'mine.sieve'), script);
  await rm(path.join(home, '.dovecot.sieve'), { force: true });
  await symlink('sieve/mine.sieve', path.join(home, '.dovecot.sieve'));
  for (const p of [home, path.join(home, 'sieve'), path.join(home, 'sieve', 'mine.sieve')]) await chown(p, nobody.uid, nobody.gid);
}

test('junk-filing.sieve: X-Spam-Flag and DMARC quarantine go to Junk, clean mail to INBOX', async (t) => {
  const stack = await startLearnStack(t);
  await deliver(stack, 'alice', message({ subject: 'spam by the classifier', headers: { 'X-Spam-Flag': 'YES', 'X-Spam-Score': '0.9910' } }));
  await deliver(stack, 'alice', message({ subject: 'dmarc quarantine', headers: { 'X-Ceerion-Junk': 'yes; reason=dmarc-quarantine; domain=example.net' } }));
  await deliver(stack, 'alice', message({ subject: 'clean mail', headers: { 'X-Spam-Score': '0.0100' } }));
  // Look-alikes that must not file: the flag's value must be YES, the junk header must say yes.
  await deliver(stack, 'alice', message({ subject: 'flag NO', headers: { 'X-Spam-Flag': 'NO' } }));
  await deliver(stack, 'alice', message({ subject: 'junk header no', headers: { 'X-Ceerion-Junk': 'no' } }));
  assert.deepEqual(await subjectsIn(stack, 'Junk'), ['dmarc quarantine', 'spam by the classifier']);
  assert.deepEqual(await subjectsIn(stack, 'INBOX'), ['clean mail', 'flag NO', 'junk header no']);
});

test('junk-filing.sieve creates Junk on the first spam for a user who never had one', async (t) => {
  const stack = await startLearnStack(t);
  const junkDir = path.join(stack.dovecot.mailRoot, 'bob', 'Maildir', '.Junk');
  assert.ok(!existsSync(junkDir), 'no Junk folder before');
  await deliver(stack, 'bob', message({ subject: 'first spam', headers: { 'X-Spam-Flag': 'YES' } }));
  assert.ok(existsSync(junkDir), 'fileinto :create made it');
  assert.deepEqual(await subjectsIn(stack, 'Junk', 'bob', 'hunter2'), ['first spam']);
});

test("the user's own Sieve rules run after ours; on junk ours decides first", async (t) => {
  const stack = await startLearnStack(t);
  await userScript(
    stack,
    'alice',
    [
      'require ["fileinto", "imap4flags", "mailbox"];',
      'if header :contains "Subject" "newsletter" { fileinto :create "Lists"; }',
      'if header :contains "Subject" "invoice" { addflag "\\\\Flagged"; fileinto :create "Invoices"; }',
    ].join('\n'),
  );
  await deliver(stack, 'alice', message({ subject: 'weekly newsletter', headers: { 'List-Id': '<news.example.net>' } }));
  await deliver(stack, 'alice', message({ subject: 'invoice 42' }));
  await deliver(stack, 'alice', message({ subject: 'invoice forged by a spammer', headers: { 'X-Spam-Flag': 'YES' } }));
  await deliver(stack, 'alice', message({ subject: 'hello' }));
  assert.deepEqual(await subjectsIn(stack, 'Lists'), ['weekly newsletter'], "the user's rule filed clean mail");
  assert.deepEqual(await subjectsIn(stack, 'Invoices'), ['invoice 42'], "the user's other rule too, and not the junk look-alike");
  assert.deepEqual(await subjectsIn(stack, 'Junk'), ['invoice forged by a spammer'], 'junk is filed before user rules can pull it into a folder');
  assert.deepEqual(await subjectsIn(stack, 'INBOX'), ['hello'], "implicit keep for what no rule took");
  const imap = await stack.imap();
  const lock = await imap.getMailboxLock('Invoices');
  try {
    const flags = [];
    for await (const m of imap.fetch('1:*', { flags: true })) flags.push([...(m.flags ?? [])].filter((f) => f !== '\\Recent'));
    assert.deepEqual(flags, [['\\Flagged']], "the user's addflag applied");
  } finally {
    lock.release();
  }
});
