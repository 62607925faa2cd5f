// The smoke test's pure parts: the SMTP reply parser (every chunking), the messages it sends and
// what it looks for in stored copies, the Junk-band sample choice, the report table, check
// selection, client addresses, and reading the stack's files.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'node:test';
import { configSchema } from '../../../core/config/schema.ts';
import { loadStack, notTestable, randomTestNetAddress, SmokeSetupError } from '../../../stack/smoke/context.ts';
import { junkBand, pickCandidates } from '../../../stack/smoke/checks-spam.ts';
import { composeEicar, dkimSignatureFor, EICAR, headerFields, ourAuthResults, resultSummary } from '../../../stack/smoke/message.ts';
import { renderResults } from '../../../stack/smoke/render.ts';
import { ALL_CHECKS, selectChecks } from '../../../stack/smoke/runner.ts';
import { encodeData, ReplyParser } from '../../../stack/smoke/smtp.ts';
import { queueIdOf } from '../../../stack/smoke/types.ts';
import type { StackState } from '../../../stack/contracts.ts';

test('reply parser: multi-line replies, any chunking', () => {
  const wire = '220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 XCLIENT NAME ADDR\r\n450 4.7.1 <a@b>: Recipient address rejected: Rate limit exceeded\r\n';
  const expected = [
    { code: 220, text: 'mx ESMTP' },
    { code: 250, text: 'mx\nPIPELINING\nXCLIENT NAME ADDR' },
    { code: 450, text: '4.7.1 <a@b>: Recipient address rejected: Rate limit exceeded' },
  ];
  for (let cut = 0; cut <= wire.length; cut++) {
    const p = new ReplyParser();
    assert.deepEqual([...p.push(wire.slice(0, cut)), ...p.push(wire.slice(cut))], expected, `cut at ${cut}`);
  }
  assert.throws(() => new ReplyParser().push('garbage\r\n'), /malformed/);
});

test('DATA encoding: CRLF, dot-stuffing, terminator', () => {
  assert.equal(encodeData('a\n.b\n..c'), 'a\r\n..b\r\n...c\r\n.\r\n');
  assert.equal(encodeData('x\r\n'), 'x\r\n.\r\n');
});

test('stored-message checks: DKIM d=, our A-R by the trace header’s host, queue ids', () => {
  const raw = [
    'Authentication-Results: evil.example; spf=pass',
    'X-Ceerion-Milter: ceerion-milter 0.1.0 on mx.ceerion.test; verdict=accept; queue-id=ABC123',
    'Authentication-Results: mx.ceerion.test;',
    '\tspf=none smtp.mailfrom=x; dkim=none; dmarc=none',
    'DKIM-Signature: v=1; a=rsa-sha256; d=other.test; s=s1; b=x',
    'DKIM-Signature: v=1; a=rsa-sha256; d=Ceerion.Test;',
    ' s=ceerion; b=ab cd',
    'Subject: hi',
    '',
    'Authentication-Results: body.example; spf=pass',
  ].join('\r\n');
  assert.equal(headerFields(raw).length, 6);
  assert.deepEqual(dkimSignatureFor(raw, 'ceerion.test'), { v: '1', a: 'rsa-sha256', d: 'Ceerion.Test', s: 'ceerion', b: 'abcd' });
  assert.equal(dkimSignatureFor(raw, 'nope.test'), undefined);
  const ar = ourAuthResults(raw);
  assert.equal(ar?.verified, true);
  assert.equal(resultSummary(ar!.value), 'spf=none dkim=none dmarc=none');
  // Without our A-R, a forged one naming another host does not count.
  assert.equal(ourAuthResults(raw.replace('Authentication-Results: mx.ceerion.test;', 'X-Other: mx.ceerion.test;')), undefined);
  assert.equal(ourAuthResults('Authentication-Results: h; spf=pass\r\n\r\n')?.verified, false);
  assert.equal(queueIdOf('2.0.0 Ok: queued as 4XyZ1Q9AbC'), '4XyZ1Q9AbC');
  const eicar = composeEicar({ from: 'a@b.example', to: 'test@ceerion.test', subject: 's', domain: 'ceerion.test' });
  assert.ok(eicar.includes(Buffer.from(EICAR, 'latin1').toString('base64')));
  assert.match(eicar, /Content-Type: multipart\/mixed; boundary="b[0-9a-f]+"/);
});

test('spam sample choice: inside the Junk band, nearest its middle; reject off widens the band', () => {
  const cfg = configSchema.parse({}).classifier;
  const band = junkBand(cfg);
  assert.deepEqual(band, { low: cfg.thresholds.junk, high: cfg.thresholds.reject });
  const scored = [0.1, 0.31, 0.5, 0.56, 0.78, 0.8, 0.99].map((score, i) => ({ id: `s${i}`, score, text: '' }));
  assert.deepEqual(pickCandidates(scored, band, 3).map((c) => c.score), [0.56, 0.5, 0.78]);
  const noReject = junkBand({ ...cfg, milter: { ...cfg.milter, reject: false } });
  assert.ok(pickCandidates(scored, noReject, 10).some((c) => c.score === 0.99));
});

test('report table, check selection, TEST-NET addresses', () => {
  const out = renderResults(
    [
      { id: 'submit', title: 'submit with auth (DKIM-signed)', ok: true, detail: 'ok', ms: 1234 },
      { id: 'eicar', title: 'EICAR → rejected', ok: false, detail: 'x'.repeat(300), ms: 12 },
    ],
    2000,
  );
  assert.match(out, /\| 1 +\| submit with auth \(DKIM-signed\) \| pass +\| 1\.2 s +\| ok/);
  assert.match(out, /\| FAIL +\| 12 ms/);
  assert.match(out, /x…/);
  assert.match(out, /1 of 2 checks FAILED/);
  assert.equal(selectChecks(undefined), ALL_CHECKS);
  assert.deepEqual(selectChecks('imap, submit').map((c) => c.id), ['submit', 'imap']);
  assert.throws(() => selectChecks('submit,nope'), /unknown check nope/);
  const used = new Set<string>();
  for (let i = 0; i < 300; i++) assert.match(randomTestNetAddress(used), /^(192\.0\.2|198\.51\.100|203\.0\.113)\.([1-9]\d?|1\d\d|2[0-4]\d|25[0-4])$/);
  assert.equal(used.size, 300, 'never the same address twice in a run');
});

test('stack files: missing, not running, not ready', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-smoke-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await assert.rejects(loadStack(dir), (e: Error) => e instanceof SmokeSetupError && /is the stack running/.test(e.message));
  await mkdir(path.join(dir, 'run'));
  await writeFile(path.join(dir, 'run', 'stack.json'), '{');
  await assert.rejects(loadStack(dir), /not valid JSON/);
  const state = { version: 1, supervisorPid: 1234, ready: false, stopping: false, services: [{ name: 'postfix', state: 'starting' }] } as unknown as StackState;
  assert.match(notTestable(state, () => false)!, /not running/);
  assert.match(notTestable(state, () => true)!, /not ready yet \(postfix starting\)/);
  assert.equal(notTestable({ ...state, ready: true }, () => true), undefined);
});
