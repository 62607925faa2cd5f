/**
 * The classifier in the mail path: SMTP client → private Postfix → our milter service (the spam
 * check fed by a ClassifierRuntime whose trained model sits in a test schema) → sink. Spam is
 * flagged (or refused with 550 5.7.1 above the reject threshold), ham passes with X-Spam-Status:
 * No, forged X-Spam-* headers never survive, a learn through the milter's own learn endpoint
 * reaches its model, and a classifier that throws lets mail through unscored (onError accept),
 * its forged headers still removed; with onError tempfail the sender gets a 4xx.
 */
import assert from 'node:assert/strict';
import { before, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SpamEngine } from '../../classifier/engine/engine.ts';
import { engineFromSections } from '../../classifier/engine/engine.ts';
import { decodeModel } from '../../classifier/model/container.ts';
import { migrateClassifier, PgModelStore } from '../../classifier/model/store.ts';
import { parseConfig } from '../../core/config/load.ts';
import { createPool } from '../../core/db/pool.ts';
import { silentLogger } from '../../core/log.ts';
import { createRegistry } from '../../core/metrics.ts';
import type { SpamScorer } from '../../milter/checks/spam.ts';
import { startMilterService, type MilterService } from '../../milter/service.ts';
import { startPostfix } from '../harness/postfix.ts';
import { testSchema } from '../harness/postgres.ts';
import { sendMail } from '../harness/smtp-client.ts';
import { startSmtpSink } from '../harness/smtp-sink.ts';
import { trainTestModel, withoutFromLine, type TestModel } from '../helpers/classifier-model.ts';

const TOKEN = 'spam-test-token-0123456789';

let model: TestModel;
let spamMsg: string;
let hamMsg: string;

before(async () => {
  const cfg = parseConfig({}).classifier;
  model = await trainTestModel(cfg, 100);
  // The clearest held-out examples, so the few headers Postfix adds cannot tip them over.
  const engine: SpamEngine = await engineFromSections(cfg, decodeModel(model.blob).sections);
  const scored = (msgs: TestModel['trained']) =>
    msgs.map((m) => ({ raw: withoutFromLine(m.raw), score: engine.classify(withoutFromLine(m.raw)).score })).sort((a, b) => b.score - a.score);
  const spam = scored(model.heldOut.spam)[0]!;
  const ham = scored(model.heldOut.ham).at(-1)!;
  assert.ok(spam.score > 0.95 && ham.score < 0.05, `usable samples: spam ${spam.score}, ham ${ham.score}`);
  spamMsg = spam.raw.toString('utf8');
  hamMsg = ham.raw.toString('utf8');
});

interface Stack {
  service: MilterService;
  smtpPort: number;
  sink: Awaited<ReturnType<typeof startSmtpSink>>;
  registry: ReturnType<typeof createRegistry>;
}

/** The milter as `ceerion milter` starts it (startMilterService), with the model in a test schema. */
async function stack(t: TestContext, classifier: Record<string, unknown>, scorer?: SpamScorer): Promise<Stack> {
  const database = testSchema(t);
  if (!scorer) {
    const pool = createPool(database);
    t.after(() => pool.end());
    await migrateClassifier(pool);
    await new PgModelStore(pool).saveModel(model.blob, { lastEventId: 0n, activate: true });
  }
  const config = parseConfig({
    hostname: 'mx.test',
    metrics: { enabled: false },
    database,
    milter: { listen: 'inet:127.0.0.1:0', checks: { auth: { enabled: false }, dkimSign: { enabled: false } } },
    classifier,
  });
  const registry = createRegistry(false);
  const service = await startMilterService(config, { log: silentLogger, registry, ...(scorer ? { scorer } : {}) });
  t.after(() => service.stop());
  const sink = await startSmtpSink();
  t.after(() => sink.close());
  const pf = await startPostfix({ milter: service.address, relayPort: sink.port });
  t.after(() => pf.stop());
  return { service, smtpPort: pf.smtpPort, sink, registry };
}

const send = (s: Stack, data: string) => sendMail({ port: s.smtpPort, from: 'sender@example.com', to: ['bob@example.org'], data });
const headOf = (data: string) => data.split('\r\n\r\n')[0]!;
const fields = (head: string, name: string) => head.match(new RegExp(`^${name}:.*(\\r\\n[ \\t].*)*`, 'gim')) ?? [];

async function counter(s: Stack, verdict: string): Promise<number> {
  const metric = s.registry.getSingleMetric('reservoir_classify_total');
  const values = (await metric!.get()).values;
  return values.find((v) => v.labels.verdict === verdict)?.value ?? 0;
}

test('with rejects off: spam arrives flagged, ham arrives unflagged, forged flags are removed, learns reach the model', async (t) => {
  const s = await stack(t, { milter: { reject: false }, learn: { token: TOKEN, port: 0 } });
  assert.equal(s.service.classifier?.modelVersion, 1, 'the milter loaded the trained model at start');

  const spam = await send(s, spamMsg);
  assert.equal(spam.code, 250, spam.text);
  const [delivered] = await s.sink.waitFor(1, 20_000);
  const head = headOf(delivered!.data);
  assert.deepEqual(fields(head, 'X-Spam-Flag'), ['X-Spam-Flag: YES']);
  assert.match(fields(head, 'X-Spam-Status')[0] ?? '', /^X-Spam-Status: Yes, score=[01]\.\d{4} junk=0\.3 reject=0\.8\r\n\tbayes=/);
  assert.match(fields(head, 'X-Spam-Score')[0] ?? '', /^X-Spam-Score: (0|1)\.\d{4}$/);
  assert.match(head, /^X-Ceerion-Milter: [^]*?\bspam=spam=\d\.\d{3} junk \(/m);

  // Ham carrying a sender's own verdict headers: ours replace them.
  const forged = `X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=1.0 forged\r\nX-Spam-Score: 99\r\n${hamMsg}`;
  const ham = await send(s, forged);
  assert.equal(ham.code, 250, ham.text);
  const hamHead = headOf((await s.sink.waitFor(2, 20_000))[1]!.data);
  assert.deepEqual(fields(hamHead, 'X-Spam-Flag'), [], 'the forged flag is gone');
  const status = fields(hamHead, 'X-Spam-Status');
  assert.equal(status.length, 1, hamHead);
  assert.match(status[0]!, /^X-Spam-Status: No, score=0\.\d{4} junk=0\.3 reject=0\.8\r\n\t/);
  assert.doesNotMatch(hamHead, /forged|X-Spam-Score: 99/);
  assert.equal(await counter(s, 'junk'), 1);
  assert.equal(await counter(s, 'inbox'), 1);
  // Both scores are in the histogram, each in the bucket its header gives.
  // prom-client gives a histogram's series their own metricName (_bucket, _sum, _count).
  const histogram = (await s.registry.getSingleMetric('reservoir_classify_score')!.get()).values as Array<{ metricName?: string; labels: Record<string, string | number>; value: number }>;
  const bucket = (le: number) => histogram.find((v) => v.metricName === 'reservoir_classify_score_bucket' && v.labels.le === le)?.value;
  assert.equal(histogram.find((v) => v.metricName === 'reservoir_classify_score_count')?.value, 2);
  const spamScore = Number(/score=(\d\.\d+)/.exec(fields(head, 'X-Spam-Status')[0]!)![1]);
  const hamScore = Number(/score=(\d\.\d+)/.exec(status[0]!)![1]);
  for (const le of [0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 0.99]) assert.equal(bucket(le), Number(hamScore <= le) + Number(spamScore <= le), `le=${le}`);

  // The learn endpoint runs in the milter process; the learn reaches its model like any other.
  const port = s.service.learnPort;
  assert.ok(port, 'the learn endpoint is up (a token is configured)');
  const res = await fetch(`http://127.0.0.1:${port}/learn/spam`, { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` }, body: hamMsg });
  assert.equal(res.status, 200);
  const outcome = (await res.json()) as { status: string; eventId: string };
  assert.equal(outcome.status, 'learned');
  const rt = s.service.classifier!;
  const deadline = Date.now() + 5_000;
  while (rt.lastEventId !== BigInt(outcome.eventId)) {
    assert.ok(Date.now() < deadline, 'the learn is applied within 5 s');
    await sleep(20);
  }
  assert.equal(rt.stats.applied, 1);
});

test('above the reject threshold spam is refused with 550 5.7.1; ham is delivered', async (t) => {
  const s = await stack(t, {});
  assert.equal(s.service.learnPort, undefined, 'no token: the learn endpoint stays off');
  const spam = await send(s, spamMsg);
  assert.equal(spam.code, 550, spam.text);
  assert.match(spam.text, /^5\.7\.1 Message refused as spam \(ref [\w.]+\)$/);
  const ham = await send(s, hamMsg);
  assert.equal(ham.code, 250, ham.text);
  const [delivered] = await s.sink.waitFor(1, 20_000);
  assert.match(fields(headOf(delivered!.data), 'X-Spam-Status')[0] ?? '', /^X-Spam-Status: No,/);
  await sleep(300);
  assert.equal(s.sink.messages.length, 1, 'the refused spam was never delivered');
  assert.equal(await counter(s, 'reject'), 1);
});

test('a classifier that throws: the message passes unscored (onError accept) and the failure is counted', async (t) => {
  const broken: SpamScorer = {
    classify() {
      throw new Error('model exploded');
    },
  };
  const s = await stack(t, { milter: { onError: 'accept' } }, broken);
  assert.equal(s.service.classifier, undefined, 'an injected scorer replaces the runtime');
  const r = await send(s, `X-Spam-Flag: YES\r\nX-Spam-Status: No, forged\r\n${spamMsg}`);
  assert.equal(r.code, 250, r.text);
  const head = headOf((await s.sink.waitFor(1, 20_000))[0]!.data);
  // Unscored: none of our headers, and the sender's copies are still removed.
  for (const name of ['X-Spam-Flag', 'X-Spam-Status', 'X-Spam-Score']) assert.deepEqual(fields(head, name), [], `${name} in\n${head}`);
  assert.match(head, /^X-Ceerion-Milter: [^]*?\bspam=error \(unscored\) \(/m);
  assert.equal(await counter(s, 'error'), 1);
});

test('a classifier that throws with onError tempfail: the sender gets 451 4.7.1 and keeps the mail', async (t) => {
  const broken: SpamScorer = {
    classify() {
      throw new Error('model exploded');
    },
  };
  const s = await stack(t, { milter: { onError: 'tempfail' } }, broken);
  const r = await send(s, hamMsg);
  assert.equal(r.code, 451, r.text);
  assert.match(r.text, /^4\.7\.1 Temporary failure in the spam check/);
  assert.equal(s.sink.messages.length, 0);
});
