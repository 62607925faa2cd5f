/**
 * No Docker engine runs here, so the Docker files are validated statically: the compose file
 * parses, every build context and Dockerfile exists, every CEERION_* variable is a real config
 * key with a valid value, and the Postfix image applies the same milter.cf the test harness's
 * private Postfix runs with (so the shipped config is the tested one).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import YAML from 'yaml';
import { envOverrides, parseConfig, unknownEnvVariables } from '../../core/config/load.ts';
import { parseMainCf } from '../harness/postfix-config.ts';
import { ROOT } from '../harness/milter-process.ts';

interface Service {
  build?: { context: string; dockerfile?: string } | string;
  environment?: Record<string, string>;
  command?: string[];
}
const compose = YAML.parse(readFileSync(path.join(ROOT, 'docker-compose.mail.yml'), 'utf8')) as { services: Record<string, Service> };

test('compose services build from files that exist', () => {
  assert.deepEqual(Object.keys(compose.services).sort(), ['backup', 'ceerion', 'postfix', 'postgres', 'redis']);
  // Redis and PostgreSQL run pinned upstream images; ours are built from files in this repository.
  assert.match((compose.services.redis as Service & { image?: string }).image ?? '', /^redis:\d+\.\d+/);
  // 15+: migration 0002 of the index uses lz4 TOAST compression (PostgreSQL 14+).
  assert.match((compose.services.postgres as Service & { image?: string }).image ?? '', /^postgres:1[5-9]/);
  for (const [name, svc] of Object.entries(compose.services)) {
    if (name === 'redis' || name === 'postgres') continue;
    const build = typeof svc.build === 'string' ? { context: svc.build } : svc.build;
    assert.ok(build, `${name} has no build section`);
    const context = path.join(ROOT, build.context);
    assert.ok(existsSync(context), `${name}: build context ${build.context} missing`);
    const dockerfile = path.join(build.dockerfile ? ROOT : context, build.dockerfile ?? 'Dockerfile');
    assert.ok(existsSync(dockerfile), `${name}: ${dockerfile} missing`);
    // Every COPY source must exist relative to the context.
    for (const m of readFileSync(dockerfile, 'utf8').matchAll(/^COPY\s+(.+)\s+\S+$/gm)) {
      for (const src of m[1]!.split(/\s+/)) assert.ok(existsSync(path.join(context, src)), `${name}: COPY ${src} missing`);
    }
  }
});

test('every CEERION_* variable in compose is a valid config override', () => {
  const env = compose.services.ceerion!.environment ?? {};
  assert.ok(Object.keys(env).length > 0);
  assert.deepEqual(unknownEnvVariables(env), []);
  const config = parseConfig(envOverrides(env));
  assert.equal(config.milter.listen, 'inet:0.0.0.0:8891');
  assert.equal(compose.services.postfix!.environment?.CEERION_MILTER, `inet:ceerion:${config.milter.listen.split(':').at(-1)}`);
});

test('the Postfix image applies docker/postfix/milter.cf, the file the test harness uses', () => {
  const dockerfile = readFileSync(path.join(ROOT, 'docker/postfix/Dockerfile'), 'utf8');
  assert.match(dockerfile, /^COPY milter\.cf \/etc\/postfix\/ceerion-milter\.cf$/m);
  const entrypoint = readFileSync(path.join(ROOT, 'docker/postfix/entrypoint.sh'), 'utf8');
  assert.match(entrypoint, /\/etc\/postfix\/ceerion-milter\.cf/);
  const settings = new Map(parseMainCf(readFileSync(path.join(ROOT, 'docker/postfix/milter.cf'), 'utf8')));
  assert.equal(settings.get('milter_protocol'), '6');
  assert.equal(settings.get('milter_default_action'), 'tempfail');
  assert.equal(settings.get('smtpd_milters'), 'inet:127.0.0.1:8891');
  // The entrypoint's filter must pick up every setting line of the file.
  const picked = readFileSync(path.join(ROOT, 'docker/postfix/milter.cf'), 'utf8')
    .split('\n')
    .filter((l) => /^[a-z_]+ *=/.test(l));
  assert.equal(picked.length, settings.size);
});

test('the Postfix image applies docker/postfix/policy.cf pointed at the ceerion container, which listens there', () => {
  const dockerfile = readFileSync(path.join(ROOT, 'docker/postfix/Dockerfile'), 'utf8');
  assert.match(dockerfile, /^COPY policy\.cf \/etc\/postfix\/ceerion-policy\.cf$/m);
  const entrypoint = readFileSync(path.join(ROOT, 'docker/postfix/entrypoint.sh'), 'utf8');
  assert.match(entrypoint, /\/etc\/postfix\/ceerion-policy\.cf/);
  // The address the entrypoint replaces is the one the shipped file uses.
  const cf = readFileSync(path.join(ROOT, 'docker/postfix/policy.cf'), 'utf8');
  const replaced = /s\|([^|]+)\|/.exec(entrypoint)![1]!;
  assert.ok(cf.includes(replaced), `policy.cf names ${replaced}`);
  const compose = YAML.parse(readFileSync(path.join(ROOT, 'docker-compose.mail.yml'), 'utf8')) as { services: Record<string, { environment?: Record<string, string> }> };
  const config = parseConfig(envOverrides(compose.services.ceerion!.environment ?? {}));
  assert.equal(config.policyd.listen, 'inet:0.0.0.0:10040');
  assert.equal(compose.services.postfix!.environment?.CEERION_POLICY, `inet:ceerion:${config.policyd.listen.split(':').at(-1)}`);
  assert.equal(config.redis.url, 'redis://redis:6379');
  assert.ok(compose.services.redis, 'a Redis service for the counters');
});

test('the Postfix image applies docker/postfix/lmtp.cf pointed at the ceerion container, whose indexer listens there', () => {
  const dockerfile = readFileSync(path.join(ROOT, 'docker/postfix/Dockerfile'), 'utf8');
  assert.match(dockerfile, /^COPY lmtp\.cf \/etc\/postfix\/ceerion-lmtp\.cf$/m);
  const entrypoint = readFileSync(path.join(ROOT, 'docker/postfix/entrypoint.sh'), 'utf8');
  const cf = readFileSync(path.join(ROOT, 'docker/postfix/lmtp.cf'), 'utf8');
  const replaced = [...entrypoint.matchAll(/s\|([^|]+)\|/g)].map((m) => m[1]!).find((a) => a.endsWith(':2424'))!;
  assert.ok(cf.includes(`lmtp:${replaced}`), `lmtp.cf names ${replaced}`);
  const config = parseConfig(envOverrides(compose.services.ceerion!.environment ?? {}));
  assert.equal(config.lmtp.listen, 'inet:0.0.0.0:2424');
  assert.equal(compose.services.postfix!.environment?.CEERION_LMTP, `inet:ceerion:${config.lmtp.listen.split(':').at(-1)}`);
  assert.equal(config.database.url, 'postgres://ceerion:ceerion@postgres:5432/ceerion');
});

/** Compose's `${NAME:-default}` as it resolves with nothing set in .env. */
const interpolate = (env: Record<string, string>) =>
  Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, '$1')]));

test('the backup service: valid overrides, the same image, a schedule the CLI accepts', async () => {
  const svc = compose.services.backup!;
  const env = interpolate(svc.environment ?? {});
  assert.deepEqual(unknownEnvVariables(env), []);
  const config = parseConfig(envOverrides(env));
  assert.equal(config.backup.include.maildir, '/var/vmail');
  assert.equal(config.backup.keys.provider, 'local');
  assert.deepEqual(svc.build, compose.services.ceerion!.build);
  assert.deepEqual(svc.command?.slice(0, 2), ['backup', 'schedule']);
  const { parseAt } = await import('../../backup/schedule.ts');
  parseAt(svc.command![svc.command!.indexOf('--at') + 1]!);
  // pg_dump must match the compose PostgreSQL's major version, and zstd must be there.
  const dockerfile = readFileSync(path.join(ROOT, 'docker/ceerion/Dockerfile'), 'utf8');
  const major = /^postgres:(\d+)/.exec((compose.services.postgres as Service & { image?: string }).image ?? '')?.[1];
  assert.match(dockerfile, new RegExp(`postgresql-client-${major}\\b`));
  assert.match(dockerfile, /\bzstd\b/);
});
