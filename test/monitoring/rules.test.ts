// The Prometheus files under monitoring/ through Debian's promtool: the scrape config and the
// alert rules load, the rule unit tests in monitoring/tests pass, every alert has a case that
// fires and one that does not, every metric the rules read is one the code exports, and changing
// any threshold the alerts promise makes the unit tests fail (so they really pin them down).
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';
import YAML from 'yaml';
import { ROOT } from '../harness/milter-process.ts';
import { ensurePromtool, PROMTOOL, run } from './debian.ts';
import { exportedMetricNames, unknownMetrics } from './metric-names.ts';

const MONITORING = path.join(ROOT, 'monitoring');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
}
interface UnitTests {
  tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }>;
}

const rules = (): Promise<Rule[]> =>
  readFile(path.join(MONITORING, 'alerts.yml'), 'utf8').then((t) => (YAML.parse(t) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules));

async function unitTestFiles(dir: string): Promise<string[]> {
  return (await readdir(path.join(dir, 'tests'))).filter((f) => f.endsWith('.yml')).sort().map((f) => path.join(dir, 'tests', f));
}

before(() => ensurePromtool());

test('promtool check config: the scrape config and its rule file', async () => {
  const r = await run(PROMTOOL, ['check', 'config', path.join(MONITORING, 'prometheus.yml')]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /SUCCESS: \d+ rules found/);
  const config = YAML.parse(await readFile(path.join(MONITORING, 'prometheus.yml'), 'utf8')) as { scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[]; labels?: { service?: string } }> }> };
  const services = config.scrape_configs.flatMap((j) => j.static_configs.flatMap((s) => (s.labels?.service ? [s.labels.service] : [])));
  for (const s of ['milter', 'policyd', 'lmtp-indexer', 'learner', 'backup', 'postfix-queue']) assert.ok(services.includes(s), `no scrape target for ${s}`);
});

test('promtool test rules: every unit test in monitoring/tests passes', async () => {
  const files = await unitTestFiles(MONITORING);
  assert.ok(files.length >= 3);
  const r = await run(PROMTOOL, ['test', 'rules', ...files], { cwd: MONITORING });
  assert.equal(r.code, 0, r.out);
  assert.equal(r.out.match(/SUCCESS/g)?.length, files.length, r.out);
});

test('every alert has a case where it fires and one where it stays quiet', async () => {
  const fires = new Set<string>();
  const quiet = new Set<string>();
  for (const file of await unitTestFiles(MONITORING)) {
    const doc = YAML.parse(await readFile(file, 'utf8')) as UnitTests;
    for (const t of doc.tests) {
      for (const a of t.alert_rule_test ?? []) (a.exp_alerts?.length ? fires : quiet).add(a.alertname);
    }
  }
  const alerts = (await rules()).flatMap((r) => (r.alert ? [r.alert] : []));
  assert.ok(alerts.length >= 7);
  for (const a of alerts) {
    assert.ok(fires.has(a), `${a}: no unit test where it fires`);
    assert.ok(quiet.has(a), `${a}: no unit test where it stays quiet`);
  }
});

test('the alert rules read only metrics the code exports', async () => {
  const known = await exportedMetricNames();
  for (const r of await rules()) assert.deepEqual(unknownMetrics(r.expr, known), [], `${r.alert}: ${r.expr}`);
});

// Each promised threshold, and a change that breaks it: the unit tests must notice every one.
const MUTATIONS: Array<[alert: string, from: string, to: string]> = [
  ['CeerionPostfixQueueBacklog', '> 500', '> 520'],
  ['CeerionPostfixDeferredMailOld', '> 4 * 3600', '> 5 * 3600'],
  ['CeerionDmarcFailureRateHigh', '> 0.10', '> 0.11'],
  ['CeerionDmarcFailureRateHigh', 'for: 10m', 'for: 5m'],
  ['CeerionAuthFailureRateHigh', '> 0.20', '> 0.26'],
  ['CeerionAuthFailureRateHigh', 'for: 5m', 'for: 1m'],
  ['CeerionBackupTooOld', '> 26 * 3600', '> 28 * 3600'],
  ['CeerionBackupFailed', 'last_failure_timestamp_seconds > ceerion_backup', 'last_failure_timestamp_seconds < ceerion_backup'],
  ['CeerionIndexLatencyHigh', ')) > 2', ')) > 5'],
  ['CeerionIndexLatencyHigh', 'histogram_quantile(0.95', 'histogram_quantile(0.5'],
];

test('changing any promised threshold makes the unit tests fail', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-rules-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp(MONITORING, dir, { recursive: true });
  const original = await readFile(path.join(MONITORING, 'alerts.yml'), 'utf8');
  const files = await unitTestFiles(dir);
  for (const [alert, from, to] of MUTATIONS) {
    // Only inside the alert's own rule: the same text elsewhere stays.
    const start = original.indexOf(`- alert: ${alert}\n`);
    assert.ok(start >= 0, alert);
    const end = original.indexOf('- alert:', start + 1);
    const block = original.slice(start, end < 0 ? undefined : end);
    assert.ok(block.includes(from), `${alert}: ${JSON.stringify(from)} not in its rule`);
    await writeFile(path.join(dir, 'alerts.yml'), original.slice(0, start) + block.replace(from, to) + (end < 0 ? '' : original.slice(end)));
    const r = await run(PROMTOOL, ['test', 'rules', ...files], { cwd: dir });
    assert.notEqual(r.code, 0, `${alert}: ${from} → ${to} went unnoticed`);
    assert.match(r.out, new RegExp(`alertname: ${alert}`), `${alert}: the failure names another alert:\n${r.out}`);
  }
});
