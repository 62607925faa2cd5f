// The Postfix and Dovecot images' entrypoints, run here against the host's Debian packages (the
// images are Debian bookworm too): the files are laid out as the Dockerfiles' COPY lines put them,
// the entrypoints fill them in with the compose file's environment, and the host's doveconf and
// postconf read the result. Each filled snippet is byte for byte what the native renderers
// (stack/dovecot/config.ts, accounts/postfix-maps.ts) make of the same values, and every shipped
// file the images copy is one those renderers, and so the native end-to-end tests, use.
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';
import { fillPlaceholders as fillDovecot, libpqValue, writeLmtpSnippet, writeSnippets } from '../../stack/dovecot/config.ts';
import { POSTFIX_MAPS, postfixMapValues, renderPostfixMap } from '../../accounts/postfix-maps.ts';
import { ROOT } from '../harness/milter-process.ts';
import { ensureDebianPackage, run } from '../monitoring/debian.ts';
import { copies, resolvedCompose, type Resolved } from './compose-files.ts';

let compose: Resolved;
before(async () => {
  await ensureDebianPackage('docker-compose', '/usr/bin/docker-compose');
  compose = await resolvedCompose();
});

/** Lays out the Dockerfile's COPY lines under `root` (absolute destinations re-rooted there). */
async function layOut(dockerfile: string, root: string): Promise<string[]> {
  const copied: string[] = [];
  for (const c of copies(dockerfile)) {
    for (const src of c.sources) {
      const dest = c.dest.endsWith('/') ? path.join(root, c.dest, path.basename(src)) : path.join(root, c.dest);
      await mkdir(path.dirname(dest), { recursive: true });
      await cp(path.join(ROOT, src), dest);
      copied.push(src);
    }
  }
  return copied;
}

const sh = (script: string, args: string[], env: Record<string, string>) =>
  run('/usr/bin/env', ['-i', `PATH=${process.env.PATH}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'sh', script, ...args]);

test('Dovecot image: the entrypoint fills the shipped snippets as the native harness does, and doveconf reads them', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-dovecot-image-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const dockerfile = path.join(ROOT, 'docker/dovecot/Dockerfile');
  const copied = await layOut(dockerfile, dir);
  // Debian's /etc/dovecot with the Dockerfile's own edit (no system passdb).
  const etc = path.join(dir, 'etc/dovecot');
  await cp('/etc/dovecot', etc, { recursive: true });
  const edit = /sed -i '([^']+)' \/etc\/dovecot\/conf\.d\/10-auth\.conf/.exec(await readFile(dockerfile, 'utf8'));
  assert.ok(edit, 'the Dockerfile edits 10-auth.conf');
  assert.equal((await run('sed', ['-i', edit[1]!, path.join(etc, 'conf.d/10-auth.conf')])).code, 0);

  const env = compose.services.dovecot!.environment!;
  const paths = {
    DOVECOT_ETC: etc,
    TEMPLATE_DIR: path.join(dir, 'usr/share/ceerion/dovecot'),
    SIEVE_DIR: path.join(dir, 'sieve'),
    PIPE_BIN_DIR: path.join(dir, 'sieve-bin'),
    LEARN_SPOOL_DIR: path.join(dir, 'spool'),
  };
  const r = await sh(path.join(dir, 'usr/local/bin/ceerion-dovecot-entrypoint'), ['render'], { ...env, ...paths });
  assert.equal(r.code, 0, r.out);

  const conf = await run('doveconf', ['-c', path.join(etc, 'dovecot.conf'), '-n']);
  assert.equal(conf.code, 0, conf.out);
  assert.doesNotMatch(conf.out, /warning|error/i);
  assert.match(conf.out, /^auth_policy_server_url = http:\/\/ceerion:10041\/$/m);
  assert.match(conf.out, /^ {2}ceerion_push_url = http:\/\/ceerion:10043\/push$/m);
  assert.match(conf.out, /inet_listener lmtp \{\n {4}address = \*\n {4}port = 24\n/);
  assert.match(conf.out, /^passdb \{\n {2}args = \S+dovecot-sql\.conf\.ext\n {2}driver = sql$/m);
  assert.match(conf.out, /mail_plugins = " notify push_notification mail_lua push_notification_lua quota imap_quota imap_sieve"/);
  assert.match(conf.out, /^ssl = required$/m);

  // Byte for byte what stack/dovecot/config.ts's fillPlaceholders makes of the same values.
  const sqlValues = {
    PG_HOST: libpqValue(env.DB_HOST!),
    PG_PORT: libpqValue('5432'),
    PG_DBNAME: libpqValue(env.DB_NAME!),
    PG_USER: libpqValue(env.DB_USER!),
    PG_PASSWORD: libpqValue(env.DB_PASSWORD!),
    PG_SCHEMA: env.DB_SCHEMA!,
  };
  const same = async (template: string, rendered: string, values: Record<string, string>) => {
    const file = path.join(ROOT, template);
    assert.equal(await readFile(rendered, 'utf8'), fillDovecot(file, await readFile(file, 'utf8'), values), `${template} → ${rendered}`);
  };
  await same('lmtp-indexer/dovecot/dovecot-sql.conf.ext', path.join(etc, 'dovecot-sql.conf.ext'), sqlValues);
  await same('policyd/dovecot/auth-policy.conf', path.join(etc, 'conf.d/13-ceerion-auth-policy.conf'), {
    AUTH_POLICY_HOST: 'ceerion',
    AUTH_POLICY_PORT: '10041',
    AUTH_POLICY_API_HEADER: env.AUTH_POLICY_API_HEADER!,
    AUTH_POLICY_HASH_NONCE: env.AUTH_POLICY_HASH_NONCE!,
  });
  await same('lmtp-indexer/dovecot/push-notification.conf', path.join(etc, 'conf.d/15-ceerion-push-notification.conf'), {
    PUSH_LUA_FILE: path.join(etc, 'ceerion-push-notification.lua'),
    PUSH_URL: env.PUSH_URL!,
    PUSH_TOKEN: env.PUSH_TOKEN!,
    HIERARCHY_SEPARATOR: '.',
    PUSH_TIMEOUT_MSECS: '2000',
    PUSH_BACKOFF_SECS: '10',
  });
  await same('dovecot-plugins/bin/ceerion-learn', path.join(paths.PIPE_BIN_DIR, 'ceerion-learn'), { SPOOL_DIR: paths.LEARN_SPOOL_DIR, MAX_BYTES: '10485760' });
  assert.equal(await readFile(path.join(etc, 'ceerion-push-notification.lua'), 'utf8'), await readFile(path.join(ROOT, 'lmtp-indexer/dovecot/push-notification.lua'), 'utf8'));

  // Every shipped file the image copies is one the native renderer uses (all its options on).
  const native = path.join(dir, 'native');
  await mkdir(path.join(native, 'spool'), { recursive: true });
  const includes = await writeSnippets(
    native,
    { sqlAccounts: { url: 'postgres://u:p@127.0.0.1:5432/d', schema: 'ceerion' }, authPolicy: { port: 10041 }, push: { url: 'http://127.0.0.1:1/push' }, lmtp: true, quota: {}, sieveDelivery: true, learn: { spoolDir: path.join(native, 'spool'), flags: true } },
    'nonce',
    { uid: 1000, gid: 1000 },
  );
  await writeLmtpSnippet(native, 24);
  const nativeNames = new Set([...includes.map((f) => path.basename(f)), ...(await readdir(native)), ...(await readdir(path.join(native, 'sieve'))), 'ceerion-learn', 'dovecot-sql.conf.ext']);
  for (const src of copied.filter((s) => !s.startsWith('docker/'))) assert.ok(nativeNames.has(path.basename(src)), `${src} is copied into the image but not rendered by the native harness`);
});

test('Postfix image: the entrypoint applies the snippets and the accounts maps, as the native code renders them', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-postfix-image-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const copied = await layOut(path.join(ROOT, 'docker/postfix/Dockerfile'), dir);
  const etc = path.join(dir, 'etc/postfix');
  // A stock main.cf and master.cf, as Debian's package installs them.
  await cp('/usr/share/postfix/main.cf.dist', path.join(etc, 'main.cf'));
  await cp('/usr/share/postfix/master.cf.dist', path.join(etc, 'master.cf'));
  const env = compose.services.postfix!.environment!;
  const r = await sh(path.join(dir, 'usr/local/bin/ceerion-postfix-entrypoint'), ['render'], { ...env, MAIL_CONFIG: etc, TEMPLATE_DIR: path.join(dir, 'usr/share/ceerion/postfix') });
  assert.equal(r.code, 0, r.out);
  const conf = await run('postconf', ['-c', etc, '-n']);
  assert.equal(conf.code, 0, conf.out);
  assert.doesNotMatch(conf.out, /warning/i);
  const main = new Map(conf.out.trim().split('\n').map((l) => [l.slice(0, l.indexOf(' = ')), l.slice(l.indexOf(' = ') + 3)]));
  assert.equal(main.get('smtpd_milters'), 'inet:ceerion:8891');
  assert.equal(main.get('milter_default_action'), 'tempfail');
  assert.equal(main.get('virtual_transport'), 'lmtp:inet:ceerion:2424');
  assert.match(main.get('smtpd_recipient_restrictions')!, /check_policy_service inet:ceerion:10040$/);
  assert.equal(main.get('smtpd_end_of_data_restrictions'), 'check_policy_service inet:ceerion:10040');
  assert.equal(main.get('myhostname'), env.MAIL_HOSTNAME);
  // The maps: what accounts/postfix-maps.ts renders for the same database settings.
  const values = postfixMapValues({ url: `postgres://${env.DB_USER}:${env.DB_PASSWORD}@${env.DB_HOST}:5432/${env.DB_NAME}`, schema: env.DB_SCHEMA! } as Parameters<typeof postfixMapValues>[0]);
  for (const m of POSTFIX_MAPS) {
    assert.equal(main.get(m.parameter), `pgsql:${path.join(etc, 'ceerion', m.file)}`);
    assert.equal(await readFile(path.join(etc, 'ceerion', m.file), 'utf8'), await renderPostfixMap(m.file, values), m.file);
    assert.ok(copied.includes(`accounts/postfix/${m.file}`));
  }
});
