/**
 * The dkim-sign check in a real milter session over a socket, driven by our MilterClient as
 * Postfix would drive it. The signed message (the INSHEADERs applied as Postfix applies them) is
 * checked by mailauth's verifier against the keys' published TXT records.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { MessageSpec, MilterClient } from '../../../milter/client/milter-client.ts';
import { dkimSignCheck } from '../../../milter/checks/dkim-sign.ts';
import { Cmd, Family, Proto } from '../../../milter/protocol/constants.ts';
import type { Check } from '../../../milter/checks/types.ts';
import type { Modification } from '../../../milter/protocol/responses.ts';
import { ready, setup } from '../../helpers/session.ts';
import { applyInserts, fixture, signatureValues, signedNames, tags, testKeys, toSpec, verify, type TestKeys } from '../../fixtures/dkim/mail.ts';

const AUTH = { mail: [['{auth_authen}', 'alice'] as [string, string]] };

async function milter(t: TestContext, keys: TestKeys) {
  const { connect } = await setup(t, { checks: [dkimSignCheck(keys.config, { keys: keys.store })] });
  return connect;
}

async function send(c: MilterClient, raw: string, over: Partial<MessageSpec> = {}) {
  const r = await c.message(toSpec(raw, over));
  assert.equal(r.stage, 'eom');
  assert.equal(r.verdict.kind, 'accept');
  return r.modifications;
}

/** Our part of the trace header: `dkim-sign=…`. */
function summary(mods: Modification[]): string {
  const trace = mods.find((m) => m.kind === 'insheader' && m.name === 'X-Ceerion-Milter');
  assert.ok(trace && trace.kind === 'insheader');
  // Without the timing the trace header adds after each result.
  return /dkim-sign=([^;]*)/.exec(trace.value.replace(/\n\t/g, ' '))?.[1]?.replace(/ \(\d+\.\d ms\)$/, '') ?? '(none)';
}

describe('authenticated submission', () => {
  test('signed with RSA and Ed25519, both verify, oversigned, folded for Postfix, on top', async (t) => {
    const keys = testKeys(t);
    const c = await ready(await milter(t, keys)); // 192.0.2.10: not in networks, so only AUTH counts
    const raw = fixture('outbound.eml');
    const mods = await send(c, raw, { macros: AUTH });

    const sigs = signatureValues(mods);
    assert.equal(sigs.length, 2);
    for (const m of mods.filter((x) => x.kind === 'insheader' && x.name === 'DKIM-Signature')) {
      assert.equal(m.kind === 'insheader' && m.index, 0, 'inserted at the very top');
    }
    for (const v of sigs) {
      assert.doesNotMatch(v, /\r/, 'milter folding is a bare \\n');
      assert.match(v, /\n\t/, 'folded with \\n + tab');
      assert.ok(v.split('\n').every((line) => line.length <= 80), v);
      const tag = tags(v);
      assert.equal(tag.d, 'example.com');
      assert.equal(tag.c, 'relaxed/relaxed');
      const names = signedNames(v);
      const count = (n: string) => names.filter((x) => x === n).length;
      // One From, one Subject, one To in the message: each listed twice (the extra is the null field).
      assert.equal(count('from'), 2, tag.h);
      assert.equal(count('subject'), 2, tag.h);
      assert.equal(count('to'), 2, tag.h);
      for (const n of ['date', 'cc', 'message-id', 'mime-version', 'content-type']) assert.equal(count(n), 1, `${n} in ${tag.h}`);
      assert.equal(count('x-mailer'), 0, 'fields outside the list are not signed');
    }
    // Inserted in reverse, so that after Postfix's inserts at index 0 the RSA signature is the top one.
    assert.deepEqual(sigs.map((v) => [tags(v).a, tags(v).s]), [['ed25519-sha256', 'ceerion-ed25519'], ['rsa-sha256', 'ceerion']]);

    const signed = applyInserts(raw, mods);
    assert.match(signed, /^DKIM-Signature: v=1; a=rsa-sha256;[^]*?\r\nDKIM-Signature: v=1; a=ed25519-sha256;[^]*?\r\nFrom: /);
    const results = await verify(signed, keys.zone);
    assert.deepEqual(results.map((r) => [r.algorithm, r.domain, r.result]), [
      ['rsa-sha256', 'example.com', 'pass'],
      ['ed25519-sha256', 'example.com', 'pass'],
    ]);
    assert.equal(summary(mods), 'signed example.com s=ceerion rsa+ed25519');
  });

  test('tampering after signing breaks both signatures; an unsigned field does not', async (t) => {
    const keys = testKeys(t);
    const c = await ready(await milter(t, keys));
    const signed = applyInserts(fixture('outbound.eml'), await send(c, fixture('outbound.eml'), { macros: AUTH }));
    const results = async (s: string) => (await verify(s, keys.zone)).map((r) => `${r.result}${r.comment ? ` (${r.comment})` : ''}`);

    // mailauth reports a body hash mismatch as neutral (RFC 6376 6.3 leaves the label to the
    // verifier; OpenDKIM says fail), a header change as fail: both are "not pass".
    const bodyChanged = ['neutral (body hash did not verify)', 'neutral (body hash did not verify)'];
    const headerChanged = ['fail (bad signature)', 'fail (bad signature)'];
    assert.deepEqual(await results(signed), ['pass', 'pass']);
    assert.deepEqual(await results(signed.replace('attached below', 'attached BELOW')), bodyChanged, 'body changed');
    assert.deepEqual(await results(signed.replace(/\r\n$/, '\r\nP.S. appended\r\n')), bodyChanged, 'body appended');
    assert.deepEqual(await results(signed.replace('Quarterly_report', 'Quarterly_invoice')), headerChanged, 'Subject changed');
    const extraFrom = signed.replace('\r\nFrom: ', '\r\nFrom: mallory@evil.example\r\nFrom: ');
    assert.deepEqual(await results(extraFrom), headerChanged, 'a From added after signing (oversigning)');
    const extraSubject = signed.replace('\r\n\r\n', '\r\nSubject: second\r\n\r\n');
    assert.deepEqual(await results(extraSubject), headerChanged, 'a Subject appended');
    assert.deepEqual(await results(signed.replace('hand-written fixture', 'rewritten')), ['pass', 'pass'], 'X-Mailer is not signed');
    assert.deepEqual(await results(signed.replace('Hi Bob,   \r\n', 'Hi Bob,\r\n')), ['pass', 'pass'], 'relaxed body: trailing blanks');
  });

  test('a body of many chunks streams through the signer; an empty body signs too', async (t) => {
    const keys = testKeys(t);
    const c = await ready(await milter(t, keys));
    const line = 'The quick brown fox jumps over the lazy dog. 0123456789 0123456789\r\n';
    const big = `From: alice@example.com\r\nTo: bob@example.org\r\nSubject: big\r\n\r\n${line.repeat(40_000)}`;
    assert.ok(big.length > 2_500_000, 'about 40 body chunks of 64 KiB');
    const bigSigned = applyInserts(big, await send(c, big, { macros: AUTH }));
    assert.deepEqual((await verify(bigSigned, keys.zone)).map((r) => r.result), ['pass', 'pass']);

    const empty = 'From: alice@example.com\r\nTo: bob@example.org\r\nSubject: empty\r\n\r\n';
    const emptySigned = applyInserts(empty, await send(c, empty, { macros: AUTH }));
    assert.deepEqual((await verify(emptySigned, keys.zone)).map((r) => r.result), ['pass', 'pass']);
  });
});

test('a message aborted mid-body releases its signer; the next one on the connection signs', async (t) => {
  const keys = testKeys(t);
  const check = dkimSignCheck(keys.config, { keys: keys.store });
  const released: Array<[string, unknown]> = [];
  const watched: Check = { ...check, abort: (m) => (released.push([m.messageId, m.checkState.get('dkim-sign')]), check.abort!(m)) };
  const { connect } = await setup(t, { checks: [watched] });
  const c = await ready(connect);
  const spec = toSpec(fixture('outbound.eml'), { macros: AUTH });
  c.macros(Cmd.MAIL, spec.macros!.mail);
  await c.stage('mail', { kind: 'mail', sender: spec.from, args: [] });
  await c.stage('rcpt', { kind: 'rcpt', recipient: spec.rcpts[0]!, args: [] });
  const lead = (c.negotiated!.protocol & Proto.HDR_LEADSPC) !== 0 ? ' ' : '';
  for (const [name, value] of spec.headers) await c.stage('header', { kind: 'header', name, value: lead + value });
  await c.stage('eoh', { kind: 'eoh' });
  await c.stage('body', { kind: 'body', chunk: Buffer.from('half a body\r\n') });
  c.abort();

  const mods = await send(c, fixture('outbound.eml'), { macros: AUTH });
  const [messageId, aborted] = released[0] ?? [];
  assert.match(messageId ?? '', /\.1$/, 'abort reached the check for the first message');
  const state = aborted as { kind: string; stream: { stream: { destroyed: boolean } }; signer: { writable: { destroyed: boolean } } };
  assert.equal(state.kind, 'sign');
  assert.ok(state.stream.stream.destroyed && state.signer.writable.destroyed, 'stream and signer destroyed');
  assert.deepEqual((await verify(applyInserts(fixture('outbound.eml'), mods), keys.zone)).map((r) => r.result), ['pass', 'pass']);
});

describe('who is signed', () => {
  const connectAs = async (c: MilterClient, family: (typeof Family)[keyof typeof Family], address: string) => {
    await c.negotiate();
    await c.connectStage({ hostname: 'client.example', family, port: family === Family.INET ? 40000 : 0, address });
    await c.helo('client.example');
    return c;
  };

  test('an external client that did not authenticate is not signed', async (t) => {
    const keys = testKeys(t);
    const c = await ready(await milter(t, keys));
    const mods = await send(c, fixture('outbound.eml'));
    assert.deepEqual(signatureValues(mods), []);
    assert.equal(summary(mods), 'skipped (not authenticated)');
  });

  test('clients in networks (loopback by default) and local submission are signed without AUTH', async (t) => {
    const keys = testKeys(t, ['example.com'], { config: { networks: ['127.0.0.0/8', '::1/128', '198.51.100.0/24'] } });
    const connect = await milter(t, keys);
    const clients: Array<[(typeof Family)[keyof typeof Family], string]> = [
      [Family.INET, '127.0.0.1'],
      [Family.INET, '198.51.100.77'],
      [Family.INET6, '::1'],
      [Family.INET6, '::ffff:127.0.0.1'],
      [Family.UNIX, '/var/spool/postfix/public/pickup'],
    ];
    for (const [family, address] of clients) {
      const c = await connectAs(await connect(), family, address);
      const mods = await send(c, fixture('outbound.eml'));
      assert.equal(summary(mods), 'signed example.com s=ceerion rsa+ed25519', address);
      const results = await verify(applyInserts(fixture('outbound.eml'), mods), keys.zone);
      assert.deepEqual(results.map((r) => r.result), ['pass', 'pass'], address);
    }
    const outside = await connectAs(await connect(), Family.INET, '203.0.113.5');
    assert.equal(summary(await send(outside, fixture('outbound.eml'))), 'skipped (not authenticated)');
  });

  test('no key for the From domain, or no single From: not signed, and the summary says why', async (t) => {
    const keys = testKeys(t);
    const c = await ready(await milter(t, keys));
    const raw = fixture('outbound.eml');
    const cases: Array<[string, string]> = [
      [raw.replace('alice@example.com', 'alice@example.net'), 'skipped (no key for example.net)'],
      [raw.replace('\r\nTo: ', '\r\nFrom: bob@example.com\r\nTo: '), 'skipped (2 From headers)'],
      [raw.replace(/^From: .*\r\n/, ''), 'skipped (no From header)'],
      [raw.replace('<alice@example.com>', '<alice@example.com>, carol@example.com'), 'skipped (From has 2 addresses)'],
    ];
    for (const [message, why] of cases) {
      const mods = await send(c, message, { macros: AUTH });
      assert.deepEqual(signatureValues(mods), [], why);
      assert.equal(summary(mods), why);
    }
    // The same connection signs again once the From is ours: nothing leaked from the skipped messages.
    assert.equal(signatureValues(await send(c, raw, { macros: AUTH })).length, 2);
  });

  test('only the configured algorithms sign: rsa alone gives one signature', async (t) => {
    const keys = testKeys(t, ['example.com'], { config: { algorithms: ['rsa'] } });
    const c = await ready(await milter(t, keys));
    const mods = await send(c, fixture('outbound.eml'), { macros: AUTH });
    assert.deepEqual(signatureValues(mods).map((v) => tags(v).a), ['rsa-sha256']);
    assert.equal(summary(mods), 'signed example.com s=ceerion rsa');
  });
});
