/**
 * docs/runbooks/rate-limits.md, run for real against a PostgreSQL schema of its own: each tested
 * block in order, with the effective policy read back after each step.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup } from './policy-env.ts';
import { runbookBlocks, runOk, type Block } from './runbook.ts';

test('rate-limits.md: show, raise a domain\'s limits, change _default, undo', { timeout: 120_000 }, async (t) => {
  const RUNBOOK = 'rate-limits.md';
  const blocks = runbookBlocks(RUNBOOK);
  assert.equal(blocks.length, 4);
  const [show1, raise, defaults, undo] = blocks as [Block, Block, Block, Block];
  const { env, show } = setup(t);

  const before = await runOk(RUNBOOK, show1, env);
  assert.match(before.stdout, /\| clientIp +\| 100\/1h +\| config +\|/);

  await runOk(RUNBOOK, raise, env);
  const raised = await show('example.org');
  assert.deepEqual(raised.policy.limits.clientIp, { count: 500, periodSeconds: 3600 });
  assert.deepEqual(raised.policy.limits.saslUser, { count: 5000, periodSeconds: 3600 });
  assert.equal(raised.from.limits.clientIp, 'domain');
  assert.equal(raised.row?.note, 'bulk newsletter, ticket 4711');

  const listed = await runOk(RUNBOOK, defaults, env);
  assert.match(listed.stdout, /\| _default +\| sender=200\/1h/);
  assert.deepEqual((await show('other.example')).policy.limits.sender, { count: 200, periodSeconds: 3600 });

  const undone = await runOk(RUNBOOK, undo, env);
  assert.match(undone.stdout, /\| clientIp +\| 100\/1h +\| config +\|/);
  const after = await show('example.org');
  assert.equal(after.row, null);
  assert.equal(after.from.limits.sender, 'config');
});

