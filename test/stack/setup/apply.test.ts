// `ceerion setup` applied to private copies of a stock Debian 12 Postfix + Dovecot config yields a
// working pair: with the suite's milter, policy service and LMTP indexer running (through the
// CLI, from the same config file), a message submitted with SASL AUTH on the submission port is
// delivered through the indexer into the SQL account's mailbox and read back over IMAP. A second
// run changes nothing.
//
// The copies get their own queue_directory/data_directory before setup (setup reads Postfix's
// queue_directory for the SASL socket's path, as it would on the host); after it, only instance
// settings: loopback high ports, Dovecot's base/state dirs and logs, no chroot, no TLS (this
// machine has no certificate).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { hashPassword } from '../../../accounts/password.ts';
import { createAccount, migrateAccounts } from '../../../accounts/repository.ts';
import { createPool } from '../../../core/db/pool.ts';
import { freePort } from '../../harness/postfix.ts';
import { testSchema } from '../../harness/postgres.ts';
import { deferrer, setupCli, snapshot, startDovecotFrom, startPostfixFrom, startService } from './instance.ts';
import { stockConfigs } from './stock.ts';

const run = promisify(execFile);

test('applied to stock copies: submission with AUTH → milter, policy, LMTP indexer → Dovecot → IMAP; a second run changes nothing', { timeout: 170_000 }, async (t) => {
  // Registered before testSchema's hook, so everything using the schema stops before it is dropped.
  const defer = deferrer(t);
  const stock = await stockConfigs(defer);
  const db = testSchema(t);
  const dir = stock.dir;
  await run('postconf', ['-c', stock.postfixDir, '-e', `queue_directory=${dir}/pf-spool`, `data_directory=${dir}/pf-data`]);
  await mkdir(path.join(dir, 'pf-spool'), { mode: 0o755 });

  const port = { milter: 0, policyd: 0, authPolicy: 0, lmtp: 0, http: 0, dovecotLmtp: 0, imap: 0, smtp: 0, submission: 0 };
  for (const k of Object.keys(port) as Array<keyof typeof port>) port[k] = await freePort();
  const configFile = path.join(dir, 'ceerion.yml');
  await writeFile(
    configFile,
    `hostname: mail.example.net
log: { level: warn }
database: { url: "${db.url}", schema: ${db.schema} }
redis: { keyPrefix: "ceerion-setup-${db.schema}:" }
milter:
  listen: inet:127.0.0.1:${port.milter}
  checks: { auth: { enabled: false }, dkimSign: { enabled: false }, antivirus: { enabled: false } }
classifier: { enabled: false }
policyd: { listen: inet:127.0.0.1:${port.policyd} }
authPolicy: { port: ${port.authPolicy} }
lmtp:
  listen: inet:127.0.0.1:${port.lmtp}
  spoolDir: ${dir}/lmtp-spool
  dovecot: { address: inet:127.0.0.1:${port.dovecotLmtp} }
  index: { backlogDir: ${dir}/lmtp-backlog }
  http: { port: ${port.http} }
learn: { spool: { dir: ${dir}/learn-spool } }
`,
  );
  const args = ['--no-install', '--config', configFile, '--postfix-dir', stock.postfixDir, '--dovecot-dir', stock.dovecotDir, '--mail-user', 'nobody', '--mail-home', `${dir}/vmail/%Ld/%Ln`];

  const first = await setupCli(args);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^21 file\(s\) changed$/m);
  for (const f of ['main.cf', 'master.cf']) assert.ok((await snapshot(stock.postfixDir)).has(path.join(stock.postfixDir, `${f}.ceerion-orig`)), `${f} backed up`);
  assert.ok((await snapshot(stock.dovecotDir)).has(path.join(stock.dovecotDir, 'conf.d/10-auth.conf.ceerion-orig')));

  // Idempotent: the second run reports nothing to do and leaves every byte (and mode) as it was.
  const after = await snapshot(stock.postfixDir, stock.dovecotDir);
  const second = await setupCli(args);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /^nothing to change: everything is already set up$/m);
  assert.doesNotMatch(second.stdout, /^(---|\+\+\+|ran:)/m);
  assert.deepEqual(await snapshot(stock.postfixDir, stock.dovecotDir), after);
  // What Postfix and Dovecot themselves make of it.
  assert.equal((await run('postconf', ['-c', stock.postfixDir, '-h', 'smtpd_sasl_path'])).stdout.trim(), 'private/auth');
  assert.match((await run('postconf', ['-c', stock.postfixDir, '-P', 'submission/inet/smtpd_sasl_auth_enable'])).stdout, / = yes$/m);
  const doveconf = (await run('doveconf', ['-c', path.join(stock.dovecotDir, 'dovecot.conf'), '-n'])).stdout;
  assert.match(doveconf, new RegExp(`unix_listener ${dir}/pf-spool/private/auth`));
  assert.doesNotMatch(doveconf, /driver = pam/);

  // The accounts table and one account.
  const pool = createPool(db, { max: 2 });
  defer(() => pool.end());
  await migrateAccounts(pool);
  await createAccount(pool, { address: 'alice@example.test', passwordHash: await hashPassword('Alice-Setup-Pass-1') });

  // Postfix first: it creates private/, where Dovecot puts the SASL socket.
  const postfix = await startPostfixFrom(defer, stock.postfixDir, dir, { smtp: port.smtp, submission: port.submission });
  const dovecot = await startDovecotFrom(defer, stock.dovecotDir, dir, port.imap);
  await startService(defer, 'milter', configFile, `inet:127.0.0.1:${port.milter}`);
  await startService(defer, 'policyd', configFile, `inet:127.0.0.1:${port.policyd}`);
  await startService(defer, 'lmtp', configFile, `inet:127.0.0.1:${port.lmtp}`);

  const transport = (auth?: { user: string; pass: string }) =>
    nodemailer.createTransport({ host: '127.0.0.1', port: port.submission, secure: false, ignoreTLS: true, ...(auth ? { auth } : {}), connectionTimeout: 10_000 });
  const message = { from: 'alice@example.test', to: 'alice@example.test', subject: 'set up by ceerion setup', text: 'hello through the whole stack\n' };
  // Without a login, submission refuses.
  await assert.rejects(transport().sendMail(message), /Access denied|Relay access denied|Authentication required|5\.7\.\d/);
  const sent = await transport({ user: 'alice@example.test', pass: 'Alice-Setup-Pass-1' }).sendMail(message);
  assert.match(sent.response, /^250 /);

  const imap = new ImapFlow({ host: '127.0.0.1', port: port.imap, secure: false, auth: { user: 'alice@example.test', pass: 'Alice-Setup-Pass-1' }, logger: false });
  await imap.connect();
  defer(() => imap.logout().catch(() => undefined));
  let source = '';
  for (let i = 0; i < 150 && !source; i++) {
    const lock = await imap.getMailboxLock('INBOX');
    try {
      // FETCH 1:* on an empty mailbox is a BAD ("Invalid messageset"): look only once one exists.
      await imap.noop();
      const exists = imap.mailbox && typeof imap.mailbox === 'object' ? imap.mailbox.exists : 0;
      if (exists > 0) for await (const m of imap.fetch('1:*', { source: true })) source = m.source?.toString('utf8') ?? '';
    } finally {
      lock.release();
    }
    if (!source) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(source, `no message in INBOX.\nmaillog:\n${await postfix.log()}\ndovecot.log:\n${await dovecot.log()}`);
  assert.match(source, /^Subject: set up by ceerion setup\r?$/m);
  // The milter saw it (its trace header), and the mail took the submission → virtual → LMTP path.
  assert.match(source, /^X-Ceerion-Milter: .*verdict=accept/m);
  // postlogd writes asynchronously: the delivery line may trail the message's arrival.
  const delivered = new RegExp(`to=<alice@example\\.test>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${port.lmtp}, .*status=sent`);
  let maillog = '';
  for (let i = 0; i < 100 && !delivered.test((maillog = await postfix.log())); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(maillog, delivered);
  assert.match(maillog, /postfix\/submission\/smtpd\[\d+\]: \w+: client=.*sasl_method=PLAIN, sasl_username=alice@example\.test/);
  // The Junk mailbox of sieve-delivery.conf exists from the first login.
  assert.ok((await imap.list()).some((b) => b.path === 'Junk'));
});
