// deliverToDovecot against a real, private Dovecot 2.3 LMTP (test/harness/dovecot.ts), over both
// its inet and its unix listener: per-recipient answers are Dovecot's own (550 5.1.1 for an
// unknown user at RCPT, 552 5.2.2 for a full mailbox after DATA), and what lands in the Maildir is
// the message byte for byte, apart from the headers Dovecot puts on top.
//
// Dovecot set-up that works (2.3.19):
// - `auth_username_format = %n` drops the domain, so `alice@example.com` and plain `alice` both
//   reach the passwd-file user alice (without it only `alice` exists). Mail lands in
//   `${mailRoot}/alice/Maildir`.
// - Quota: `mail_plugins = $mail_plugins quota` and `plugin { quota = maildir:User quota }` with no
//   global rule (unlimited). carol alone gets `quota_rule=*:storage=1K`, from a second userdb (a
//   passwd-file of ours). Her extra field must be written `userdb_quota_rule=`: spelled
//   `quota_rule=` in a userdb passwd-file, Dovecot silently ignores it. The static userdb answers
//   first for users in the passdb; carol is not there, so the lookup falls through to ours.
import assert from 'node:assert/strict';
import { chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import type { ListenAddress } from '../../../core/listen.ts';
import { silentLogger } from '../../../core/log.ts';
import { deliverToDovecot, type DeliverOptions } from '../../../lmtp-indexer/relay/dovecot-client.ts';
import { startDovecot, type DovecotInstance } from '../../harness/dovecot.ts';
import { freePort } from '../../harness/postfix.ts';

let dv: DovecotInstance;
let extraDir: string;
let tcp: ListenAddress;
let unix: ListenAddress;

const NOBODY = { uid: 65534, gid: 65534 };

before(async () => {
  extraDir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-relay-'));
  // Dovecot's auth process (user dovecot) reads the userdb file; the mail process (nobody) writes carol's home.
  await chmod(extraDir, 0o755);
  const carolHome = path.join(extraDir, 'carol');
  await mkdir(carolHome);
  await chown(carolHome, NOBODY.uid, NOBODY.gid);
  const users = path.join(extraDir, 'users');
  await writeFile(users, `carol::${NOBODY.uid}:${NOBODY.gid}::${carolHome}::userdb_quota_rule=*:storage=1K\n`, { mode: 0o644 });
  const port = await freePort();
  dv = await startDovecot({
    protocols: ['imap', 'lmtp'],
    extraConfig: [
      'auth_username_format = %n',
      'mail_plugins = $mail_plugins quota',
      'plugin {',
      '  quota = maildir:User quota',
      '}',
      'userdb {',
      '  driver = passwd-file',
      `  args = ${users}`,
      '}',
      'service lmtp {',
      '  inet_listener lmtp {',
      '    address = 127.0.0.1',
      `    port = ${port}`,
      '  }',
      '  unix_listener lmtp {',
      '    mode = 0666',
      '  }',
      '}',
    ].join('\n'),
  });
  tcp = { kind: 'tcp', host: '127.0.0.1', port };
  unix = { kind: 'unix', path: path.join(dv.dir, 'run', 'lmtp') };
});

after(async () => {
  await dv?.stop();
  if (extraDir) await rm(extraDir, { recursive: true, force: true });
});

let seq = 0;
/** A small message with a unique Subject, CRLF line ends. */
function message(extraBody = ''): { marker: string; bytes: Buffer } {
  const marker = `relay-test-${process.pid}-${++seq}`;
  const text = `From: sender@example.org\r\nTo: alice@example.com\r\nSubject: ${marker}\r\nMessage-ID: <${marker}@example.org>\r\n\r\nHello.\r\n${extraBody}`;
  return { marker, bytes: Buffer.from(text, 'utf8') };
}

function opts(over: Partial<DeliverOptions> & Pick<DeliverOptions, 'recipients' | 'body'>): DeliverOptions {
  return { address: tcp, lhloName: 'relay.test', mailFrom: 'sender@example.org', timeoutMs: 10_000, log: silentLogger, ...over };
}

const once = (bytes: Buffer, chunk = 64 * 1024) => () =>
  Readable.from((function* () {
    for (let at = 0; at < bytes.length; at += chunk) yield bytes.subarray(at, at + chunk);
  })());

/** Delivered files of `user` (Maildir/new under the user's home) that contain `marker`. */
async function delivered(home: string, marker: string): Promise<Buffer[]> {
  const dir = path.join(home, 'Maildir', 'new');
  const names = await readdir(dir).catch(() => [] as string[]);
  const files = await Promise.all(names.map((n) => readFile(path.join(dir, n))));
  return files.filter((f) => f.includes(marker));
}
const home = (user: string) => path.join(dv.mailRoot, user);

/**
 * The stored file is the message as sent with LF line ends (Dovecot's Maildir default,
 * mail_save_crlf = no), under header lines Dovecot adds itself.
 */
function assertIntact(stored: Buffer, sent: Buffer): void {
  const want = Buffer.from(sent.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
  const prefix = stored.subarray(0, stored.length - want.length).toString('latin1');
  assert.ok(stored.subarray(stored.length - want.length).equals(want), 'stored message ends with the message as sent');
  assert.match(prefix, /^(?:(?:Return-Path|Delivered-To|Received):[^\n]*\n(?:[ \t][^\n]*\n)*)+$/, `only Dovecot's headers on top: ${JSON.stringify(prefix)}`);
}

for (const [name, addr] of [
  ['inet', () => tcp],
  ['unix', () => unix],
] as const) {
  test(`one recipient over the ${name} listener is saved intact`, async () => {
    const m = message();
    const replies = await deliverToDovecot(opts({ address: addr(), recipients: ['alice@example.com'], body: once(m.bytes) }));
    assert.equal(replies.length, 1);
    assert.equal(replies[0]!.code, 250);
    assert.equal(replies[0]!.enhanced, '2.0.0');
    assert.match(replies[0]!.message, /^<alice@example\.com> \S+ Saved$/);
    const files = await delivered(home('alice'), m.marker);
    assert.equal(files.length, 1);
    assertIntact(files[0]!, m.bytes);
  });
}

test('three recipients, one unknown: Dovecot answers each, in order', async () => {
  const m = message();
  const replies = await deliverToDovecot(opts({ address: unix, recipients: ['alice@example.com', 'nobody-here@example.com', 'bob'], body: once(m.bytes) }));
  assert.deepEqual(
    replies.map((r) => [r.code, r.enhanced]),
    [
      [250, '2.0.0'],
      [550, '5.1.1'],
      [250, '2.0.0'],
    ],
  );
  assert.equal(replies[1]!.message, "<nobody-here@example.com> User doesn't exist: nobody-here@example.com");
  assert.equal((await delivered(home('alice'), m.marker)).length, 1);
  assert.equal((await delivered(home('bob'), m.marker)).length, 1);
});

test('an over-quota recipient gets Dovecot 552 5.2.2 while the others are saved', async () => {
  const m = message(`${'x'.repeat(76)}\r\n`.repeat(40));
  const replies = await deliverToDovecot(opts({ recipients: ['alice@example.com', 'carol@example.com', 'bob@example.com'], body: once(m.bytes) }));
  assert.deepEqual(replies[1], { code: 552, enhanced: '5.2.2', message: '<carol@example.com> Quota exceeded (mailbox for user is full)' });
  assert.equal(replies[0]!.code, 250);
  assert.equal(replies[2]!.code, 250);
  assert.equal((await delivered(path.join(extraDir, 'carol'), m.marker)).length, 0);
  assert.equal((await delivered(home('bob'), m.marker)).length, 1);
});

test('a 5 MB message, streamed in chunks, arrives intact', async () => {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < 5 * 1024 * 1024; i++) {
    // Varied lengths, and every 7th line starts with a dot, so stuffing is exercised throughout.
    const line = `${i % 7 === 0 ? '.' : ''}${i.toString(36)} ${'abcdefghij'.repeat(1 + (i % 9))}\r\n`;
    lines.push(line);
    size += line.length;
  }
  const m = message(lines.join(''));
  // Odd chunk size: CRLFs and leading dots fall across chunk boundaries.
  const replies = await deliverToDovecot(opts({ recipients: ['bob@example.com'], body: once(m.bytes, 65_521), timeoutMs: 30_000 }));
  assert.equal(replies[0]!.code, 250, replies[0]!.message);
  const files = await delivered(home('bob'), m.marker);
  assert.equal(files.length, 1);
  assertIntact(files[0]!, m.bytes);
});

test('lines starting with a dot arrive intact, with CRLF and dots split across chunks', async () => {
  const m = message('.\r\n..\r\n.hidden\r\n...\r\nend.\r\n.\r\n');
  const cut: Buffer[] = [];
  // One chunk per byte from the body on: every boundary (between CR and LF, before each dot) occurs.
  const bodyAt = m.bytes.indexOf('Hello.');
  cut.push(m.bytes.subarray(0, bodyAt));
  for (let i = bodyAt; i < m.bytes.length; i++) cut.push(m.bytes.subarray(i, i + 1));
  const replies = await deliverToDovecot(opts({ address: unix, recipients: ['alice'], body: () => Readable.from(cut) }));
  assert.equal(replies[0]!.code, 250);
  const files = await delivered(home('alice'), m.marker);
  assert.equal(files.length, 1);
  assertIntact(files[0]!, m.bytes);
});

test('the null sender is relayed as <>', async () => {
  const m = message();
  const replies = await deliverToDovecot(opts({ mailFrom: '', recipients: ['alice@example.com'], body: once(m.bytes) }));
  assert.equal(replies[0]!.code, 250);
  const files = await delivered(home('alice'), m.marker);
  assert.match(files[0]!.toString('latin1'), /^Return-Path: <>\n/);
});

test('parameters Dovecot did not advertise are left out (it would answer 555 5.5.4)', async () => {
  const m = message();
  const replies = await deliverToDovecot(
    opts({
      mailParams: { BODY: '8BITMIME', SMTPUTF8: true, SIZE: String(m.bytes.length), RET: 'HDRS' },
      recipients: [{ address: 'alice@example.com', params: { NOTIFY: 'NEVER', ORCPT: 'rfc822;alice@example.com' } }],
      body: once(m.bytes),
    }),
  );
  assert.equal(replies[0]!.code, 250, replies[0]!.message);
});

test('a MAIL FROM rejection is every recipient answer, and the body is never opened', async () => {
  let opened = false;
  const replies = await deliverToDovecot(
    opts({
      mailFrom: 'not an address',
      recipients: ['alice', 'bob'],
      body: () => {
        opened = true;
        return Readable.from([]);
      },
    }),
  );
  assert.equal(opened, false);
  assert.equal(replies.length, 2);
  assert.equal(replies[0]!.code, 501);
  assert.deepEqual(replies[1], replies[0]);
});

test('no recipient accepted: no DATA, the body is never opened', async () => {
  let opened = false;
  const replies = await deliverToDovecot(
    opts({
      recipients: ['ghost1@example.com', 'ghost2'],
      body: () => {
        opened = true;
        return Readable.from([]);
      },
    }),
  );
  assert.equal(opened, false);
  assert.deepEqual(
    replies.map((r) => `${r.code} ${r.enhanced}`),
    ['550 5.1.1', '550 5.1.1'],
  );
});

test('a body source failing midway defers every recipient and Dovecot stores nothing', async () => {
  const m = message('more\r\n');
  const replies = await deliverToDovecot(
    opts({
      recipients: ['alice@example.com', 'ghost@example.com'],
      body: () =>
        Readable.from(
          (async function* () {
            yield m.bytes;
            throw new Error('spool file vanished');
          })(),
        ),
    }),
  );
  assert.equal(replies[0]!.code, 451);
  assert.equal(replies[0]!.enhanced, '4.3.0');
  assert.match(replies[0]!.message, /spool file vanished/);
  assert.equal(replies[1]!.code, 550, 'the RCPT rejection stands');
  // A later delivery to the same mailbox completes, so Dovecot has moved past the broken session.
  const next = message();
  assert.equal((await deliverToDovecot(opts({ recipients: ['alice'], body: once(next.bytes) })))[0]!.code, 250);
  assert.equal((await delivered(home('alice'), m.marker)).length, 0);
});
