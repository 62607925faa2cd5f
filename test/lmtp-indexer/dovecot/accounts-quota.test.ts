// The shipped sql-accounts.conf, dovecot-sql.conf.ext, lmtp.conf and quota.conf in a real
// Dovecot 2.3: logins against hashes in the accounts table, delivery over LMTP (unix socket and
// TCP), quota refusals as permanent 552s, and Dovecot stopped and started again mid-run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { imapLogin } from '../../harness/dovecot.ts';
import { lmtpSend } from '../../helpers/lmtp-client.ts';
import { addAccount, message, startStack } from './stack.ts';

const run = promisify(execFile);

test('logins: BLF-CRYPT and ARGON2ID hashes from PostgreSQL work, wrong passwords and disabled accounts do not', async (t) => {
  const { pool, dovecot } = await startStack(t);
  await addAccount(pool, { address: 'alice@example.com', password: 'secret', scheme: 'BLF-CRYPT' });
  await addAccount(pool, { address: 'bob@example.com', password: 'hunter2', scheme: 'ARGON2ID' });
  await addAccount(pool, { address: 'gone@example.com', password: 'secret', enabled: false });
  const stored = await pool.query<{ password: string }>('SELECT password FROM accounts ORDER BY address');
  for (const { password } of stored.rows) assert.match(password, /^\{(BLF-CRYPT|ARGON2ID)\}\$/, 'hashes, never the password');

  const login = (user: string, password: string) => imapLogin({ port: dovecot.imapPort, user, password }).then((r) => r.ok);
  assert.equal(await login('alice@example.com', 'secret'), true);
  assert.equal(await login('bob@example.com', 'hunter2'), true);
  // The table holds lower case; Dovecot lowers the login (%Lu) before the lookup.
  assert.equal(await login('Alice@Example.COM', 'secret'), true);
  assert.equal(await login('alice@example.com', 'Secret'), false);
  assert.equal(await login('bob@example.com', 'secret'), false);
  assert.equal(await login('gone@example.com', 'secret'), false);
  assert.equal(await login('nobody@example.com', 'secret'), false);
  // A quoting attempt is just a user that does not exist (Dovecot escapes %u for SQL).
  assert.equal(await login("x' OR '1'='1", 'secret'), false);

  // iterate_query and user_query, as doveadm sees them.
  const { stdout: users } = await run('doveadm', ['-c', dovecot.configFile, 'user', '*']);
  assert.deepEqual(users.trim().split('\n'), ['alice@example.com', 'bob@example.com']);
});

test('LMTP: delivery over the socket and TCP, unknown and disabled recipients refused at RCPT', async (t) => {
  const { pool, dovecot } = await startStack(t);
  await addAccount(pool, { address: 'alice@example.com', password: 'secret' });
  await addAccount(pool, { address: 'gone@example.com', password: 'secret', enabled: false });
  const viaSocket = await lmtpSend({ path: dovecot.lmtpSocket! }, { from: 's@example.net', to: ['alice@example.com', 'nobody@example.com', 'gone@example.com'], message: message('<l1@x>') });
  assert.deepEqual(
    viaSocket.rcpts.map((r) => r.line.slice(0, 9)),
    ['250 2.1.5', '550 5.1.1', '550 5.1.1'],
  );
  assert.deepEqual(
    viaSocket.results.map((r) => r.code),
    [250],
  );
  // user+tag lands in INBOX (lmtp_save_to_detail_mailbox = no), not in a mailbox named "tag".
  const viaTcp = await lmtpSend({ port: dovecot.lmtpPort! }, { from: 's@example.net', to: ['Alice@example.com'], message: message('<l2@x>') });
  assert.equal(viaTcp.results[0]?.code, 250);
  const { stdout } = await run('doveadm', ['-c', dovecot.configFile, 'search', '-u', 'alice@example.com', 'mailbox', 'INBOX', 'ALL']);
  assert.equal(stdout.trim().split('\n').length, 2);
});

test('quota: over-quota mail is a permanent 552 5.2.2 (never a 4xx); the default rule applies without a quota_rule', async (t) => {
  const { pool, dovecot } = await startStack(t, { quota: { defaultRule: '*:storage=10M' } });
  await addAccount(pool, { address: 'tiny@example.com', password: 'secret', quotaRule: '*:storage=1K' });
  await addAccount(pool, { address: 'alice@example.com', password: 'secret' });
  const send = (to: string, bodyBytes: number, id: string) => lmtpSend({ path: dovecot.lmtpSocket! }, { from: 's@example.net', to: [to], message: message(id, { bodyBytes }) });

  const big = await send('tiny@example.com', 4000, '<q1@x>');
  assert.equal(big.rcpts[0]?.code, 250, 'not over quota yet: RCPT passes');
  assert.match(big.results[0]?.line ?? '', /^552 5\.2\.2 /);
  const small = await send('tiny@example.com', 100, '<q2@x>');
  assert.equal(small.results[0]?.code, 250, 'a small message still fits');
  // An account already over its quota (here: its rule lowered, then Dovecot's auth cache flushed
  // as sql-accounts.conf documents) is refused at RCPT already (lmtp_rcpt_check_quota).
  await pool.query("UPDATE accounts SET quota_rule = '*:storage=100B' WHERE address = 'tiny@example.com'");
  // Flushed whole: by user name the userdb entry's key (it carries the lookup's fields) is not hit.
  await run('doveadm', ['-c', dovecot.configFile, 'auth', 'cache', 'flush']);
  const over = await send('tiny@example.com', 10, '<q3@x>');
  assert.match(over.rcpts[0]?.line ?? '', /^552 5\.2\.2 /);
  assert.equal(over.results.length, 0);
  // Nobody else is affected; alice has the default rule from quota.conf.
  assert.equal((await send('alice@example.com', 4000, '<q5@x>')).results[0]?.code, 250);
  const { stdout } = await run('doveadm', ['-c', dovecot.configFile, 'quota', 'get', '-u', 'alice@example.com']);
  assert.match(stdout, /User quota\s+STORAGE\s+\d+\s+10240\s/);
});

test('the snippets reach both protocols: quota and push plugins in imap and lmtp', async (t) => {
  const { dovecot } = await startStack(t);
  for (const protocol of ['imap', 'lmtp']) {
    const { stdout } = await run('doveconf', ['-c', dovecot.configFile, '-f', `protocol=${protocol}`, '-h', 'mail_plugins']);
    const plugins = stdout.trim().split(/\s+/);
    for (const p of ['quota', 'notify', 'push_notification', 'mail_lua', 'push_notification_lua']) assert.ok(plugins.includes(p), `${protocol}: ${p} in ${stdout}`);
    if (protocol === 'imap') assert.ok(plugins.includes('imap_quota'));
  }
  // doveconf would warn here if a global mail_plugins came after a protocol block.
  const { stderr } = await run('doveconf', ['-c', dovecot.configFile, '-n']);
  assert.doesNotMatch(stderr, /won't change the setting/);
});

test('stopService/startAgain: Dovecot down refuses connections; back on the same ports with the mail kept', async (t) => {
  const { pool, dovecot } = await startStack(t);
  await addAccount(pool, { address: 'alice@example.com', password: 'secret' });
  const deliver = (id: string) => lmtpSend({ port: dovecot.lmtpPort! }, { from: 's@example.net', to: ['alice@example.com'], message: message(id) });
  assert.equal((await deliver('<d1@x>')).results[0]?.code, 250);
  await dovecot.stopService();
  await assert.rejects(deliver('<d2@x>'), /ECONNREFUSED/);
  await assert.rejects(lmtpSend({ path: dovecot.lmtpSocket! }, { from: 's@example.net', to: ['alice@example.com'], message: message('<d3@x>') }), /ENOENT|ECONNREFUSED/);
  await dovecot.startAgain();
  assert.equal((await deliver('<d4@x>')).results[0]?.code, 250);
  assert.equal((await imapLogin({ port: dovecot.imapPort, user: 'alice@example.com', password: 'secret' })).ok, true);
  const { stdout } = await run('doveadm', ['-c', dovecot.configFile, 'fetch', '-u', 'alice@example.com', 'hdr.message-id', 'mailbox', 'INBOX', 'ALL']);
  assert.deepEqual(stdout.match(/<d\d@x>/g), ['<d1@x>', '<d4@x>']);
});
