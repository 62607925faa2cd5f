// End to end with the real private Dovecot 2.3 (accounts in PostgreSQL, LMTP, quota, push Lua
// script) posting to our POST /push route, which writes to PostgreSQL: what a user does over IMAP
// (imapflow) shows up in the index row and in mail_events. And the script's failure modes: an
// indexer that is down or hung never fails a delivery or an IMAP command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { ImapFlow } from 'imapflow';
import { startDovecot } from '../../harness/dovecot.ts';
import { lmtpSend } from '../../helpers/lmtp-client.ts';
import { eventually, insertIndexRow, readEvents, readRow, type IndexRow } from '../push/helpers.ts';
import { addAccount, message, startStack } from './stack.ts';

const ALICE = 'alice@example.com';

/** Polls the row until `ok` holds. */
const rowWhen = (pool: Parameters<typeof readRow>[0], id: number, what: string, ok: (r: IndexRow) => boolean) =>
  eventually(what, async () => {
    const r = await readRow(pool, id);
    return ok(r) ? r : undefined;
  });

test('a delivery, \\Seen, a move to Junk, a copy, a rename and a delete in IMAP all reach the index', async (t) => {
  const { pool, dovecot } = await startStack(t);
  await addAccount(pool, { address: ALICE, password: 'secret' });
  // The indexer's row, written before the push arrives (the other order is the next test).
  const id = await insertIndexRow(pool, { account: ALICE, messageId: '<e2e-1@test.example>' });
  const tx = await lmtpSend({ path: dovecot.lmtpSocket! }, { from: 'sender@example.net', to: [ALICE], message: message('<e2e-1@test.example>') });
  assert.equal(tx.results[0]?.code, 250);

  const imap = new ImapFlow({ host: '127.0.0.1', port: dovecot.imapPort, secure: false, doSTARTTLS: false, auth: { user: ALICE, pass: 'secret' }, logger: false });
  await imap.connect();
  t.after(() => imap.logout().catch(() => undefined));
  const inbox = await imap.mailboxOpen('INBOX');
  const placed = await rowWhen(pool, id, 'delivery placed', (r) => r.mailbox !== null);
  assert.deepEqual(placed, { mailbox: 'INBOX', uidValidity: Number(inbox.uidValidity), uid: 1, flags: [], expunged: false });

  await imap.messageFlagsAdd('1', ['\\Seen'], { uid: true });
  await rowWhen(pool, id, '\\Seen recorded', (r) => r.flags.includes('\\Seen'));

  await imap.mailboxCreate('Junk');
  const moved = await imap.messageMove('1', 'Junk', { uid: true });
  const junkUid = moved && typeof moved === 'object' ? moved.uidMap?.get(1) : undefined;
  assert.equal(typeof junkUid, 'number');
  const junk = await imap.status('Junk', { uidValidity: true });
  assert.ok(junk, 'STATUS Junk');
  const inJunk = await rowWhen(pool, id, 'moved to Junk', (r) => r.mailbox === 'Junk');
  assert.deepEqual(inJunk, { mailbox: 'Junk', uidValidity: Number(junk.uidValidity), uid: junkUid, flags: ['\\Seen'], expunged: false });
  let events = await readEvents(pool, ALICE);
  assert.deepEqual(
    events.map((e) => [e.kind, e.messageRow]),
    [
      ['flags', id],
      ['move', id],
    ],
  );
  assert.deepEqual(events[1]?.payload, {
    mailbox: 'Junk',
    uidValidity: Number(junk.uidValidity),
    uid: junkUid,
    flags: ['\\Seen'],
    from: { mailbox: 'INBOX', uidValidity: Number(inbox.uidValidity), uid: 1 },
    sourceExpunged: true,
  });

  // COPY back to INBOX: the row follows the copy; deleting the Junk original then changes nothing.
  await imap.mailboxOpen('Junk');
  await imap.messageCopy(String(junkUid), 'INBOX', { uid: true });
  const copied = await rowWhen(pool, id, 'follows the copy', (r) => r.mailbox === 'INBOX');
  await imap.messageDelete(String(junkUid), { uid: true });
  // Move it on to Archive and rename that: the row keeps up with the new name.
  await imap.mailboxCreate('Archive');
  await imap.mailboxOpen('INBOX');
  await imap.messageMove(String(copied.uid), 'Archive', { uid: true });
  await rowWhen(pool, id, 'moved to Archive', (r) => r.mailbox === 'Archive');
  await imap.mailboxRename('Archive', 'Archive2026');
  const renamed = await rowWhen(pool, id, 'renamed with its mailbox', (r) => r.mailbox === 'Archive2026');
  assert.equal(renamed.expunged, false, 'deleting the original left the row alone');

  await imap.mailboxOpen('Archive2026');
  await imap.messageDelete(String(renamed.uid), { uid: true });
  await rowWhen(pool, id, 'expunged', (r) => r.expunged);
  events = await readEvents(pool, ALICE);
  assert.deepEqual(
    events.map((e) => e.kind),
    ['flags', 'move', 'move', 'move', 'flags', 'expunge'],
  );
  assert.equal(events[2]?.payload.sourceExpunged, false, 'the copy is told apart from a move');
  assert.deepEqual(events[4]?.payload.set, ['\\Deleted']);
  assert.doesNotMatch(await dovecot.log(), /ceerion push/);
});

test('the real order: Dovecot posts the delivery before the indexer writes the row, and it is placed anyway', async (t) => {
  const { pool, dovecot, push } = await startStack(t);
  await addAccount(pool, { address: ALICE, password: 'secret' });
  const tx = await lmtpSend({ port: dovecot.lmtpPort! }, { from: 'sender@example.net', to: [ALICE], message: message('<late-row@test.example>') });
  assert.equal(tx.results[0]?.code, 250);
  // The push came (during the delivery, before the 250) and found no row: it waits.
  assert.equal(push.receiver.waitingCount(ALICE), 1);
  const id = await insertIndexRow(pool, { account: ALICE, messageId: '<late-row@test.example>' });
  const placed = await rowWhen(pool, id, 'placed by a retry', (r) => r.mailbox !== null);
  assert.deepEqual([placed.mailbox, placed.uid], ['INBOX', 1]);
  assert.equal(push.receiver.waitingCount(ALICE), 0);
});

test('indexer down: deliveries and IMAP commands still succeed, the failure is logged', async (t) => {
  // Nothing listens on this port.
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const dovecot = await startDovecot({ lmtp: true, push: { url: `http://127.0.0.1:${port}/push`, token: 't', backoffSecs: 0 } });
  t.after(() => dovecot.stop());

  const tx = await lmtpSend({ port: dovecot.lmtpPort! }, { from: 's@example.net', to: ['alice'], message: message('<down@x>') });
  assert.equal(tx.results[0]?.code, 250);
  const imap = new ImapFlow({ host: '127.0.0.1', port: dovecot.imapPort, secure: false, doSTARTTLS: false, auth: { user: 'alice', pass: 'secret' }, logger: false });
  await imap.connect();
  t.after(() => imap.logout().catch(() => undefined));
  await imap.mailboxOpen('INBOX');
  assert.equal(await imap.messageFlagsAdd('1', ['\\Flagged'], { uid: true }), true);
  const log = await dovecot.waitForLog(/imap\(alice\).*ceerion push: \d+ event\(s\) for alice not delivered/);
  assert.match(log, /lmtp\(alice\).*ceerion push: 1 event\(s\) for alice not delivered to http:\/\/127\.0\.0\.1:\d+\/push: HTTP 9003 connect\(/);
  assert.match(log, /msgid=<down@x>: saved mail to INBOX/);
});

test('indexer hung: deliveries and commands still succeed; an IMAP session stops trying after one timeout', async (t) => {
  // Accepts connections and never answers.
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const hung = net.createServer((s) => {
    sockets.add(s);
    s.on('data', (d: Buffer) => {
      const text = d.toString('latin1');
      if (text.startsWith('POST ')) requests.push(text.split('\r\n')[0]!);
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => hung.close(() => r()));
  });
  const url = `http://127.0.0.1:${(hung.address() as AddressInfo).port}/push`;
  const dovecot = await startDovecot({ lmtp: true, push: { url, token: 't', timeoutMsecs: 300, backoffSecs: 3600 } });
  t.after(() => dovecot.stop());

  for (const id of ['<hung-1@x>', '<hung-2@x>']) {
    const tx = await lmtpSend({ port: dovecot.lmtpPort! }, { from: 's@example.net', to: ['alice'], message: message(id) });
    assert.equal(tx.results[0]?.code, 250);
  }
  // Dovecot loads the script per mail user, and LMTP makes one per recipient: the back-off does not
  // carry over, so each delivery may try again (and wait at most the timeout).
  await dovecot.waitForLog(/lmtp\(alice\).*ceerion push: 1 event\(s\) for alice not delivered .*HTTP 9008/);
  const beforeImap = requests.length;
  assert.ok(beforeImap >= 1);

  const imap = new ImapFlow({ host: '127.0.0.1', port: dovecot.imapPort, secure: false, doSTARTTLS: false, auth: { user: 'alice', pass: 'secret' }, logger: false });
  await imap.connect();
  t.after(() => imap.logout().catch(() => undefined));
  await imap.mailboxOpen('INBOX');
  assert.equal(await imap.messageFlagsAdd('1', ['\\Flagged'], { uid: true }), true);
  assert.equal(await imap.messageFlagsAdd('2', ['\\Flagged'], { uid: true }), true);
  assert.equal(await imap.messageFlagsAdd('1:2', ['\\Seen'], { uid: true }), true);
  // Within the session the script stays loaded: one failure, then no more attempts.
  await imap.logout();
  const log = await dovecot.log();
  assert.equal(log.match(/imap\(alice\).*ceerion push: .* not delivered/g)?.length, 1, log);
  assert.ok(requests.length - beforeImap <= 1, `${requests.length - beforeImap} POSTs from one IMAP session`);
});

test('a refused POST (wrong token: 401) is logged and dropped, without backing off', async (t) => {
  const { pool, dovecot } = await startStack(t, {}, 'not-the-token');
  await addAccount(pool, { address: ALICE, password: 'secret' });
  const id = await insertIndexRow(pool, { account: ALICE, messageId: '<refused@x>' });
  const tx = await lmtpSend({ path: dovecot.lmtpSocket! }, { from: 's@example.net', to: [ALICE], message: message('<refused@x>') });
  assert.equal(tx.results[0]?.code, 250);
  const imap = new ImapFlow({ host: '127.0.0.1', port: dovecot.imapPort, secure: false, doSTARTTLS: false, auth: { user: ALICE, pass: 'secret' }, logger: false });
  await imap.connect();
  t.after(() => imap.logout().catch(() => undefined));
  await imap.mailboxOpen('INBOX');
  assert.equal(await imap.messageFlagsAdd('1', ['\\Seen'], { uid: true }), true);
  assert.equal(await imap.messageFlagsAdd('1', ['\\Flagged'], { uid: true }), true);
  // Both commands tried (a 4xx is about these events, not the indexer being down), both refused.
  const log = await dovecot.waitForLog(/(imap\(alice@example\.com\).*refused by .*HTTP 401[^]*){2}/);
  assert.match(log, /lmtp\(alice@example\.com\).*ceerion push: 1 event\(s\) for alice@example\.com refused by http:\/\/127\.0\.0\.1:\d+\/push: HTTP 401/);
  assert.deepEqual(await readRow(pool, id), { mailbox: null, uidValidity: null, uid: null, flags: [], expunged: false });
});
