/**
 * No Docker engine runs here, so the Docker files are validated statically: Debian's docker-compose
 * (Compose v1, which needs no engine for `config`) resolves the file with .env.mail.example, and the
 * resolved services are checked: every build context, Dockerfile and COPY source exists, every
 * CEERION_* variable is a real config key with a valid value, every service has a health check,
 * data lives in named volumes, no password is written in the file, and the Postfix image applies
 * the same snippets the test harness's private Postfix runs with. test/docker/images.test.ts runs
 * the images' entrypoints against the host's Postfix and Dovecot.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';
import YAML from 'yaml';
import { envOverrides, parseConfig, unknownEnvVariables } from '../../core/config/load.ts';
import { parseMainCf } from '../harness/postfix-config.ts';
import { ROOT } from '../harness/milter-process.ts';
import { ensureDebianPackage, run } from '../monitoring/debian.ts';
import { composeFile, copies, resolvedCompose, type Resolved } from './compose-files.ts';

const DOCKER_COMPOSE = '/usr/bin/docker-compose';
let compose: Resolved;

before(async () => {
  await ensureDebianPackage('docker-compose', DOCKER_COMPOSE);
  compose = await resolvedCompose();
});

const SERVICES = ['backup', 'ceerion', 'clamav', 'dovecot', 'grafana', 'postfix', 'postfix-queue', 'postgres', 'prometheus', 'redis', 's3', 's3-init'];
const CEERION_IMAGE = ['ceerion', 'backup', 'postfix-queue'];

test('docker-compose config accepts the file with .env.mail.example, without an engine', async () => {
  assert.deepEqual(Object.keys(compose.services).sort(), SERVICES);
  // The engine is never asked: a DOCKER_HOST that leads nowhere changes nothing.
  const r = await run('/usr/bin/env', ['DOCKER_HOST=unix:///nonexistent/docker.sock', DOCKER_COMPOSE, '-f', 'docker-compose.mail.yml', '--env-file', '.env.mail.example', 'config', '-q'], { cwd: ROOT });
  assert.equal(r.code, 0, r.out);
  // Prometheus and Grafana only with the monitoring profile.
  for (const [name, svc] of Object.entries(composeFile().services)) {
    assert.deepEqual(svc.profiles, ['prometheus', 'grafana'].includes(name) ? ['monitoring'] : undefined, name);
  }
});

test('every secret is required from .env: leaving one out stops compose, naming it', async (t) => {
  const example = readFileSync(path.join(ROOT, '.env.mail.example'), 'utf8');
  const required = [...new Set([...readFileSync(path.join(ROOT, 'docker-compose.mail.yml'), 'utf8').matchAll(/\$\{([A-Z0-9_]+):\?/g)].map((m) => m[1]!))];
  for (const v of ['POSTGRES_PASSWORD', 'REDIS_PASSWORD', 'AUTH_POLICY_API_KEY', 'AUTH_POLICY_HASH_NONCE', 'PUSH_TOKEN', 'S3_SECRET_ACCESS_KEY', 'GRAFANA_ADMIN_PASSWORD']) {
    assert.ok(required.includes(v), `${v} is not required`);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-compose-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const v of required) {
    assert.match(example, new RegExp(`^# .+[\\s\\S]*^${v}=`, 'm'), `.env.mail.example does not document ${v}`);
    const env = path.join(dir, `${v}.env`);
    await writeFile(env, example.replace(new RegExp(`^${v}=.*$`, 'm'), ''));
    const r = await run(DOCKER_COMPOSE, ['-f', path.join(ROOT, 'docker-compose.mail.yml'), '--env-file', env, 'config', '-q'], { cwd: ROOT });
    assert.notEqual(r.code, 0, `compose started without ${v}`);
    assert.match(r.out, new RegExp(`set ${v} in \\.env`), r.out);
  }
});

test('no password, key or token is written in the compose file', () => {
  const secretKey = /(PASSWORD|SECRET|TOKEN|NONCE|API_KEY|API_HEADER|REDISCLI_AUTH)$/;
  for (const [name, svc] of Object.entries(composeFile().services)) {
    for (const [k, v] of Object.entries(svc.environment ?? {})) {
      const value = String(v);
      if (secretKey.test(k)) assert.match(value, /\$\{[A-Z0-9_]+:\?[^}]+\}/, `${name}: ${k} has a literal value`);
      // Credentials in URLs come from .env too.
      const cred = /:\/\/[^/@\s]*:([^@/\s]+)@/.exec(value);
      if (cred) assert.match(cred[1]!, /^\$\{[A-Z0-9_]+:\?[^}]+\}$/, `${name}: ${k} has a literal password`);
    }
  }
});

test('every service has a health check; data lives in named volumes; bind mounts are repository files', () => {
  const declared = Object.keys(composeFile().volumes ?? {});
  for (const [name, svc] of Object.entries(compose.services)) {
    assert.ok(svc.healthcheck?.test?.length, `${name} has no health check`);
    assert.ok(!svc.healthcheck.disable, `${name} disables its health check`);
    for (const v of svc.volumes ?? []) {
      if (v.type === 'volume') assert.ok(declared.includes(v.source), `${name}: volume ${v.source} is not declared`);
      else {
        assert.ok(v.source.startsWith(path.join(ROOT, 'monitoring')) && existsSync(v.source), `${name}: bind mount ${v.source}`);
        assert.equal(v.read_only, true, `${name}: ${v.source} is mounted writable`);
      }
    }
  }
  for (const s of ['postgres', 'redis', 'vmail', 'postfix-spool', 's3', 'clamav']) {
    const uses = Object.values(compose.services).flatMap((svc) => (svc.volumes ?? []).map((v) => v.source));
    assert.ok(uses.some((u) => u.includes(s)), `no named volume for ${s}`);
  }
});

test('images: pinned tags; ours build from files that exist, every COPY source included', () => {
  for (const [name, svc] of Object.entries(compose.services)) {
    if (svc.image) {
      assert.match(svc.image, /:[^:]*\d/, `${name}: ${svc.image} is not pinned to a version`);
      assert.doesNotMatch(svc.image, /:latest$/);
      continue;
    }
    assert.ok(svc.build, `${name} has neither image nor build`);
    const dockerfile = path.join(svc.build.context, svc.build.dockerfile ?? 'Dockerfile');
    assert.ok(existsSync(dockerfile), `${name}: ${dockerfile} missing`);
    for (const c of copies(dockerfile)) for (const src of c.sources) assert.ok(existsSync(path.join(svc.build.context, src)), `${name}: COPY ${src} missing`);
  }
  // MinIO's Docker Hub image is gone: the quay.io release tags remain.
  assert.match(compose.services.s3!.image!, /^quay\.io\/minio\/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$/);
  assert.match(compose.services.clamav!.image!, /^clamav\/clamav:\d+\.\d+/);
  assert.match(compose.services.redis!.image!, /^redis:\d+\.\d+/);
  // 15+: migration 0002 of the index uses lz4 TOAST compression (PostgreSQL 14+).
  assert.match(compose.services.postgres!.image!, /^postgres:1[5-9]/);
});

test('every CEERION_* variable is a valid config override, and the wiring between services holds', () => {
  for (const [name, svc] of Object.entries(compose.services)) {
    const env = svc.environment ?? {};
    assert.deepEqual(unknownEnvVariables(env), [], `${name}: unknown CEERION_* variables`);
    if (CEERION_IMAGE.includes(name)) parseConfig(envOverrides(env));
    else assert.deepEqual(Object.keys(env).filter((k) => k.startsWith('CEERION_')), [], `${name} is not ours but sets CEERION_*`);
  }
  const config = parseConfig(envOverrides(compose.services.ceerion!.environment!));
  const port = (a: string) => a.split(':').at(-1);
  const postfix = compose.services.postfix!.environment!;
  assert.equal(postfix.MILTER_ADDRESS, `inet:ceerion:${port(config.milter.listen)}`);
  assert.equal(postfix.POLICY_ADDRESS, `inet:ceerion:${port(config.policyd.listen)}`);
  assert.equal(postfix.LMTP_ADDRESS, `inet:ceerion:${port(config.lmtp.listen)}`);
  assert.equal(config.milter.listen, 'inet:0.0.0.0:8891');
  const example = Object.fromEntries(readFileSync(path.join(ROOT, '.env.mail.example'), 'utf8').split('\n').filter((l) => /^[A-Z]/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  assert.equal(config.database.url, `postgres://ceerion:${example.POSTGRES_PASSWORD}@postgres:5432/ceerion`);
  assert.equal(config.redis.url, `redis://:${example.REDIS_PASSWORD}@redis:6379`);
  const dovecot = compose.services.dovecot!.environment!;
  // Dovecot's auth policy client and push notifications reach the ceerion container with its secrets.
  assert.equal(`${dovecot.AUTH_POLICY_HOST}:${dovecot.AUTH_POLICY_PORT}`, `ceerion:${config.authPolicy.port}`);
  assert.equal(dovecot.AUTH_POLICY_API_HEADER, config.authPolicy.apiHeader);
  assert.equal(dovecot.PUSH_TOKEN, config.lmtp.http.pushToken);
  assert.equal(dovecot.PUSH_URL, `http://ceerion:${config.lmtp.http.port}/push`);
  assert.equal(config.lmtp.dovecot.address, 'inet:dovecot:24');
  assert.equal(config.milter.checks.antivirus.clamd, 'inet:clamav:3310');
  assert.equal(dovecot.LEARN_SPOOL_DIR, config.learn.spool.dir);
  assert.equal(path.dirname(config.learn.gateway.socket), '/run/dovecot/ceerion-learn');
  for (const svc of ['ceerion', 'dovecot']) {
    const targets = (compose.services[svc]!.volumes ?? []).map((v) => `${v.source}:${v.target}`);
    assert.ok(targets.some((t) => t.endsWith('learn-socket:/run/dovecot/ceerion-learn')), `${svc}: no shared learn socket volume`);
    assert.ok(targets.some((t) => t.endsWith(`learn-spool:${config.learn.spool.dir}`)), `${svc}: no shared learn spool volume`);
  }
  // Metrics are served beyond loopback, where Prometheus scrapes them.
  for (const name of CEERION_IMAGE) {
    const c = parseConfig(envOverrides(compose.services[name]!.environment ?? {}));
    assert.equal(c.metrics.host, '0.0.0.0', name);
    assert.equal(c.metrics.port, 9464, name);
  }
});

test('the backup service: the same image, a schedule the CLI accepts, S3 from .env, pg_dump matching PostgreSQL', async () => {
  const svc = compose.services.backup!;
  const config = parseConfig(envOverrides(svc.environment ?? {}));
  assert.equal(config.backup.include.maildir, '/var/vmail');
  assert.equal(config.backup.keys.provider, 'local');
  assert.equal(config.backup.s3.endpoint, 'http://s3:9000');
  assert.equal(config.backup.s3.bucket, compose.services['s3-init']!.environment!.BACKUP_S3_BUCKET);
  assert.deepEqual(svc.build, compose.services.ceerion!.build);
  assert.deepEqual(svc.command?.slice(0, 2), ['backup', 'schedule']);
  const { parseAt } = await import('../../backup/schedule.ts');
  parseAt(svc.command![svc.command!.indexOf('--at') + 1]!);
  const dockerfile = readFileSync(path.join(ROOT, 'docker/ceerion/Dockerfile'), 'utf8');
  const major = /^postgres:(\d+)/.exec(compose.services.postgres!.image!)?.[1];
  assert.match(dockerfile, new RegExp(`postgresql-client-${major}\\b`));
  assert.match(dockerfile, /\bzstd\b/);
  // The queue metrics read the Postfix queue volume, read-only.
  const pq = compose.services['postfix-queue']!;
  const dir = pq.command![pq.command!.indexOf('--queue-dir') + 1];
  const spool = compose.services.postfix!.volumes!.find((v) => v.target === '/var/spool/postfix')!;
  assert.ok(pq.volumes!.some((v) => v.source === spool.source && v.target === dir && v.read_only));
});

test('the Postfix image applies docker/postfix/milter.cf, policy.cf and lmtp.cf, the files the test harness uses', () => {
  const dockerfile = path.join(ROOT, 'docker/postfix/Dockerfile');
  const copied = copies(dockerfile);
  for (const f of ['milter', 'policy', 'lmtp']) {
    assert.ok(copied.some((c) => c.sources.includes(`docker/postfix/${f}.cf`) && c.dest === `/etc/postfix/ceerion-${f}.cf`), `${f}.cf is not copied`);
  }
  const entrypoint = readFileSync(path.join(ROOT, 'docker/postfix/entrypoint.sh'), 'utf8');
  const settings = new Map(parseMainCf(readFileSync(path.join(ROOT, 'docker/postfix/milter.cf'), 'utf8')));
  assert.equal(settings.get('milter_protocol'), '6');
  assert.equal(settings.get('milter_default_action'), 'tempfail');
  // The addresses the entrypoint replaces are the ones the shipped files use.
  for (const [file, address] of [['policy.cf', 'inet:127.0.0.1:10040'], ['lmtp.cf', 'inet:127.0.0.1:2424']]) {
    assert.ok(entrypoint.includes(`s|${address}|`), `the entrypoint does not replace ${address}`);
    assert.ok(readFileSync(path.join(ROOT, 'docker/postfix', file!), 'utf8').includes(address!), `${file} names ${address}`);
  }
});
