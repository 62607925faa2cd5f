/**
 * Checks that read the body: chunks arrive in order and in full, each body call has the check's
 * deadline, and a check that fails on the body gives its failure verdict at end of message.
 * Also: a QUIT_NC connection gets fresh message refs.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Check } from '../../milter/checks/types.ts';
import { LOCAL_CONNECT, MilterClient, type MessageSpec } from '../../milter/client/milter-client.ts';
import type { Modification } from '../../milter/protocol/responses.ts';
import { ready, setup } from '../helpers/session.ts';

async function client(t: TestContext, checks: Check[]): Promise<MilterClient> {
  const { connect } = await setup(t, { checks });
  return ready(connect);
}

const spec = (body: Buffer | string): MessageSpec => ({
  from: '<alice@example.org>',
  rcpts: ['<bob@example.net>'],
  headers: [['Subject', 'body test']],
  body,
  macros: { eom: [['i', 'QBODY1']] },
});

const traceRef = (mods: Modification[]) => {
  const ins = mods.find((m) => m.kind === 'insheader');
  assert.ok(ins && 'value' in ins, 'trace header inserted');
  return /ref=([\w-]+\.\d+)/.exec(ins.value)?.[1];
};

test('a body-reading check gets every chunk of a 200 KB body, in order', async (t) => {
  const chunks: Buffer[] = [];
  const reader: Check = { name: 'reader', wantsBody: true, body: (_ctx, chunk) => void chunks.push(Buffer.from(chunk)) };
  const c = await client(t, [reader]);
  assert.equal(c.skips('body'), false, 'body negotiated because a check reads it');
  const body = Buffer.alloc(200_000, 0);
  for (let i = 0; i < body.length; i++) body[i] = (i * 31) % 251;
  const r = await c.message(spec(body));
  assert.equal(r.verdict.kind, 'accept');
  assert.equal(chunks.length, Math.ceil(body.length / 65535));
  assert.ok(Buffer.concat(chunks).equals(body));
});

test('a body check past its deadline is abandoned; its failure verdict answers at end of message', async (t) => {
  let calls = 0;
  let endCalled = false;
  const stuck: Check = {
    name: 'stuck-body',
    wantsBody: true,
    timeoutMs: 50,
    async body(ctx) {
      calls++;
      await sleep(5000, undefined, { signal: ctx.signal }).catch(() => undefined);
    },
    endOfMessage: () => void (endCalled = true),
  };
  const c = await client(t, [stuck]);
  const started = Date.now();
  const r = await c.message(spec(Buffer.alloc(150_000, 0x61)));
  assert.ok(Date.now() - started < 3000, 'the stuck body hook did not hold the message');
  assert.equal(calls, 1, 'a failed check is not called for the next chunks');
  assert.equal(endCalled, false, 'nor at end of message');
  assert.equal(r.verdict.kind, 'replycode');
  assert.match((r.verdict as { reply: string }).reply, /^451 4\.7\.1 Temporary failure in the stuck-body check/);
});

test('a body check that throws, configured onError accept, is ignored and the message accepted', async (t) => {
  const broken: Check = {
    name: 'broken-body',
    wantsBody: true,
    onError: 'accept',
    body() {
      throw new Error('boom');
    },
  };
  const c = await client(t, [broken]);
  const r = await c.message(spec('hello\r\n'));
  assert.equal(r.verdict.kind, 'accept');
  assert.ok(traceRef(r.modifications));
});

test('after QUIT_NC the new SMTP connection gets its own message refs', async (t) => {
  const c = await client(t, []);
  const first = traceRef((await c.message(spec('one\r\n'))).modifications);
  c.send({ kind: 'quitNewConnection' });
  await c.connectStage(LOCAL_CONNECT);
  const second = traceRef((await c.message(spec('two\r\n'))).modifications);
  assert.match(first!, /^[0-9a-f]{10}\.1$/);
  assert.match(second!, /^[0-9a-f]{10}-1\.1$/);
  assert.notEqual(first, second);
});
