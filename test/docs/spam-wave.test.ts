/**
 * docs/runbooks/spam-wave.md, run for real against a PostgreSQL schema of its own: the samples are
 * learned into the classifier's event log (idempotently), the limits tightened and restored.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadSpamAssassin } from '../../classifier/eval/corpus.ts';
import { setup } from './policy-env.ts';
import { runbookBlocks, runOk, type Block } from './runbook.ts';

test('spam-wave.md: learn the samples as spam, tighten limits and greylist, then undo', { timeout: 150_000 }, async (t) => {
  const RUNBOOK = 'spam-wave.md';
  const blocks = runbookBlocks(RUNBOOK);
  assert.equal(blocks.length, 3);
  const [learn, tighten, undo] = blocks as [Block, Block, Block];
  const { env, show, query } = setup(t);
  const samples = mkdtempSync(path.join(os.tmpdir(), 'ceerion-runbook-spam-'));
  t.after(() => rmSync(samples, { recursive: true, force: true }));
  const spam = await loadSpamAssassin({ groups: ['spam-1'], limitPerGroup: 5 });
  spam.forEach((m, i) => writeFileSync(path.join(samples, `${i}.eml`), m.raw));

  const learned = await runOk(RUNBOOK, learn, { ...env, SAMPLES: samples });
  assert.equal(learned.stdout.match(/learned/g)?.length, 5, learned.stdout);
  const events = await query(`SELECT count(*)::int AS n FROM SCHEMA.classifier_events`);
  assert.equal(events[0]!.n, 5);
  // Learning is idempotent per message: the same samples again change nothing.
  const again = await runOk(RUNBOOK, learn, { ...env, SAMPLES: samples });
  assert.equal(again.stdout.match(/duplicate/g)?.length, 5, again.stdout);

  await runOk(RUNBOOK, tighten, env);
  const tight = await show('example.org');
  assert.deepEqual(tight.policy.limits.clientIp, { count: 20, periodSeconds: 3600 });
  assert.equal(tight.from.limits.clientIp, '_default');
  assert.equal(tight.policy.greylist.enabled, true);

  await runOk(RUNBOOK, undo, env);
  const back = await show('example.org');
  assert.equal(back.from.limits.clientIp, 'config');
  assert.equal(back.policy.greylist.enabled, false);
  const defaultRow = await query(`SELECT note FROM SCHEMA.policy_domains WHERE domain = '_default'`);
  assert.equal(defaultRow[0]?.note ?? null, null);
});
