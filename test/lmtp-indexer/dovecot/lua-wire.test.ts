// What the shipped push-notification.lua really sends from Dovecot 2.3.19: a plain HTTP server
// records every POST while a delivery and IMAP commands run. This pins the wire format the
// receiver (lmtp-indexer/push/events.ts) reads, and shows what Dovecot reports for each action:
// a MOVE is one POST (append in the target, expunge in the source), a COPY only the append.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ImapFlow } from 'imapflow';
import { startDovecot } from '../../harness/dovecot.ts';
import { lmtpSend } from '../../helpers/lmtp-client.ts';
import { eventually } from '../push/helpers.ts';
import { message } from './stack.ts';

interface Post {
  headers: http.IncomingHttpHeaders;
  body: { v: number; user: string; separator: string; events: Array<Record<string, unknown>> };
}

test('the Lua script posts each command’s events as one JSON batch, with the bearer token', async (t) => {
  const posts: Post[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Post['body'] });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/push`;
  const dovecot = await startDovecot({ lmtp: true, push: { url, token: 'wire-token' } });
  t.after(() => dovecot.stop());

  /** Runs `action` and returns the events of the POSTs it caused (waiting for `count` of them). */
  const during = async (count: number, action: () => Promise<unknown>): Promise<Array<Array<Record<string, unknown>>>> => {
    const before = posts.length;
    await action();
    await eventually(`${count} POST(s)`, async () => (posts.length >= before + count ? true : undefined));
    return posts.slice(before).map((p) => p.body.events);
  };

  const [delivered] = await during(1, () => lmtpSend({ port: dovecot.lmtpPort! }, { from: 's@example.net', to: ['alice'], message: message('<wire-1@x>') }));
  const uidValidity = delivered?.[0]?.uid_validity;
  assert.equal(typeof uidValidity, 'number');
  assert.deepEqual(delivered, [{ name: 'MessageNew', mailbox: 'INBOX', uid: 1, uid_validity: uidValidity, message_id: '<wire-1@x>', flags: [], keywords: [] }]);
  assert.equal(posts[0]?.headers.authorization, 'Bearer wire-token');
  assert.match(String(posts[0]?.headers['content-type']), /^application\/json/);
  assert.deepEqual([posts[0]?.body.v, posts[0]?.body.user, posts[0]?.body.separator], [1, 'alice', '.']);

  const imap = new ImapFlow({ host: '127.0.0.1', port: dovecot.imapPort, secure: false, doSTARTTLS: false, auth: { user: 'alice', pass: 'secret' }, logger: false });
  await imap.connect();
  t.after(() => imap.logout().catch(() => undefined));
  await imap.mailboxOpen('INBOX');

  const flagged = await during(1, () => imap.messageFlagsAdd('1', ['\\Seen', '$Label'], { uid: true }));
  // Only what was added; the \Recent that this first session takes away comes as a FlagsClear.
  assert.deepEqual(
    flagged[0]?.filter((e) => e.name === 'FlagsSet'),
    [{ name: 'FlagsSet', mailbox: 'INBOX', uid: 1, uid_validity: uidValidity, flags: ['\\Seen'], keywords: ['$Label'] }],
  );
  for (const e of flagged[0]!.filter((x) => x.name !== 'FlagsSet')) assert.deepEqual({ name: e.name, flags: e.flags }, { name: 'FlagsClear', flags: [] });

  // A keyword change also brings an empty FlagsSet (no system flag changed): a no-op to the receiver.
  const cleared = await during(1, () => imap.messageFlagsRemove('1', ['$Label'], { uid: true }));
  assert.deepEqual(
    cleared[0]?.filter((e) => e.name === 'FlagsClear'),
    [{ name: 'FlagsClear', mailbox: 'INBOX', uid: 1, uid_validity: uidValidity, flags: [], keywords: ['$Label'] }],
  );
  for (const e of cleared[0]!.filter((x) => x.name !== 'FlagsClear')) assert.deepEqual([e.name, e.flags, e.keywords], ['FlagsSet', [], []]);

  await imap.mailboxCreate('Junk');
  const junk = await imap.status('Junk', { uidValidity: true });
  assert.ok(junk, 'STATUS Junk');
  const junkValidity = Number(junk.uidValidity);
  const moved = await during(1, () => imap.messageMove('1', 'Junk', { uid: true }));
  assert.deepEqual(moved, [
    [
      { name: 'MessageAppend', mailbox: 'Junk', uid: 1, uid_validity: junkValidity, message_id: '<wire-1@x>', flags: ['\\Seen'], keywords: [] },
      { name: 'MessageExpunge', mailbox: 'INBOX', uid: 1, uid_validity: uidValidity },
    ],
  ]);

  await imap.mailboxOpen('Junk');
  const copied = await during(1, () => imap.messageCopy('1', 'INBOX', { uid: true }));
  assert.deepEqual(copied, [[{ name: 'MessageAppend', mailbox: 'INBOX', uid: 2, uid_validity: uidValidity, message_id: '<wire-1@x>', flags: ['\\Seen'], keywords: [] }]]);

  // messageDelete is STORE +FLAGS \Deleted, then UID EXPUNGE: two commands, two POSTs.
  const deleted = await during(2, () => imap.messageDelete('1', { uid: true }));
  assert.deepEqual(deleted.flat().filter((e) => e.name !== 'FlagsClear'), [
    { name: 'FlagsSet', mailbox: 'Junk', uid: 1, uid_validity: junkValidity, flags: ['\\Deleted'], keywords: [] },
    { name: 'MessageExpunge', mailbox: 'Junk', uid: 1, uid_validity: junkValidity },
  ]);

  const appended = await during(1, () => imap.append('Junk', message(null, { subject: 'no id' }), ['\\Draft']));
  assert.deepEqual(appended, [[{ name: 'MessageAppend', mailbox: 'Junk', uid: 2, uid_validity: junkValidity, flags: ['\\Draft'], keywords: [] }]]);

  // Names and Message-IDs are written as valid JSON whatever they hold: UTF-8 mailbox names (sent
  // by imapflow as modified UTF-7, reported by Dovecot as UTF-8), quotes, backslashes, and bytes
  // that are not UTF-8 (replaced by U+FFFD).
  const odd = 'Reçu "ö" \\ 2026';
  await imap.mailboxCreate(odd);
  const raw = Buffer.concat([Buffer.from('Message-ID: <a"b\\c'), Buffer.from([0xff]), Buffer.from('@x>\r\nSubject: odd\r\n\r\nbody\r\n')]);
  const [oddEvents] = await during(1, () => imap.append(odd, raw));
  assert.deepEqual(
    oddEvents?.map((e) => [e.mailbox, e.message_id]),
    [[odd, '<a"b\\c\ufffd@x>']],
  );

  const renamed = await during(1, () => imap.mailboxRename('Junk', 'Spam'));
  assert.deepEqual(renamed, [[{ name: 'MailboxRename', mailbox: 'Spam', mailbox_old: 'Junk' }]]);
  // Every POST carried events: transactions without any (mailbox opens, the create) send nothing.
  assert.ok(posts.every((p) => p.body.events.length > 0));
  // Nothing failed on the way (a failed POST is logged as a warning and its events dropped).
  assert.doesNotMatch(await dovecot.log(), /ceerion push/);
});
