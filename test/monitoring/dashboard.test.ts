// The Grafana dashboard and its provisioning: the JSON parses and lays out, every query is valid
// PromQL (promtool checks each one as a recording rule), reads only metrics the code exports, and
// the dashboard covers what operators need to see.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';
import YAML from 'yaml';
import { ROOT } from '../harness/milter-process.ts';
import { ensurePromtool, PROMTOOL, run } from './debian.ts';
import { exportedMetricNames, metricsInPromQL, unknownMetrics } from './metric-names.ts';

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ refId: string; expr: string; datasource?: { uid: string } }>;
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: string }> };
}

const GRAFANA = path.join(ROOT, 'monitoring/grafana');
const load = async (): Promise<Dashboard> => JSON.parse(await readFile(path.join(GRAFANA, 'dashboards/ceerion.json'), 'utf8')) as Dashboard;
const queries = (d: Dashboard) => d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));

before(() => ensurePromtool());

test('the dashboard parses and lays out: unique ids, 24 columns, a data source variable', async () => {
  const d = await load();
  assert.equal(d.uid, 'ceerion-mail');
  const ids = d.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  const variable = d.templating.list.find((v) => v.type === 'datasource');
  assert.equal(variable?.query, 'prometheus');
  for (const p of d.panels) {
    assert.ok(p.gridPos.x >= 0 && p.gridPos.w > 0 && p.gridPos.x + p.gridPos.w <= 24, `${p.title}: outside the 24-column grid`);
    if (p.type === 'row') continue;
    assert.ok(p.targets?.length, `${p.title}: no query`);
    assert.equal(p.datasource?.uid, `\${${variable!.name}}`, `${p.title}: not on the data source variable`);
    for (const t of p.targets!) assert.equal(t.datasource?.uid, `\${${variable!.name}}`);
  }
  // No two panels overlap.
  const cells = new Set<string>();
  for (const p of d.panels) {
    for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
      for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
        assert.ok(!cells.has(`${x},${y}`), `${p.title} overlaps another panel at ${x},${y}`);
        cells.add(`${x},${y}`);
      }
    }
  }
});

test('every query is valid PromQL and names metrics the code exports', async (t) => {
  const d = await load();
  const known = await exportedMetricNames();
  for (const q of queries(d)) {
    assert.ok(metricsInPromQL(q.expr).length, `${q.panel}: names no metric: ${q.expr}`);
    assert.deepEqual(unknownMetrics(q.expr, known), [], `${q.panel}: ${q.expr}`);
  }
  // promtool parses each expression as a recording rule.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-dashboard-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'panels.yml');
  const rules = queries(d).map((q, i) => ({ record: `dashboard:panel_${i}`, expr: q.expr }));
  await writeFile(file, YAML.stringify({ groups: [{ name: 'dashboard', rules }] }));
  const r = await run(PROMTOOL, ['check', 'rules', file]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, new RegExp(`SUCCESS: ${rules.length} rules found`));
});

test('it covers throughput, verdicts, classifier, rate limits, logins, queue and backup age', async () => {
  const used = new Set(queries(await load()).flatMap((q) => metricsInPromQL(q.expr)));
  for (const m of [
    'ceerion_milter_messages_total',
    'ceerion_milter_verdicts_total',
    'reservoir_classify_total',
    'reservoir_classify_score_bucket',
    'ceerion_policyd_limit_hits_total',
    'ceerion_auth_policy_requests_total',
    'ceerion_postfix_queue_messages',
    'ceerion_backup_last_success_timestamp_seconds',
    'lmtp_delivery_duration_seconds_bucket',
  ]) {
    assert.ok(used.has(m), `no panel shows ${m}`);
  }
});

test('provisioning: the Prometheus data source and the folder the dashboard is mounted in', async () => {
  const ds = YAML.parse(await readFile(path.join(GRAFANA, 'provisioning/datasources/prometheus.yml'), 'utf8')) as { datasources: Array<{ type: string; url: string }> };
  assert.equal(ds.datasources[0]?.type, 'prometheus');
  assert.equal(ds.datasources[0]?.url, 'http://prometheus:9090');
  const dash = YAML.parse(await readFile(path.join(GRAFANA, 'provisioning/dashboards/ceerion.yml'), 'utf8')) as { providers: Array<{ options: { path: string } }> };
  const dir = dash.providers[0]!.options.path;
  // The compose file mounts monitoring/grafana/dashboards exactly there.
  const compose = YAML.parse(await readFile(path.join(ROOT, 'docker-compose.mail.yml'), 'utf8')) as { services: Record<string, { volumes?: string[] }> };
  assert.ok(compose.services.grafana?.volumes?.some((v) => v.startsWith('./monitoring/grafana/dashboards:') && v.split(':')[1] === dir), `grafana mounts no ${dir}`);
});
