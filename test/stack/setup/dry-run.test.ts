// `ceerion setup --dry-run` against a stock Debian 12 Postfix + Dovecot configuration (copies in a
// temp dir, see stock.ts): it prints a unified diff of every file, changes nothing, and the diff
// is correct, i.e. GNU patch applied to another stock copy gives exactly what `ceerion setup`
// writes.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { setupCli, snapshot } from './instance.ts';
import { stockConfigs } from './stock.ts';

const run = promisify(execFile);

async function configFile(dir: string, yaml: string): Promise<string> {
  const file = path.join(dir, 'ceerion.yml');
  await writeFile(file, yaml);
  return file;
}

test('--dry-run on a stock Debian config: every change as a diff, nothing written, secrets masked', async (t) => {
  const stock = await stockConfigs((fn) => t.after(fn));
  const config = await configFile(
    stock.dir,
    `database: { url: "postgres://ceerion:Db-Secret-77@127.0.0.1:5432/mail", schema: mailsuite }
milter: { listen: "inet:127.0.0.1:18891" }
lmtp: { listen: "inet:127.0.0.1:12424", http: { port: 18043, pushToken: push-token-1234 } }
learn: { spool: { dir: ${stock.dir}/learn-spool } }
`,
  );
  const before = await snapshot(stock.postfixDir, stock.dovecotDir);
  const args = ['--dry-run', '--no-install', '--config', config, '--postfix-dir', stock.postfixDir, '--dovecot-dir', stock.dovecotDir, '--mail-home', `${stock.dir}/vmail/%Ld/%Ln`];
  const r = await setupCli(args);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await snapshot(stock.postfixDir, stock.dovecotDir), before, 'a dry run writes nothing');

  const out = r.stdout;
  // main.cf: the shipped snippets' lines with the configured addresses, appended by postconf.
  const main = section(out, `${stock.postfixDir}/main.cf`);
  for (const line of [
    '+smtpd_milters = inet:127.0.0.1:18891',
    '+non_smtpd_milters = $smtpd_milters',
    '+milter_default_action = tempfail',
    '+smtpd_recipient_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, check_policy_service inet:127.0.0.1:10040',
    '+smtpd_end_of_data_restrictions = check_policy_service inet:127.0.0.1:10040',
    '+virtual_transport = lmtp:inet:127.0.0.1:12424',
    `+virtual_mailbox_maps = pgsql:${stock.postfixDir}/ceerion/pgsql-virtual-mailbox-maps.cf`,
    '+smtpd_sasl_type = dovecot',
    '+smtpd_sasl_path = private/auth',
  ]) {
    assert.ok(main.split('\n').includes(line), `main.cf diff has ${line}:\n${main}`);
  }
  // Debian already sets recipient_delimiter = +; nothing of the stock file is removed.
  assert.doesNotMatch(main, /^[+-]recipient_delimiter/m);
  assert.doesNotMatch(main, /^-/m);
  // master.cf: a submission service; the smtp line untouched.
  const master = section(out, `${stock.postfixDir}/master.cf`);
  assert.match(master, /^\+submission inet {2}n {7}- {7}y {7}- {7}- {7}smtpd$/m);
  assert.match(master, /^\+ {4}-o smtpd_sasl_auth_enable=yes$/m);
  assert.match(master, /^\+ {4}-o smtpd_client_restrictions=permit_sasl_authenticated,reject$/m);
  assert.doesNotMatch(master, /^[-+]smtp +inet/m);
  // Dovecot: the snippets, rendered.
  for (const f of ['15-ceerion-push-notification.conf', '16-ceerion-quota.conf', '90-ceerion-accounts.conf', '90-ceerion-auth-policy.conf', '90-ceerion-base.conf', '90-ceerion-lmtp.conf', '90-ceerion-sieve-delivery.conf', '90-ceerion-imapsieve-learn.conf']) {
    assert.match(out, new RegExp(`^--- /dev/null\\n\\+\\+\\+ ${stock.dovecotDir}/conf\\.d/${f.replace(/\./g, '\\.')}$`, 'm'), f);
  }
  assert.match(out, /^\+  ceerion_push_url = http:\/\/127\.0\.0\.1:18043\/push$/m);
  assert.match(out, /^\+auth_policy_server_url = http:\/\/127\.0\.0\.1:10041\/$/m);
  assert.match(out, new RegExp(`^\\+  unix_listener /var/spool/postfix/private/auth \\{$`, 'm'));
  assert.match(out, /^\+  default_fields = uid=vmail gid=vmail home=.*\/vmail\/%Ld\/%Ln$/m);
  assert.match(section(out, `${stock.dovecotDir}/conf.d/10-auth.conf`), /^-!include auth-system\.conf\.ext\n\+#!include auth-system\.conf\.ext/m);
  // Secrets never printed.
  for (const secret of ['Db-Secret-77', 'push-token-1234']) assert.ok(!out.includes(secret), `${secret} printed`);
  assert.match(out, /^\+connect = host='127\.0\.0\.1' port='5432' dbname='mail' user='ceerion' password='\*{8}'$/m);
  // The rest of the report.
  assert.match(out, /^packages: all installed$/m);
  assert.match(out, /^would run:\n(.*\n)*  sievec -c /m);
  assert.match(out, /^dry run: 21 file\(s\) would change; nothing was written$/m);
  assert.doesNotMatch(out, /91-ceerion-imapsieve-flags\.conf/, 'flag learning is off by default');
});

test('the dry-run diff is exact: patch(1) on a stock copy gives the files setup writes', async (t) => {
  const stock = await stockConfigs((fn) => t.after(fn));
  // No secrets (they are masked in the diff) and no auth policy (its nonce is random per run).
  const config = await configFile(stock.dir, `database: { url: "postgres://postgres@127.0.0.1:5432/postgres", schema: ceerion }\nauthPolicy: { enabled: false }\nlearn: { flags: true, spool: { dir: ${stock.dir}/learn-spool } }\n`);
  const other = path.join(stock.dir, 'patched');
  await cp(stock.postfixDir, path.join(other, 'etc-postfix'), { recursive: true });
  await cp(stock.dovecotDir, path.join(other, 'etc-dovecot'), { recursive: true });
  const args = ['--no-install', '--config', config, '--postfix-dir', stock.postfixDir, '--dovecot-dir', stock.dovecotDir, '--mail-user', 'nobody', '--mail-home', `${stock.dir}/vmail/%Ld/%Ln`];
  const dry = await setupCli(['--dry-run', ...args]);
  assert.equal(dry.code, 0, dry.stderr);
  // learn.flags adds the keyword rule, after imapsieve-learn.conf's two mailbox rules.
  assert.match(dry.stdout, new RegExp(`^\\+\\+\\+ ${stock.dovecotDir}/conf\\.d/91-ceerion-imapsieve-flags\\.conf\n(.*\n)*\\+  imapsieve_mailbox3_causes = FLAG$`, 'm'));
  // The diffs only, with names relative to the temp dir (patch refuses absolute names).
  const lines = dry.stdout.split('\n');
  const end = lines.findIndex((l) => /^(postconf edits|would run:|note:|dry run:)/.test(l));
  const diff = lines
    .slice(1, end)
    .map((l) => (/^(---|\+\+\+) \//.test(l) && !l.endsWith('/dev/null') ? l.replace(`${stock.dir}/`, '') : l))
    .join('\n');
  await writeFile(path.join(stock.dir, 'setup.diff'), `${diff}\n`);
  await run('patch', ['-p0', '-s', '-d', other, '-i', path.join(stock.dir, 'setup.diff')]);

  const applied = await setupCli(args);
  assert.equal(applied.code, 0, applied.stderr);
  const files = [...diff.matchAll(/^\+\+\+ (\S+)/gm)].map((m) => m[1]!);
  assert.equal(files.length, 21); // 20 without the flags rule
  for (const rel of files) {
    assert.equal(await readFile(path.join(other, rel), 'utf8'), await readFile(path.join(stock.dir, rel), 'utf8'), rel);
  }
});

/** The part of the report that is one file's diff. */
function section(out: string, file: string): string {
  const start = out.indexOf(`+++ ${file}\n`);
  assert.ok(start >= 0, `no diff for ${file}:\n${out}`);
  const next = out.slice(start + 1).search(/^(--- |postconf edits|would run|note:|dry run)/m);
  return next < 0 ? out.slice(start) : out.slice(start, start + 1 + next);
}
