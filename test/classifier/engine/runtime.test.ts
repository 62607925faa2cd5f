/**
 * ClassifierRuntime against real PostgreSQL, as two milter processes sharing one schema: before
 * any model every message stays in the inbox; a trained model saved and activated reaches both;
 * a learn recorded by one reaches both within 5 s and moves the message's score the learned way,
 * identically in both; a repeated learn changes nothing; a relearn moves the counts across.
 * Also: started with PostgreSQL down, a runtime scores (inbox) and catches up once it is back,
 * migrations included; a compaction snapshot replays nothing on the next start.
 */
import assert from 'node:assert/strict';
import { before, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClassifierRuntime } from '../../../classifier/engine/runtime.ts';
import { migrateClassifier, PgModelStore } from '../../../classifier/model/store.ts';
import { parseConfig } from '../../../core/config/load.ts';
import type { DatabaseConfig } from '../../../core/config/policyd.ts';
import { createPool } from '../../../core/db/pool.ts';
import { silentLogger } from '../../../core/log.ts';
import { freePort } from '../../harness/postfix.ts';
import { startPostgres, testSchema } from '../../harness/postgres.ts';
import { trainTestModel, type TestModel } from '../../helpers/classifier-model.ts';

const configFor = (database: DatabaseConfig) => parseConfig({ database, classifier: { pollMs: 1000 } });

let model: TestModel;
before(async () => {
  model = await trainTestModel(configFor({ url: 'postgres://x@127.0.0.1/x', schema: 'unused' }).classifier, 150);
});

async function waitFor(what: string, check: () => boolean, ms = 5_000): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(10);
  }
  return Date.now() - started;
}

async function runtime(t: TestContext, database: DatabaseConfig): Promise<ClassifierRuntime> {
  const pool = createPool(database, { max: 4 });
  const rt = await ClassifierRuntime.start({ cfg: configFor(database), pool, log: silentLogger, subscriber: { retryMinMs: 50, retryMaxMs: 250 } });
  t.after(async () => {
    await rt.close();
    await pool.end();
  });
  return rt;
}

async function storeFor(t: TestContext, database: DatabaseConfig): Promise<PgModelStore> {
  const pool = createPool(database);
  t.after(() => pool.end());
  await migrateClassifier(pool);
  return new PgModelStore(pool);
}

test('two runtimes: untrained inbox, the activated model, learns in order and exactly once', async (t) => {
  const database = testSchema(t);
  const [a, b] = [await runtime(t, database), await runtime(t, database)];
  const store = await storeFor(t, database);
  const spam = model.heldOut.spam[0]!.raw;

  // No model yet: an untrained engine, where only the hand-written rules vote; that never junks.
  for (const rt of [a, b]) {
    assert.equal(rt.modelVersion, null);
    assert.equal(rt.connected, true);
    for (const m of [spam, model.heldOut.ham[0]!.raw]) {
      const r = rt.classify(m);
      assert.equal(r.verdict, 'inbox');
      assert.deepEqual(r.components.filter((c) => c.voted).map((c) => c.name), ['membranes']);
    }
  }

  const version = await store.saveModel(model.blob, { lastEventId: 0n, activate: true, note: 'test' });
  await waitFor('both runtimes load the model', () => a.modelVersion === version && b.modelVersion === version);
  for (const rt of [a, b]) {
    assert.ok(rt.classify(spam).score > 0.5, 'the trained model calls held-out spam spam');
    assert.ok(rt.classify(model.heldOut.ham[0]!.raw).score < 0.5, 'and held-out ham ham');
  }

  // Hard ham the model never saw scores in the middle, where one learn moves it visibly.
  const msg = model.heldOut.hard.map((m) => m.raw).sort((x, y) => Math.abs(a.classify(x).score - 0.5) - Math.abs(a.classify(y).score - 0.5))[0]!;
  const before = a.classify(msg).score;
  assert.equal(b.classify(msg).score, before);
  const nham = a.current.parts.bayes!.nham;

  // Learned as ham (a rescued false positive) through a's learner; a applies it only when its
  // subscriber delivers it, like b.
  const learned = await a.learner().learn(msg, 'ham', {});
  assert.equal(learned.status, 'learned');
  const id = BigInt(learned.eventId!);
  const ms = await waitFor('both runtimes apply the learn', () => a.lastEventId === id && b.lastEventId === id);
  assert.ok(ms < 5_000);
  const afterHam = a.classify(msg).score;
  assert.ok(afterHam < before, `learning ham lowers the score: ${before} → ${afterHam}`);
  assert.equal(b.classify(msg).score, afterHam, 'both processes hold the same model');
  assert.ok(Math.abs(a.current.parts.bayes!.nham - (nham + 1)) < 0.2, 'one more ham message in the Bayes counts');
  assert.deepEqual([a.stats.applied, b.stats.applied], [1, 1]);

  // The same learn again: a duplicate, no event, nothing applied.
  assert.equal((await b.learner().learn(msg, 'ham', {})).status, 'duplicate');
  await Promise.all([a.sync(), b.sync()]);
  assert.equal(a.classify(msg).score, afterHam);
  assert.deepEqual([a.stats.applied, b.stats.applied], [1, 1]);

  // Relearned as spam: the ham learn is taken back, the spam learn added.
  const nspam = a.current.parts.bayes!.nspam;
  const re = await b.learner().learn(msg, 'spam', {});
  assert.equal(re.status, 'relearned');
  const reId = BigInt(re.eventId!);
  await waitFor('both runtimes apply the relearn', () => a.lastEventId === reId && b.lastEventId === reId);
  const afterSpam = a.classify(msg).score;
  assert.ok(afterSpam > afterHam, `relearning spam raises the score: ${afterHam} → ${afterSpam}`);
  assert.equal(b.classify(msg).score, afterSpam);
  const bayes = a.current.parts.bayes!;
  assert.ok(Math.abs(bayes.nham - nham) < 0.2, `the ham count is back where it was (${nham} → ${bayes.nham})`);
  assert.ok(Math.abs(bayes.nspam - (nspam + 1)) < 0.2, `one more spam message (${nspam} → ${bayes.nspam})`);

  // A per-user learn leaves the global model alone.
  assert.equal((await a.learner().learn(model.heldOut.ham[1]!.raw, 'spam', { user: 'alice' })).status, 'learned');
  await waitFor('the per-user event is seen', () => a.stats.otherScopes === 1 && b.stats.otherScopes === 1);
  assert.equal(a.classify(msg).score, afterSpam);
  assert.equal(a.stats.applied, 2);
});

test('snapshot: a new active version with every learn, so the next start replays nothing', async (t) => {
  const database = testSchema(t);
  const store = await storeFor(t, database);
  const v1 = await store.saveModel(model.blob, { lastEventId: 0n, activate: true });
  const a = await runtime(t, database);
  const msg = model.heldOut.hard[0]!.raw;
  const learned = await a.learner().learn(msg, 'spam', {});
  await waitFor('the learn is applied', () => a.lastEventId === BigInt(learned.eventId!));
  const score = a.classify(msg).score;

  const snap = await a.snapshot('compaction test');
  assert.ok(snap.version > v1);
  assert.equal(snap.lastEventId, BigInt(learned.eventId!));
  assert.equal(await store.pruneEvents(snap.lastEventId + 1n), 1);
  const versions = await store.listVersions();
  assert.deepEqual(versions.map((v) => [v.version, v.active, v.note]), [[snap.version, true, 'compaction test'], [v1, false, null]]);

  const pool = createPool(database, { max: 2 });
  t.after(() => pool.end());
  const loaded = await ClassifierRuntime.load({ cfg: configFor(database), pool, log: silentLogger });
  assert.equal(loaded.modelVersion, snap.version);
  assert.equal(loaded.stats.applied, 0, 'nothing left to replay');
  assert.equal(loaded.classify(msg).score, score, 'the snapshot holds the learn');
});

test('PostgreSQL unreachable at start: the runtime starts, scores everything inbox, and reports it', async (t) => {
  const database = { url: `postgres://postgres@127.0.0.1:${await freePort()}/postgres`, schema: 'ceerion_down' };
  const started = Date.now();
  const rt = await runtime(t, database);
  assert.ok(Date.now() - started < 5_000, 'start does not wait for the database');
  assert.equal(rt.connected, false);
  assert.equal(rt.modelVersion, null);
  assert.equal(rt.classify(model.heldOut.spam[0]!.raw).verdict, 'inbox');
});

test('PostgreSQL back after a down start: migrations run, then the model arrives', async (t) => {
  const server = await startPostgres();
  t.after(() => server.close());
  await server.stop();
  const database = { url: server.url, schema: 'ceerion' };
  const rt = await runtime(t, database);
  assert.equal(rt.connected, false);
  await server.start();
  await waitFor('the runtime reconnects', () => rt.connected, 15_000);
  // The tables exist now only because the subscriber migrated on reconnect.
  const pool = createPool(database);
  t.after(() => pool.end());
  const version = await new PgModelStore(pool).saveModel(model.blob, { lastEventId: 0n, activate: true });
  await waitFor('the model loads', () => rt.modelVersion === version);
  assert.ok(rt.classify(model.heldOut.spam[0]!.raw).score > 0.5);
});
