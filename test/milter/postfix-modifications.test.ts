/**
 * Every end-of-message modification, applied by a real Postfix: ADDHEADER, INSHEADER, CHGHEADER
 * (change and delete), ADDRCPT, DELRCPT, CHGFROM reach the sink as asked; QUARANTINE puts the
 * message on Postfix's hold queue instead of delivering it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Check } from '../../milter/checks/types.ts';
import { Action } from '../../milter/protocol/constants.ts';
import { sendMail } from '../harness/smtp-client.ts';
import { startPostfixStack } from '../helpers/postfix-stack.ts';

const exec = promisify(execFile);

const rewrite: Check = {
  name: 'rewrite',
  actions: Action.ADDHDRS | Action.CHGHDRS | Action.ADDRCPT | Action.DELRCPT | Action.CHGFROM | Action.QUARANTINE,
  wantsHeaders: true,
  endOfMessage(ctx) {
    const subject = ctx.message.headers.find((h) => h.name === 'Subject')?.value ?? '';
    if (subject.includes('hold me')) return { modifications: [{ kind: 'quarantine', reason: 'held by test check' }] };
    return {
      modifications: [
        { kind: 'addheader', name: 'X-Added', value: 'appended\n\tand folded' },
        { kind: 'insheader', index: 0, name: 'X-Inserted', value: 'on top' },
        { kind: 'chgheader', index: 1, name: 'X-Change-Me', value: 'changed' },
        { kind: 'chgheader', index: 2, name: 'X-Delete-Me', value: '' },
        { kind: 'addrcpt', rcpt: '<carol@example.org>' },
        { kind: 'delrcpt', rcpt: '<bob@example.org>' },
        { kind: 'chgfrom', from: '<bounces@example.com>' },
      ],
    };
  },
};

test('Postfix applies every modification our milter sends', async (t) => {
  const { sink, pf } = await startPostfixStack(t, [rewrite]);

  const data =
    'From: alice@example.com\nTo: bob@example.org, dave@example.org\nSubject: rewrite me\n' +
    'X-Change-Me: original\nX-Delete-Me: keep (first)\nX-Delete-Me: drop (second)\nMessage-ID: <mods@example.com>\n\nbody\n';
  const r = await sendMail({ port: pf.smtpPort, from: 'alice@example.com', to: ['bob@example.org', 'dave@example.org'], data });
  assert.equal(r.code, 250, r.text);

  const [m] = await sink.waitFor(1, 20_000);
  const head = m!.data.split('\r\n\r\n')[0]!;
  assert.equal(m!.from, 'bounces@example.com', 'CHGFROM changed the envelope sender');
  assert.deepEqual([...m!.rcpts].sort(), ['carol@example.org', 'dave@example.org'], 'ADDRCPT added, DELRCPT removed');
  // Both went to index 0; the trace check runs last, so its header ends up on top, then ours,
  // both above Postfix's own Received header.
  assert.match(head, /^X-Ceerion-Milter: [^]*?\r\nX-Inserted: on top\r\nReceived: /, 'INSHEADER 0 goes above Received');
  assert.match(head, /\r\nX-Added: appended\r\n\tand folded$/, 'ADDHEADER appends, folding arrives as CRLF + tab');
  assert.match(head, /\r\nX-Change-Me: changed\r\n/);
  assert.doesNotMatch(head, /original/);
  assert.match(head, /\r\nX-Delete-Me: keep \(first\)\r\n/);
  assert.doesNotMatch(head, /drop \(second\)/, 'CHGHEADER with an empty value deleted the second copy only');
});

test('QUARANTINE puts the message on hold: accepted, not delivered, and recorded in the trace header', async (t) => {
  const { sink, pf } = await startPostfixStack(t, [rewrite]);

  const r = await sendMail({ port: pf.smtpPort, from: 'alice@example.com', to: ['bob@example.org'], data: 'Subject: please hold me\n\nbody\n' });
  assert.equal(r.code, 250, r.text);
  const queueId = /queued as (\w+)/.exec(r.text)?.[1];
  assert.ok(queueId, r.text);
  // Postfix logs the hold (it does not log the quarantine reason text).
  await pf.waitForLog(new RegExp(`${queueId}: milter-hold: END-OF-MESSAGE .*milter triggers HOLD action`));
  const held = await readdir(path.join(pf.dir, 'spool', 'hold'));
  assert.deepEqual(held, [queueId], 'the message is on the hold queue');
  const { stdout } = await exec('postcat', ['-c', pf.configDir, '-h', '-q', queueId]);
  assert.match(stdout, /^X-Ceerion-Milter: ceerion-milter .*verdict=quarantine;/m);
  await sleep(500);
  assert.equal(sink.messages.length, 0, 'a held message is not delivered');
});
