/**
 * The antivirus check through a real milter session (MilterClient on a socket) against a real,
 * private clamd: EICAR refused with 554 5.7.1, clean accepted with `antivirus=clean` in the trace
 * header, clamd down or silent turned into the configured failure verdict, the size cap, ABORT,
 * and a 10 MB message streamed without the milter's memory growing with it.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../../core/log.ts';
import { antivirusCheck } from '../../../milter/checks/antivirus.ts';
import type { Modification, Response } from '../../../milter/protocol/responses.ts';
import { EICAR, SIGNATURE_NAME, eicarAttachment, eicarPlain } from '../../fixtures/clamav/eicar.ts';
import { startClamd, type ClamdInstance } from '../../harness/clamd.ts';
import { freePort } from '../../harness/postfix.ts';
import { messageSpec, ready, setup, type StartOptions } from '../../helpers/session.ts';

const MiB = 1024 * 1024;
const QID = 'QAV1';
const spec = (over: Parameters<typeof messageSpec>[0] = {}) => messageSpec({ macros: { mail: [['i', QID]], eom: [['i', QID]] }, ...over });
const config = (clamd: string, over: Partial<Parameters<typeof antivirusCheck>[0]> = {}) => ({
  clamd,
  timeoutMs: 10_000,
  onError: 'tempfail' as const,
  maxBytes: 16 * MiB,
  ...over,
});
const replyOf = (r: Response) => (r.kind === 'replycode' ? r.reply : `(${r.kind})`);
const traceOf = (mods: Modification[]) => mods.find((x) => x.kind === 'insheader')?.value ?? '';

/** A milter whose logs are kept, as JSON objects. */
async function milterWithLogs(t: Parameters<typeof setup>[0], opts: StartOptions) {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('info', 'milter', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { ...(await setup(t, { ...opts, log })), lines };
}

describe('antivirus check with a private clamd', () => {
  let clamd: ClamdInstance;
  before(async () => {
    clamd = await startClamd();
  });
  after(() => clamd?.stop());

  test('EICAR in the body is refused with 554 5.7.1 naming the signature and the ref', async (t) => {
    const { connect, lines } = await milterWithLogs(t, { checks: [antivirusCheck(config(clamd.unixSocket))] });
    const c = await ready(connect);
    const r = await c.message(spec(eicarPlain()));
    assert.equal(r.stage, 'eom');
    assert.match(replyOf(r.verdict), new RegExp(`^554 5\\.7\\.1 Virus found: ${SIGNATURE_NAME.replace(/\./g, '\\.')} \\(ref [0-9a-f]+\\.1\\)$`));
    assert.deepEqual(r.modifications, []);
    const found = lines.find((l) => l.msg === 'virus found');
    assert.ok(found, JSON.stringify(lines));
    assert.equal(found.virus, SIGNATURE_NAME);
    assert.equal(found.qid, QID);
    assert.equal(typeof found.ms, 'number');
  });

  test('EICAR as a base64 attachment is refused too, over TCP', async (t) => {
    const { connect } = await setup(t, { checks: [antivirusCheck(config(clamd.tcp))] });
    const r = await (await ready(connect)).message(spec(eicarAttachment()));
    assert.match(replyOf(r.verdict), /^554 5\.7\.1 Virus found: Ceerion\.Test\.EICAR\.UNOFFICIAL /);
  });

  test('a clean message is accepted; the trace header says antivirus=clean and the scan time is logged', async (t) => {
    const { connect, lines } = await milterWithLogs(t, { checks: [antivirusCheck(config(clamd.unixSocket))] });
    const c = await ready(connect);
    const r = await c.message(spec());
    assert.deepEqual(r.verdict, { kind: 'accept' });
    assert.match(traceOf(r.modifications), /; antivirus=clean \(\d+\.\d ms\)$/);
    const scanned = lines.find((l) => l.msg === 'clamd scan clean');
    assert.ok(scanned, JSON.stringify(lines));
    assert.equal(typeof scanned.ms, 'number');
    assert.equal(scanned.qid, QID);
    // The next message on the connection gets a scan of its own.
    const second = await c.message(spec(eicarPlain()));
    assert.match(replyOf(second.verdict), /\(ref [0-9a-f]+\.2\)$/);
    const third = await c.message(spec());
    assert.match(traceOf(third.modifications), /antivirus=clean/);
  });

  test('a message without a body is scanned at end of message (its headers)', async (t) => {
    const { connect } = await setup(t, { checks: [antivirusCheck(config(clamd.unixSocket))] });
    const c = await ready(connect);
    const clean = await c.message(spec({ body: '' }));
    assert.match(traceOf(clean.modifications), /antivirus=clean/);
    const dirty = await c.message(spec({ headers: [['Subject', EICAR.toString('latin1')]], body: '' }));
    assert.match(replyOf(dirty.verdict), /^554 5\.7\.1 Virus found: /);
  });

  test('past maxBytes only the start is scanned, and the summary says how much', async (t) => {
    const { connect } = await setup(t, { checks: [antivirusCheck(config(clamd.unixSocket, { maxBytes: 64 * 1024 }))] });
    const c = await ready(connect);
    // The test string sits past the first 64 KiB: not seen.
    const body = `${'lorem ipsum dolor sit amet\r\n'.repeat(5000)}${EICAR.toString('latin1')}\r\n`;
    const r = await c.message(spec({ body }));
    assert.deepEqual(r.verdict, { kind: 'accept' });
    assert.match(traceOf(r.modifications), /antivirus=clean \(first 65536 bytes\) \(\d+\.\d ms\)$/);
  });

  test('a 10 MB message streams through without the milter holding it (RSS grows < 50 MB); EICAR at its end is found', async (t) => {
    const { connect } = await setup(t, { checks: [antivirusCheck(config(clamd.unixSocket))] });
    const c = await ready(connect);
    const body = Buffer.concat([Buffer.alloc(10 * MiB, 'lorem ipsum dolor sit amet\r\n'), EICAR, Buffer.from('\r\n')]);
    // Warm up (first message compiles and allocates), then measure the big one.
    await c.message(spec());
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
    const r = await c.message(spec({ body }));
    clearInterval(sampler);
    peak = Math.max(peak, process.memoryUsage().rss);
    const grewMb = (peak - before) / MiB;
    t.diagnostic(`RSS grew ${grewMb.toFixed(1)} MB at peak for a ${(body.length / MiB).toFixed(1)} MB message`);
    assert.match(replyOf(r.verdict), /^554 5\.7\.1 Virus found: /);
    assert.ok(grewMb < 50, `RSS grew ${grewMb.toFixed(1)} MB`);
  });
});

describe('antivirus check when clamd fails', () => {
  test('clamd down: the default verdict is tempfail, REPLYCODE 451 4.7.1, logged with the queue id', async (t) => {
    const dead = `inet:127.0.0.1:${await freePort()}`;
    const { connect, lines } = await milterWithLogs(t, { checks: [antivirusCheck(config(dead))] });
    const c = await ready(connect);
    const r = await c.message(spec());
    assert.match(replyOf(r.verdict), /^451 4\.7\.1 Temporary failure in the antivirus check, try again later \(ref [0-9a-f]+\.1\)$/);
    const failed = lines.find((l) => l.msg === 'check failed');
    assert.ok(failed, JSON.stringify(lines));
    assert.equal(failed.qid, QID);
    assert.equal(failed.check, 'antivirus');
    assert.match(String(failed.reason), /unreachable: ECONNREFUSED/);
    // A bigger body: the failure shows up while it streams, and later chunks are not sent anywhere.
    const big = await c.message(spec({ body: 'x'.repeat(1024 * 1024) }));
    assert.match(replyOf(big.verdict), /^451 4\.7\.1 /);
  });

  test("clamd down with onError 'reject' or 'accept'", async (t) => {
    const dead = 'unix:/nonexistent/clamd.ctl';
    const rejecting = await setup(t, { checks: [antivirusCheck(config(dead, { onError: 'reject' }))] });
    const refused = await (await ready(rejecting.connect)).message(spec());
    assert.match(replyOf(refused.verdict), /^550 5\.7\.1 Message refused by the antivirus check /);
    const accepting = await setup(t, { checks: [antivirusCheck(config(dead, { onError: 'accept' }))] });
    const accepted = await (await ready(accepting.connect)).message(spec());
    assert.deepEqual(accepted.verdict, { kind: 'accept' });
    // The failure is ignored for the verdict, but the trace header still tells it.
    assert.match(traceOf(accepted.modifications), /antivirus=failed \(\d+\.\d ms\)/);
  });

  test('clamd that never answers: tempfail after timeoutMs, and its socket is closed', async (t) => {
    /** One promise per connection clamd's stand-in accepted, settled when it closes. */
    const closed: Promise<unknown>[] = [];
    const silent = net.createServer((s) => {
      closed.push(once(s, 'close'));
      s.on('error', () => undefined);
      s.resume();
    });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    t.after(() => new Promise((r) => silent.close(r)));
    const address = `inet:127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    const { connect } = await setup(t, { checks: [antivirusCheck(config(address, { timeoutMs: 300 }))] });
    const started = Date.now();
    const r = await (await ready(connect)).message(spec());
    assert.match(replyOf(r.verdict), /^451 4\.7\.1 /);
    assert.ok(Date.now() - started < 5000);
    assert.equal(closed.length, 1);
    await Promise.all(closed);
  });

  test('ABORT in the middle of the body closes the clamd connection', async (t) => {
    /** One promise per connection clamd's stand-in accepted, settled when it closes. */
    const closed: Promise<unknown>[] = [];
    const sink = net.createServer((s) => {
      closed.push(once(s, 'close'));
      s.on('error', () => undefined);
      s.resume();
    });
    sink.listen(0, '127.0.0.1');
    await once(sink, 'listening');
    t.after(() => new Promise((r) => sink.close(r)));
    const address = `inet:127.0.0.1:${(sink.address() as net.AddressInfo).port}`;
    const { connect } = await setup(t, { checks: [antivirusCheck(config(address))] });
    const c = await ready(connect);
    await c.stage('mail', { kind: 'mail', sender: '<a@example.org>', args: [] });
    await c.stage('rcpt', { kind: 'rcpt', recipient: '<b@example.net>', args: [] });
    await c.stage('header', { kind: 'header', name: 'Subject', value: ' hi' });
    await c.stage('eoh', { kind: 'eoh' });
    await c.stage('body', { kind: 'body', chunk: Buffer.from('first chunk\r\n') });
    const deadline = Date.now() + 5000;
    while (closed.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(closed.length, 1, 'the scan connected on the first body chunk');
    const aborted = Date.now();
    c.abort();
    await Promise.all(closed);
    assert.ok(Date.now() - aborted < 2000, 'closed by the abort, not by the 10 s scan deadline');
  });
});
