// The pure parts of `ceerion setup`: merging into an admin's main.cf lists, the submission
// service, paths under base_dir, the auth-policy nonce kept across runs, packages, the diff.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../core/config/load.ts';
import { unifiedDiff } from '../../../stack/setup/diff.ts';
import { installedHashNonce, underBaseDir } from '../../../stack/setup/dovecot.ts';
import { changeDiff, fileChanges } from '../../../stack/setup/files.ts';
import { parseDpkgStatus } from '../../../stack/setup/gather.ts';
import { mailRoot, wantedPackages } from '../../../stack/setup/plan.ts';
import { hasServerTls, listItems, mainCfEdits, masterCfEdits, wantedMainCf } from '../../../stack/setup/postfix.ts';

const milter = 'smtpd_milters = inet:127.0.0.1:8891\nnon_smtpd_milters = $smtpd_milters\nmilter_protocol = 6\n';
const policy = 'smtpd_recipient_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, check_policy_service inet:127.0.0.1:10040\nsmtpd_end_of_data_restrictions = check_policy_service inet:127.0.0.1:10040\n';

test('main.cf: unset parameters get the shipped values; nothing is edited twice', () => {
  const wanted = wantedMainCf([milter, policy]);
  const { edits } = mainCfEdits('myhostname = mx.example.org\n', wanted);
  assert.deepEqual(
    edits.map((e) => e.name),
    ['smtpd_milters', 'non_smtpd_milters', 'milter_protocol', 'smtpd_recipient_restrictions', 'smtpd_end_of_data_restrictions', 'smtpd_sasl_type', 'smtpd_sasl_path'],
  );
  const applied = `myhostname = mx.example.org\n${edits.map((e) => `${e.name} = ${e.value}`).join('\n')}\n`;
  assert.deepEqual(mainCfEdits(applied, wanted).edits, []);
});

test("main.cf: an admin's milters and restrictions are kept, ours added once", () => {
  const current = [
    'smtpd_milters = inet:localhost:8892',
    'non_smtpd_milters = inet:localhost:8892',
    'smtpd_recipient_restrictions = permit_mynetworks,',
    '    reject_unauth_destination, reject_rbl_client zen.spamhaus.org, permit',
    'smtpd_end_of_data_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO }',
    'milter_protocol = 2',
    '',
  ].join('\n');
  const { edits, notes } = mainCfEdits(current, wantedMainCf([milter, policy]));
  const byName = new Map(edits.map((e) => [e.name, e.value]));
  assert.equal(byName.get('smtpd_milters'), 'inet:localhost:8892, inet:127.0.0.1:8891');
  assert.equal(byName.get('non_smtpd_milters'), 'inet:localhost:8892, inet:127.0.0.1:8891');
  // Right after relay control, before the admin's later checks and final permit.
  assert.equal(byName.get('smtpd_recipient_restrictions'), 'permit_mynetworks, reject_unauth_destination, check_policy_service inet:127.0.0.1:10040, reject_rbl_client zen.spamhaus.org, permit');
  // The admin's fail-open form already calls the service.
  assert.equal(byName.has('smtpd_end_of_data_restrictions'), false);
  // A scalar of ours replaces the admin's value, and says so.
  assert.equal(byName.get('milter_protocol'), '6');
  assert.ok(notes.some((n) => n.includes('milter_protocol was "2"')));
  // Debian's (and our) non_smtpd_milters = $smtpd_milters already covers ours.
  assert.equal(mainCfEdits('smtpd_milters = inet:127.0.0.1:8891\nnon_smtpd_milters = ${smtpd_milters}\n', wantedMainCf([milter])).edits.some((e) => e.name === 'non_smtpd_milters'), false);
  assert.deepEqual(listItems('a, b  {c, d}, e'), ['a', 'b', '{c, d}', 'e']);
});

test('master.cf: a new submission service, chrooted like smtp; an existing one keeps its fields', () => {
  const stock = 'smtp      inet  n       -       y       -       -       smtpd\n#submission inet n       -       y       -       -       smtpd\n';
  const fresh = masterCfEdits(stock, false);
  assert.deepEqual(fresh.edits[0], { kind: 'M', service: 'submission/inet', entry: 'submission inet n - y - - smtpd' });
  assert.ok(fresh.edits.some((e) => e.kind === 'P' && e.name === 'smtpd_client_restrictions' && e.value === 'permit_sasl_authenticated,reject'));
  assert.ok(!fresh.edits.some((e) => e.kind === 'P' && e.name === 'smtpd_tls_security_level'));
  assert.match(fresh.notes.join('\n'), /without TLS/);

  const mine = 'smtp inet n - n - - smtpd\n587 inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n  -o smtpd_sasl_auth_enable=yes -o milter_macro_daemon_name=ORIGINATING\n';
  const edited = masterCfEdits(mine, true);
  assert.ok(!edited.edits.some((e) => e.kind === 'M'));
  assert.deepEqual(
    edited.edits.map((e) => (e.kind === 'P' ? `${e.service}/${e.name}=${e.value}` : '')),
    ['587/inet/smtpd_tls_security_level=encrypt', '587/inet/smtpd_tls_auth_only=yes', '587/inet/smtpd_client_restrictions=permit_sasl_authenticated,reject', '587/inet/smtpd_relay_restrictions=permit_sasl_authenticated,reject'],
  );
  assert.equal(hasServerTls('smtpd_tls_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem\n'), true);
  assert.equal(hasServerTls('smtpd_tls_cert_file =\n'), false);
});

test('Dovecot: sockets under base_dir are relative; the installed auth-policy nonce is kept', () => {
  assert.equal(underBaseDir('/var/run/dovecot/lmtp', '/run/dovecot'), 'lmtp');
  assert.equal(underBaseDir('/run/dovecot/ceerion-learn', '/run/dovecot'), 'ceerion-learn');
  assert.equal(underBaseDir('/srv/sockets/lmtp', '/run/dovecot'), '/srv/sockets/lmtp');
  assert.equal(installedHashNonce('# x\nauth_policy_hash_nonce = abc123\n'), 'abc123');
  assert.equal(installedHashNonce('auth_policy_hash_nonce = @AUTH_POLICY_HASH_NONCE@\n'), '@AUTH_POLICY_HASH_NONCE@');
  assert.equal(installedHashNonce(undefined), undefined);
  assert.equal(mailRoot('/var/vmail/%Ld/%Ln'), '/var/vmail');
  assert.throws(() => mailRoot('/%Ld/%Ln'), /fixed directory/);
});

test('packages: the base set, plus local database servers; dpkg status parsed', () => {
  const local = wantedPackages(parseConfig({}));
  assert.ok(local.includes('postfix-pgsql') && local.includes('dovecot-sieve') && local.includes('postgresql') && local.includes('redis-server'));
  const remote = wantedPackages(parseConfig({ database: { url: 'postgres://db.example.org/mail' }, redis: { url: 'redis://cache.example.org' } }));
  assert.ok(!remote.includes('postgresql') && !remote.includes('redis-server'));
  assert.deepEqual([...parseDpkgStatus('postfix installed\nzstd not-installed\ndovecot-core installed\n')], ['postfix', 'dovecot-core']);
});

test('diff: unified format, secrets masked, unchanged files left out', () => {
  assert.equal(unifiedDiff('a\n', 'a\n', { old: 'f', new: 'f' }), '');
  assert.equal(unifiedDiff('a\nb\n', 'a\nc\n', { old: 'f', new: 'f' }), '--- f\n+++ f\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n');
  const changes = fileChanges(
    [
      { path: '/x', text: 'password = hunter22\n', mode: 0o640, secrets: ['hunter22'] },
      { path: '/y', text: 'same\n', mode: 0o644 },
    ],
    new Map([['/y', 'same\n']]),
  );
  assert.equal(changes.length, 1);
  assert.equal(changeDiff(changes[0]!), '--- /dev/null\n+++ /x\n@@ -0,0 +1 @@\n+password = ********\n');
});
