// What `ceerion start` plans to run, for a config that points at external PostgreSQL and Redis and
// leaves out the daemons, so nothing is started: the suite's services, their commands and their
// metrics ports; MTA-STS only when a policy domain is configured.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../core/config/load.ts';
import { planStack } from '../../stack/plan.ts';

async function plan(t: { after(fn: () => Promise<void>): void }, extra: Record<string, unknown> = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-plan-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const config = parseConfig({
    database: { url: 'postgres://postgres@127.0.0.1:5432/postgres' },
    redis: { url: 'redis://127.0.0.1:6379' },
    stack: { varDir: dir, postgres: { mode: 'external' }, redis: { mode: 'external' }, clamd: { enabled: 'off' }, postfix: { enabled: 'off' }, dovecot: { enabled: 'off' } },
    ...extra,
  });
  return planStack(config, { env: {} });
}

test('without MTA-STS policies: our four services, each on its own metrics port', async (t) => {
  const p = await plan(t);
  assert.deepEqual(p.specs.map((s) => s.name), ['milter', 'policyd', 'lmtp', 'learner']);
  const ports = p.specs.map((s) => s.env?.CEERION_METRICS_PORT);
  assert.deepEqual(ports, ['9464', '9465', '9466', '9467']);
  assert.equal(p.endpoints.mtaSts, undefined);
  // A one-off CLI run gets the same environment as the services (the starter model's database).
  const cli = p.cli(['model', 'starter']);
  assert.deepEqual(cli.args.slice(-2), ['model', 'starter']);
  assert.equal(cli.env.CEERION_DATABASE_URL, 'postgres://postgres@127.0.0.1:5432/postgres');
});

test('with an MTA-STS policy: `ceerion mta-sts serve` joins, on its own metrics port, health-checked on its listener', async (t) => {
  const p = await plan(t, { mtaSts: { port: 10145, policies: { 'example.org': { mode: 'testing', mx: ['mx.example.org'] } } } });
  const sts = p.specs.find((s) => s.name === 'mta-sts');
  assert.ok(sts, p.specs.map((s) => s.name).join(', '));
  assert.deepEqual(sts.args.slice(-2), ['mta-sts', 'serve']);
  assert.equal(sts.env?.CEERION_METRICS_PORT, '9469');
  assert.equal(sts.stage, 2);
  assert.match(sts.health.describe, /127\.0\.0\.1:10145/);
  assert.equal(p.endpoints.mtaSts, 'http://127.0.0.1:10145/.well-known/mta-sts.txt');
  assert.equal(p.endpoints.metrics['mta-sts'], 'http://127.0.0.1:9469/metrics');
});
