// End to end: SMTP into a private Postfix → our LMTP indexer → a private Dovecot (accounts in
// PostgreSQL), with the index, search, WebSocket events and Dovecot's push notifications live.
// For every case the messages sent in and the messages readable over IMAP match one for one.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventsClient } from '../../../lmtp-indexer/events/client.ts';
import { sendMail } from '../../harness/smtp-client.ts';
import { DOMAIN, eventually, PASSWORD, search, startLmtpStack, subjects } from './stack.ts';

const mail = (to: string[], subject: string, body = 'Hello from the end-to-end test.') => ({
  from: 'sender@example.net',
  to,
  data: [`From: Sender <sender@example.net>`, `To: ${to.join(', ')}`, `Subject: ${subject}`, `Message-ID: <${subject.replace(/\W+/g, '-')}@example.net>`, '', body, ''].join('\r\n'),
});

test('a delivered message is in Dovecot, findable through /search, and announced on the WebSocket', async (t) => {
  const stack = await startLmtpStack(t);
  const ws = await EventsClient.connect({ url: `${stack.api.replace('http', 'ws')}/events`, token: stack.tokens.alice! });
  t.after(() => ws.close());
  const reply = await sendMail({ port: stack.postfix.smtpPort, ...mail([`alice@${DOMAIN}`], 'Quarterly pineapple report', 'The pineapple harvest doubled.') });
  assert.equal(reply.code, 250, reply.text);

  const event = await eventually('the new-mail event', async () => ws.events.find((e) => e.kind === 'new'));
  assert.equal(event.payload.subject, 'Quarterly pineapple report');
  const imap = await stack.imap('alice');
  assert.deepEqual(await subjects(imap), ['Quarterly pineapple report']);
  const found = await search(stack, 'alice', 'pineapple harvest');
  assert.equal(found.status, 200);
  assert.deepEqual(found.body.hits!.map((h) => h.subject), ['Quarterly pineapple report']);
  // Bob's token sees nothing of Alice's mail.
  assert.deepEqual((await search(stack, 'bob', 'pineapple')).body.hits, []);
  // Dovecot's push notification placed the row in INBOX with its UID.
  await eventually('mailbox and uid from the push notification', async () => {
    const { rows } = await stack.pool.query<{ mailbox: string | null; imap_uid: string | null }>('SELECT mailbox, imap_uid FROM indexed_messages');
    return rows[0]?.mailbox === 'INBOX' && rows[0].imap_uid !== null ? rows[0] : undefined;
  });
});

test('a message to three recipients, one over quota: per-recipient results, the full one bounces, the others are indexed once', async (t) => {
  const stack = await startLmtpStack(t, { accounts: { alice: null, bob: null, full: '*:storage=1K' } });
  const reply = await sendMail({ port: stack.postfix.smtpPort, ...mail([`alice@${DOMAIN}`, `full@${DOMAIN}`, `bob@${DOMAIN}`], 'Team lunch', 'x'.repeat(4000)) });
  assert.equal(reply.code, 250, reply.text);
  const log = await stack.postfix.waitForLog(/to=<full@example\.test>.*status=bounced/);
  assert.match(log, /to=<full@example\.test>.*dsn=5\.2\.2.*status=bounced/);
  await stack.postfix.waitForLog(/to=<alice@example\.test>.*status=sent/);
  await stack.postfix.waitForLog(/to=<bob@example\.test>.*status=sent/);
  assert.deepEqual(await subjects(await stack.imap('alice')), ['Team lunch']);
  assert.deepEqual(await subjects(await stack.imap('bob')), ['Team lunch']);
  const { rows } = await stack.pool.query<{ account: string }>('SELECT account FROM indexed_messages ORDER BY account');
  assert.deepEqual(rows.map((r) => r.account), [`alice@${DOMAIN}`, `bob@${DOMAIN}`]);
});

test('Dovecot stopped mid-run: Postfix keeps the mail (4xx), and after Dovecot restarts everything is delivered exactly once', async (t) => {
  const stack = await startLmtpStack(t);
  const sent: string[] = [];
  for (let i = 0; i < 3; i++) {
    const s = `before outage ${i}`;
    assert.equal((await sendMail({ port: stack.postfix.smtpPort, ...mail([`alice@${DOMAIN}`, `bob@${DOMAIN}`], s) })).code, 250);
    sent.push(s);
  }
  await eventually('first three indexed', async () => {
    const { rows } = await stack.pool.query<{ n: string }>('SELECT count(*) AS n FROM indexed_messages');
    return Number(rows[0]!.n) === 6 ? true : undefined;
  });
  await stack.dovecot.stopService();
  for (let i = 0; i < 3; i++) {
    const s = `during outage ${i}`;
    assert.equal((await sendMail({ port: stack.postfix.smtpPort, ...mail([`alice@${DOMAIN}`, `bob@${DOMAIN}`], s) })).code, 250);
    sent.push(s);
  }
  await stack.postfix.waitForLog(/status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 451 4\.4\.1/);
  assert.ok((await stack.postfix.queueSize()) > 0, 'Postfix holds the mail while Dovecot is down');
  const { rows: during } = await stack.pool.query<{ n: string }>('SELECT count(*) AS n FROM indexed_messages');
  assert.equal(Number(during[0]!.n), 6, 'nothing indexed for the deferred recipients');

  await stack.dovecot.startAgain();
  await stack.postfix.flush();
  await eventually('queue drained', async () => ((await stack.postfix.queueSize()) === 0 ? true : undefined), 60_000);
  for (const user of ['alice', 'bob']) assert.deepEqual(await subjects(await stack.imap(user)), [...sent].sort(), `${user}: every message exactly once`);
  const { rows } = await stack.pool.query<{ n: string; distinct: string }>('SELECT count(*) AS n, count(DISTINCT (account, message_id)) AS distinct FROM indexed_messages');
  assert.deepEqual(rows[0], { n: '12', distinct: '12' });
});

test('PostgreSQL stopped mid-run: mail is still delivered, and the index catches up once it is back, without duplicates', async (t) => {
  const stack = await startLmtpStack(t, { privatePostgres: true, replayIntervalMs: 300 });
  assert.equal((await sendMail({ port: stack.postfix.smtpPort, ...mail([`alice@${DOMAIN}`], 'before the database outage') })).code, 250);
  await eventually('first indexed', async () => ((await stack.pool.query('SELECT 1 FROM indexed_messages')).rowCount === 1 ? true : undefined));
  // Dovecot's userdb is in the same PostgreSQL: the shipped sql-accounts.conf turns on Dovecot's
  // auth cache, which answers from the last good lookup while the database is down (the message
  // above put alice in it). Our RCPT lookup fails too and, by default, lets Dovecot decide.
  await stack.postgres!.stop();
  const during = ['outage one', 'outage two', 'outage three'];
  for (const s of during) assert.equal((await sendMail({ port: stack.postfix.smtpPort, ...mail([`alice@${DOMAIN}`], s) })).code, 250);
  await eventually('queue handled', async () => ((await stack.postfix.queueSize()) === 0 ? true : undefined), 60_000);
  // Delivered while the database was down: Postfix logged a 250 for each, none bounced.
  const log = await stack.postfix.log();
  assert.equal((log.match(/to=<alice@example\.test>.*status=sent/g) ?? []).length, 4);
  assert.doesNotMatch(log, /status=bounced/);
  assert.ok((await stack.service.writer.backlogSize()) > 0, 'index entries wait in the backlog');
  await stack.postgres!.start();
  await eventually(
    'index caught up',
    async () => {
      const { rows } = await stack.pool.query<{ subject: string }>('SELECT subject FROM indexed_messages ORDER BY subject');
      return rows.length === 4 ? rows.map((r) => r.subject) : undefined;
    },
    60_000,
  );
  const { rows } = await stack.pool.query<{ subject: string }>('SELECT subject FROM indexed_messages ORDER BY subject');
  assert.deepEqual(rows.map((r) => r.subject), ['before the database outage', ...during].sort());
  // Dovecot's own SQL connection was cut by the restart: its first login may fail temporarily.
  const inbox = await eventually('IMAP login after the restart', async () => subjects(await stack.imap('alice')));
  assert.deepEqual(inbox, ['before the database outage', ...during].sort());
});

test('a \\Seen flag and a move to Junk in IMAP show up in the index and on the WebSocket', async (t) => {
  const stack = await startLmtpStack(t);
  assert.equal((await sendMail({ port: stack.postfix.smtpPort, ...mail([`alice@${DOMAIN}`], 'Cheap watches') })).code, 250);
  const row = await eventually('placed in INBOX', async () => {
    const { rows } = await stack.pool.query<{ id: string; mailbox: string | null; imap_uid: string | null }>('SELECT id, mailbox, imap_uid FROM indexed_messages');
    return rows[0]?.mailbox === 'INBOX' ? rows[0] : undefined;
  });
  const ws = await EventsClient.connect({ url: `${stack.api.replace('http', 'ws')}/events`, token: stack.tokens.alice! });
  t.after(() => ws.close());
  const imap = await stack.imap('alice');
  await imap.mailboxCreate('Junk').catch(() => undefined);
  const lock = await imap.getMailboxLock('INBOX');
  try {
    await imap.messageFlagsAdd({ uid: row.imap_uid! }, ['\\Seen'], { uid: true });
    await imap.messageMove({ uid: row.imap_uid! }, 'Junk', { uid: true });
  } finally {
    lock.release();
  }
  const moved = await eventually('row in Junk with \\Seen', async () => {
    const { rows } = await stack.pool.query<{ mailbox: string; flags: string[]; expunged_at: Date | null }>('SELECT mailbox, flags, expunged_at FROM indexed_messages WHERE id = $1', [row.id]);
    return rows[0]?.mailbox === 'Junk' && rows[0].flags.includes('\\Seen') ? rows[0] : undefined;
  });
  assert.equal(moved.expunged_at, null, 'a move is not an expunge');
  await eventually('flags and move events', async () => {
    const kinds = ws.events.map((e) => e.kind);
    return kinds.includes('flags') && kinds.includes('move') ? kinds : undefined;
  });
  const hit = (await search(stack, 'alice', 'watches')).body.hits![0]!;
  assert.equal(hit.mailbox, 'Junk');
  assert.ok((hit.flags as string[]).includes('\\Seen'));
});

test('POST /mail/send submits with the account credentials through Postfix and returns the queue id', async (t) => {
  const stack = await startLmtpStack(t, { submission: true });
  const auth = (pass: string) => `Basic ${Buffer.from(`alice@${DOMAIN}:${pass}`).toString('base64')}`;
  const post = (pass: string, body: unknown) => fetch(`${stack.api}/mail/send`, { method: 'POST', headers: { authorization: auth(pass), 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const res = await post(PASSWORD, { to: `bob@${DOMAIN}`, subject: 'Sent through the API', text: 'Hello Bob', attachments: [{ filename: 'a.txt', contentBase64: Buffer.from('attached').toString('base64') }] });
  const sent = (await res.json()) as { queueId: string | null; messageId: string };
  assert.equal(res.status, 200, JSON.stringify(sent));
  assert.match(sent.queueId ?? '', /^[0-9A-Za-z]{6,}$/);
  // Postfix logs the SASL login under the same queue id, and delivers the message to Bob.
  await stack.postfix.waitForLog(new RegExp(`${sent.queueId}: client=.*sasl_method=PLAIN, sasl_username=alice@example\\.test`));
  const inbox = await eventually('delivered to bob', async () => {
    const list = await subjects(await stack.imap('bob'));
    return list.length ? list : undefined;
  });
  assert.deepEqual(inbox, ['Sent through the API']);
  const hits = await eventually('indexed with its attachment', async () => (await search(stack, 'bob', 'has:attachment')).body.hits?.[0]);
  assert.equal(hits.subject, 'Sent through the API');

  const refused = await post('wrong password', { to: `bob@${DOMAIN}`, subject: 'nope' });
  assert.equal(refused.status, 401);
  const bad = await post(PASSWORD, { to: [], subject: 'no recipients' });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { error: string }).error, /^to/);
});
