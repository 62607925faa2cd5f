// The safety rule on the relay path: whatever goes wrong between us and Dovecot, every recipient
// without a final answer from Dovecot gets a 451 (Postfix keeps the mail and retries), never a 5xx
// Dovecot did not send, and deliverToDovecot resolves instead of throwing.
//
// Dovecot stopped is a real Dovecot, stopped. The other faults come from raw net.Servers because
// Dovecot cannot be made to produce them on demand: silence, garbage, a connection cut mid-DATA or
// between per-recipient replies, a peer that stops reading, a 5xx greeting, and a server without
// PIPELINING (Dovecot always advertises it), which is the only way to test the one-at-a-time path.
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { ListenAddress } from '../../../core/listen.ts';
import { silentLogger } from '../../../core/log.ts';
import { closeIdleDovecotConnections, deliverToDovecot, parseCapabilities, pickParams, type DeliverOptions } from '../../../lmtp-indexer/relay/dovecot-client.ts';
import { startDovecot } from '../../harness/dovecot.ts';
import { freePort } from '../../harness/postfix.ts';

const MSG = Buffer.from('Subject: fault\r\n\r\nbody\r\n.dot line\r\n');

function opts(address: ListenAddress, over: Partial<DeliverOptions> = {}): DeliverOptions {
  return {
    address,
    lhloName: 'relay.test',
    mailFrom: 's@example.org',
    recipients: ['a@example.com', 'b@example.com'],
    body: () => Readable.from([MSG]),
    timeoutMs: 300,
    log: silentLogger,
    ...over,
  };
}

async function fakeServer(t: TestContext, onConnection: (s: net.Socket) => void): Promise<ListenAddress> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onConnection(s);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  );
  return { kind: 'tcp', host: '127.0.0.1', port: (srv.address() as AddressInfo).port };
}

interface Script {
  caps?: string[];
  /** Called for each command line; return the reply, or undefined for the default. */
  answer?: (cmd: string) => string | undefined;
  /** From MAIL on, replies are held back until a command matching this arrives (then all are sent). */
  holdUntil?: RegExp;
  /** Commands found in each read from the socket, outside DATA. */
  batches?: number[];
  /** Body bytes as they arrive after 354 (dot-stuffed wire form). */
  onBody?: (s: net.Socket, chunk: Buffer) => void;
  /** After the terminator; the default answers 250 per accepted recipient. */
  afterData?: (s: net.Socket, accepted: string[]) => void;
  log?: string[];
}

/** A minimal LMTP speaker: enough to reach the stage where a test injects its fault. */
function lmtpFake(script: Script): (s: net.Socket) => void {
  return (s) => {
    let buf = Buffer.alloc(0);
    let inData = false;
    let accepted: string[] = [];
    let held: string | undefined;
    s.write('220 fake LMTP\r\n');
    s.on('data', (chunk: Buffer) => {
      if (inData) {
        script.onBody?.(s, chunk);
        buf = Buffer.concat([buf, chunk]);
        if (!buf.toString('latin1').endsWith('\r\n.\r\n')) return;
        inData = false;
        buf = Buffer.alloc(0);
        if (script.afterData) script.afterData(s, accepted);
        else s.write(accepted.map((a) => `250 2.0.0 <${a}> Saved\r\n`).join(''));
        return;
      }
      buf = Buffer.concat([buf, chunk]);
      let batch = 0;
      for (let lf = buf.indexOf('\r\n'); lf !== -1 && !inData; lf = buf.indexOf('\r\n')) {
        const cmd = buf.toString('utf8', 0, lf);
        buf = buf.subarray(lf + 2);
        script.log?.push(cmd);
        batch++;
        const custom = script.answer?.(cmd);
        const verb = cmd.slice(0, 4).toUpperCase();
        const rcpt = /^RCPT TO:<([^>]*)>/i.exec(cmd)?.[1];
        let reply = custom;
        if (reply === undefined && verb === 'LHLO') reply = ['250-fake', ...(script.caps ?? ['PIPELINING', 'ENHANCEDSTATUSCODES'])].join('\r\n250-').replace(/250-([^\r]*)$/, '250 $1') + '\r\n';
        if (reply === undefined && verb === 'RCPT') reply = rcpt?.startsWith('ghost') ? `550 5.1.1 <${rcpt}> User doesn't exist\r\n` : '250 2.1.5 OK\r\n';
        if (reply?.startsWith('250') && rcpt !== undefined) accepted.push(rcpt);
        if (verb === 'MAIL') accepted = [];
        if (verb === 'MAIL' && script.holdUntil) held = '';
        reply ??= { MAIL: '250 2.1.0 OK\r\n', DATA: '354 OK\r\n', QUIT: '221 2.0.0 Bye\r\n' }[verb] ?? '500 5.5.1 Unknown command\r\n';
        if (held !== undefined) {
          held += reply;
          if (!script.holdUntil!.test(cmd)) continue;
          reply = held;
          held = undefined;
        }
        s.write(reply);
        if (reply.startsWith('354')) inData = true;
        if (verb === 'QUIT') s.end();
      }
      if (batch > 0) script.batches?.push(batch);
    });
  };
}

const summary = (replies: Array<{ code: number; enhanced?: string }>) => replies.map((r) => `${r.code} ${r.enhanced ?? ''}`.trim());

test('Dovecot stopped: 451 4.4.1 for every recipient over inet and unix', async (t) => {
  const port = await freePort();
  const dv = await startDovecot({
    protocols: ['imap', 'lmtp'],
    extraConfig: `service lmtp {\n  inet_listener lmtp {\n    address = 127.0.0.1\n    port = ${port}\n  }\n  unix_listener lmtp {\n    mode = 0666\n  }\n}\n`,
  });
  t.after(() => dv.stop());
  const tcp: ListenAddress = { kind: 'tcp', host: '127.0.0.1', port };
  const unix: ListenAddress = { kind: 'unix', path: path.join(dv.dir, 'run', 'lmtp') };
  // Both addresses are right while Dovecot runs.
  assert.deepEqual(summary(await deliverToDovecot(opts(tcp, { recipients: ['alice'] }))), ['250 2.0.0']);
  assert.deepEqual(summary(await deliverToDovecot(opts(unix, { recipients: ['bob'] }))), ['250 2.0.0']);
  await dv.stop();
  for (const [addr, why] of [
    [tcp, 'ECONNREFUSED'],
    [unix, 'ENOENT'],
  ] as const) {
    const replies = await deliverToDovecot(opts(addr, { recipients: ['alice', 'bob', 'ghost'] }));
    assert.deepEqual(summary(replies), ['451 4.4.1', '451 4.4.1', '451 4.4.1']);
    assert.match(replies[0]!.message, new RegExp(`^Dovecot LMTP at \\S+ unreachable \\(${why}\\)`));
  }
});

test('a server that accepts and never speaks: 451 4.4.2 after timeoutMs', async (t) => {
  const addr = await fakeServer(t, () => undefined);
  const replies = await deliverToDovecot(opts(addr));
  assert.deepEqual(summary(replies), ['451 4.4.2', '451 4.4.2']);
  assert.match(replies[0]!.message, /^Dovecot LMTP at inet:127\.0\.0\.1:\d+ did not answer greeting within 300 ms/);
});

test('garbage instead of replies: 451 4.5.0', async (t) => {
  const addr = await fakeServer(t, (s) => s.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'));
  const replies = await deliverToDovecot(opts(addr));
  assert.deepEqual(summary(replies), ['451 4.5.0', '451 4.5.0']);
  assert.match(replies[0]!.message, /invalid reply during greeting \(malformed line/);
});

test('garbage after RCPT keeps the RCPT rejection and defers the rest', async (t) => {
  const addr = await fakeServer(t, lmtpFake({ answer: (cmd) => (cmd === 'DATA' ? '354 go\r\n\x00\x01\x02\r\n' : undefined) }));
  const replies = await deliverToDovecot(opts(addr, { recipients: ['a', 'ghost', 'b'] }));
  assert.deepEqual(summary(replies), ['451 4.5.0', '550 5.1.1', '451 4.5.0']);
});

test('a flood of unasked replies is not taken as answers', async (t) => {
  const addr = await fakeServer(t, (s) => s.write('220 hi\r\n'.repeat(50)));
  assert.deepEqual(summary(await deliverToDovecot(opts(addr))), ['451 4.5.0', '451 4.5.0']);
});

test('a MAIL rejection stands even when the pipelined RCPT replies never come', async (t) => {
  const addr = await fakeServer(t, lmtpFake({ answer: (cmd) => (cmd.startsWith('MAIL') ? '550 5.7.1 sender blocked\r\n' : cmd.startsWith('RCPT') ? '' : undefined) }));
  const replies = await deliverToDovecot(opts(addr));
  assert.deepEqual(replies, [
    { code: 550, enhanced: '5.7.1', message: 'sender blocked' },
    { code: 550, enhanced: '5.7.1', message: 'sender blocked' },
  ]);
});

test('a 5xx greeting becomes 451 4.3.0; a 4xx greeting is passed on', async (t) => {
  const five = await fakeServer(t, (s) => s.end('554 5.3.2 not today\r\n'));
  const r5 = await deliverToDovecot(opts(five));
  assert.deepEqual(summary(r5), ['451 4.3.0', '451 4.3.0']);
  assert.match(r5[0]!.message, /refused the session at greeting: 554 5\.3\.2 not today/);
  const four = await fakeServer(t, (s) => s.end('421 4.3.2 shutting down\r\n'));
  assert.deepEqual(await deliverToDovecot(opts(four)), [
    { code: 421, enhanced: '4.3.2', message: 'shutting down' },
    { code: 421, enhanced: '4.3.2', message: 'shutting down' },
  ]);
});

test('connection cut while the body streams: 451 4.4.2 for accepted recipients only', async (t) => {
  const addr = await fakeServer(t, lmtpFake({ onBody: (s) => s.destroy() }));
  const big = Buffer.alloc(4 * 1024 * 1024, 'a line of the body\r\n');
  const replies = await deliverToDovecot(opts(addr, { recipients: ['a', 'ghost', 'b'], body: () => Readable.from([MSG, big]) }));
  assert.deepEqual(summary(replies), ['451 4.4.2', '550 5.1.1', '451 4.4.2']);
  // Depending on how much the kernel buffered, the cut shows while sending or while awaiting replies.
  assert.match(replies[0]!.message, /^Dovecot LMTP at \S+(: connection lost| closed the connection) during (DATA|end of DATA)/);
});

test('connection cut between per-recipient replies: answered recipients keep their answer', async (t) => {
  const addr = await fakeServer(t, lmtpFake({ afterData: (s, acc) => s.end(`250 2.0.0 <${acc[0]}> Saved\r\n`) }));
  const replies = await deliverToDovecot(opts(addr, { recipients: ['a', 'b', 'c'] }));
  assert.deepEqual(summary(replies), ['250 2.0.0', '451 4.4.2', '451 4.4.2']);
  assert.match(replies[1]!.message, /during end of DATA \(reply for <b>\)/);
});

test('a server that stops reading: backpressure holds the body, then 451 4.4.2', async (t) => {
  const addr = await fakeServer(t, lmtpFake({ onBody: (s) => s.pause() }));
  const total = 256 * 1024 * 1024;
  const piece = Buffer.alloc(64 * 1024, 'line of text\r\n');
  let pulled = 0;
  const body = () =>
    Readable.from(
      (function* () {
        for (; pulled < total; pulled += piece.length) yield piece;
      })(),
    );
  const replies = await deliverToDovecot(opts(addr, { body }));
  assert.deepEqual(summary(replies), ['451 4.4.2', '451 4.4.2']);
  assert.match(replies[0]!.message, /did not answer DATA \(sending the message\) within 300 ms/);
  // Socket and kernel buffers take a few MB; the rest must still be unread at the source.
  assert.ok(pulled < 64 * 1024 * 1024, `pulled ${pulled} bytes of ${total} from a peer that reads nothing`);
});

test('with PIPELINING, MAIL and every RCPT go out before any reply; without it, one at a time', async (t) => {
  // This server answers nothing until the last RCPT has arrived: a client that waits would time out.
  const piped: string[] = [];
  const withPipe = await fakeServer(t, lmtpFake({ log: piped, holdUntil: /^RCPT TO:<b>/ }));
  assert.deepEqual(summary(await deliverToDovecot(opts(withPipe, { recipients: ['a', 'b'], reuse: false }))), ['250 2.0.0', '250 2.0.0']);
  assert.deepEqual(piped, ['LHLO relay.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<a>', 'RCPT TO:<b>', 'DATA', 'QUIT']);

  // Without PIPELINING each read holds exactly one command: the next one waited for its reply.
  const single: string[] = [];
  const batches: number[] = [];
  const noPipe = await fakeServer(t, lmtpFake({ caps: ['ENHANCEDSTATUSCODES'], log: single, batches }));
  const replies = await deliverToDovecot(opts(noPipe, { recipients: ['a', 'ghost', 'b'], reuse: false }));
  assert.deepEqual(summary(replies), ['250 2.0.0', '550 5.1.1', '250 2.0.0']);
  assert.deepEqual(single, ['LHLO relay.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<a>', 'RCPT TO:<ghost>', 'RCPT TO:<b>', 'DATA', 'QUIT']);
  assert.deepEqual(batches, [1, 1, 1, 1, 1, 1, 1]);

  // Without PIPELINING and a rejected MAIL, no RCPT is sent at all.
  const refused: string[] = [];
  const noMail = await fakeServer(t, lmtpFake({ caps: [], log: refused, answer: (cmd) => (cmd.startsWith('MAIL') ? '452 4.3.1 out of space\r\n' : undefined) }));
  assert.deepEqual(await deliverToDovecot(opts(noMail, { reuse: false })), [
    { code: 452, enhanced: '4.3.1', message: 'out of space' },
    { code: 452, enhanced: '4.3.1', message: 'out of space' },
  ]);
  // A kept connection would first close the open transaction with RSET; this one just says QUIT.
  assert.deepEqual(refused, ['LHLO relay.test', 'MAIL FROM:<s@example.org>', 'QUIT']);
});

test('parameters are kept only for advertised extensions', () => {
  const caps = parseCapabilities({ code: 250, lines: ['vm', '8BITMIME', 'SIZE 1000000', 'dsn', 'PIPELINING'] });
  assert.deepEqual([...caps.keys()], ['8BITMIME', 'SIZE', 'DSN', 'PIPELINING']);
  assert.deepEqual(caps.get('SIZE'), ['1000000']);
  assert.deepEqual(pickParams(['BODY=8BITMIME', 'SMTPUTF8', 'SIZE=12', 'ORCPT=rfc822;a@b', 'BODY=BINARYMIME', 'XFOO=1', 'PIPELINING'], caps), {
    kept: ['BODY=8BITMIME', 'SIZE=12', 'ORCPT=rfc822;a@b', 'PIPELINING'],
    dropped: ['SMTPUTF8', 'BODY=BINARYMIME', 'XFOO=1'],
  });
  assert.deepEqual(pickParams(['BODY=8BITMIME', 'SIZE=12'], new Map()), { kept: [], dropped: ['BODY=8BITMIME', 'SIZE=12'] });
});

test('options that would inject commands are refused before any I/O', async () => {
  const nowhere: ListenAddress = { kind: 'unix', path: '/nonexistent/lmtp' };
  await assert.rejects(deliverToDovecot(opts(nowhere, { recipients: ['a>\r\nRCPT TO:<evil'] })), TypeError);
  await assert.rejects(deliverToDovecot(opts(nowhere, { mailFrom: 'x\r\nRSET' })), TypeError);
  await assert.rejects(deliverToDovecot(opts(nowhere, { mailParams: ['BODY=8BITMIME SMTPUTF8'] })), TypeError);
  await assert.rejects(deliverToDovecot(opts(nowhere, { recipients: [] })), TypeError);
});

test('connections are reused between deliveries; one the server closed while idle is replaced', async (t) => {
  const log: string[] = [];
  let connections = 0;
  const fake = lmtpFake({ log });
  const addr = await fakeServer(t, (s) => {
    connections++;
    fake(s);
  });
  for (let i = 0; i < 3; i++) assert.deepEqual(summary(await deliverToDovecot(opts(addr, { recipients: ['a'] }))), ['250 2.0.0']);
  assert.equal(connections, 1, 'one connection for three deliveries');
  assert.deepEqual(log.filter((c) => c.startsWith('LHLO') || c.startsWith('MAIL')), ['LHLO relay.test', 'MAIL FROM:<s@example.org>', 'MAIL FROM:<s@example.org>', 'MAIL FROM:<s@example.org>']);

  // The next server hangs up after every transaction (an idle timeout on Dovecot's side).
  let hangups = 0;
  const closing = await fakeServer(t, (s) => {
    hangups++;
    lmtpFake({ afterData: (sock, acc) => sock.end(acc.map((a) => `250 2.0.0 <${a}> Saved\r\n`).join('')) })(s);
  });
  for (let i = 0; i < 3; i++) assert.deepEqual(summary(await deliverToDovecot(opts(closing, { recipients: ['a'] }))), ['250 2.0.0']);
  assert.equal(hangups, 3, 'a closed connection is never reused');
  closeIdleDovecotConnections();
});
