/**
 * The clamd client against a real, private clamd (test signature only): clean, EICAR inline and as
 * a base64 MIME attachment, chunking, the size cap, clamd's own size limit; and against sockets
 * that misbehave: one that never answers, one that is not there, one that talks nonsense.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { PassThrough, Readable } from 'node:stream';
import { ClamdError, ping, scanStream } from '../../../milter/clamd/client.ts';
import { EICAR, SIGNATURE_NAME, eicarAttachment, eicarPlain, rawMessage } from '../../fixtures/clamav/eicar.ts';
import { startClamd, type ClamdInstance } from '../../harness/clamd.ts';
import { freePort } from '../../harness/postfix.ts';

const OPTS = { timeoutMs: 10_000, maxBytes: 8 * 1024 * 1024 };
const CLEAN = rawMessage({ headers: [['Subject', 'hello']], body: 'Hello Bob.\r\n' });
const MiB = 1024 * 1024;

/** `total` bytes of filler in 64 KiB chunks, made as they are read, then `tail`. */
function filler(total: number, tail = Buffer.alloc(0)): Readable {
  const line = Buffer.alloc(64 * 1024, 'lorem ipsum dolor sit amet\r\n');
  return Readable.from(
    (function* () {
      for (let left = total; left > 0; left -= line.length) yield line.subarray(0, Math.min(left, line.length));
      if (tail.length) yield tail;
    })(),
  );
}

const reason = (r: ClamdError['reason']) => (err: unknown) => err instanceof ClamdError && err.reason === r;

/** A TCP server that accepts and reads, and answers with `answer` (or never). */
async function rogueServer(answer?: (s: net.Socket) => void) {
  const sockets = new Set<net.Socket>();
  const closed: Promise<void>[] = [];
  const srv = net.createServer((s) => {
    sockets.add(s);
    closed.push(once(s, 'close').then(() => undefined));
    s.on('error', () => undefined);
    s.resume();
    answer?.(s);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  return {
    address: `inet:127.0.0.1:${port}`,
    closed,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

describe('scanStream against a private clamd', () => {
  let clamd: ClamdInstance;
  before(async () => {
    clamd = await startClamd();
  });
  after(() => clamd?.stop());

  test('a clean message is clean, over the unix socket and over TCP', async () => {
    for (const address of [clamd.unixSocket, clamd.tcp]) {
      const r = await scanStream(address, Readable.from([CLEAN]), OPTS);
      assert.equal(r.kind, 'clean', address);
      assert.equal(r.bytes, CLEAN.length);
      assert.equal(r.truncated, false);
      assert.ok(r.ms > 0);
    }
  });

  test('EICAR in the body is found and named', async () => {
    const r = await scanStream(clamd.tcp, Readable.from([rawMessage(eicarPlain())]), OPTS);
    assert.deepEqual({ kind: r.kind, name: r.kind === 'virus' ? r.name : '' }, { kind: 'virus', name: SIGNATURE_NAME });
  });

  test('EICAR as a base64 MIME attachment is found: clamd decodes the message (ScanMail)', async () => {
    const raw = rawMessage(eicarAttachment());
    assert.equal(raw.includes(EICAR), false, 'the raw message does not contain the test string');
    const r = await scanStream(clamd.unixSocket, Readable.from([raw]), OPTS);
    assert.equal(r.kind, 'virus');
    assert.equal(r.kind === 'virus' && r.name, SIGNATURE_NAME);
  });

  test('EICAR split across many small chunks is still found', async () => {
    const raw = rawMessage(eicarPlain());
    const pieces: Buffer[] = [];
    for (let off = 0; off < raw.length; off += 7) pieces.push(raw.subarray(off, off + 7));
    const r = await scanStream(clamd.unixSocket, Readable.from(pieces), OPTS);
    assert.equal(r.kind, 'virus');
  });

  test('an empty chunk from the source does not end the stream early', async () => {
    const raw = rawMessage(eicarPlain());
    const r = await scanStream(clamd.tcp, Readable.from([raw.subarray(0, 20), Buffer.alloc(0), raw.subarray(20)]), OPTS);
    assert.equal(r.kind, 'virus');
  });

  test('past maxBytes only the first maxBytes are scanned, the result says truncated, and the source is drained', async () => {
    const tail = Buffer.concat([Buffer.from('\r\n'), EICAR, Buffer.from('\r\n')]);
    const capped = filler(2 * MiB, tail);
    const r = await scanStream(clamd.tcp, capped, { ...OPTS, maxBytes: MiB });
    assert.deepEqual({ kind: r.kind, bytes: r.bytes, truncated: r.truncated }, { kind: 'clean', bytes: MiB, truncated: true });
    if (!capped.readableEnded) await once(capped, 'end');
    // The same message under a higher cap: the test string at the end is found.
    const whole = await scanStream(clamd.tcp, filler(2 * MiB, tail), { ...OPTS, maxBytes: 4 * MiB });
    assert.deepEqual({ kind: whole.kind, truncated: whole.truncated }, { kind: 'virus', truncated: false });
    assert.equal(whole.bytes, 2 * MiB + tail.length);
  });

  test('exactly maxBytes is not truncated', async () => {
    const r = await scanStream(clamd.tcp, filler(MiB), { ...OPTS, maxBytes: MiB });
    assert.deepEqual({ bytes: r.bytes, truncated: r.truncated }, { bytes: MiB, truncated: false });
  });

  test("maxBytes equal to clamd's StreamMaxLength (16M here) is accepted; more is clamd's ERROR", async () => {
    const r = await scanStream(clamd.unixSocket, filler(17 * MiB), { ...OPTS, maxBytes: 16 * MiB });
    assert.deepEqual({ kind: r.kind, bytes: r.bytes, truncated: r.truncated }, { kind: 'clean', bytes: 16 * MiB, truncated: true });
    // clamd answers "INSTREAM size limit exceeded. ERROR" and closes; if our next write beats the
    // reply to the socket, the connection error is what we see. Either way: no verdict.
    await assert.rejects(scanStream(clamd.unixSocket, filler(17 * MiB), { ...OPTS, maxBytes: 32 * MiB }), (err: ClamdError) => {
      assert.ok(err instanceof ClamdError);
      assert.ok(err.reason === 'clamd' || err.reason === 'closed', err.message);
      if (err.reason === 'clamd') assert.match(err.message, /INSTREAM size limit exceeded/);
      return true;
    });
  });

  test('ping answers PONG on both addresses', async () => {
    await ping(clamd.unixSocket);
    await ping(clamd.tcp);
  });

  test('an aborted scan rejects at once and destroys the source', async () => {
    const ac = new AbortController();
    const source = new PassThrough();
    const scan = scanStream(clamd.tcp, source, { ...OPTS, signal: ac.signal });
    source.write(Buffer.from('Subject: slow\r\n\r\n'));
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(scan, reason('aborted'));
    assert.equal(source.destroyed, true);
  });

  test('a failing source fails the scan', async () => {
    const source = new PassThrough();
    const scan = scanStream(clamd.tcp, source, OPTS);
    source.write(Buffer.from('Subject: x\r\n\r\n'));
    setTimeout(() => source.destroy(new Error('disk on fire')), 20);
    await assert.rejects(scan, (err: ClamdError) => err.reason === 'source' && /disk on fire/.test(err.message));
  });
});

describe('scanStream when clamd is not there or misbehaves', () => {
  test('a socket that never answers: timeout after timeoutMs, and our end is closed', async (t) => {
    const srv = await rogueServer();
    t.after(() => srv.close());
    const started = Date.now();
    await assert.rejects(scanStream(srv.address, Readable.from([CLEAN]), { ...OPTS, timeoutMs: 300 }), reason('timeout'));
    const took = Date.now() - started;
    assert.ok(took >= 290 && took < 3000, `took ${took} ms`);
    await Promise.all(srv.closed);
    await assert.rejects(ping(srv.address, { timeoutMs: 200 }), reason('timeout'));
  });

  test('connection refused and a missing unix socket: unreachable', async () => {
    const port = await freePort();
    await assert.rejects(scanStream(`inet:127.0.0.1:${port}`, Readable.from([CLEAN]), OPTS), (err: ClamdError) => {
      assert.equal(err.reason, 'unreachable');
      assert.match(err.message, /ECONNREFUSED/);
      return true;
    });
    await assert.rejects(scanStream('unix:/nonexistent/clamd.ctl', Readable.from([CLEAN]), OPTS), (err: ClamdError) => {
      assert.equal(err.reason, 'unreachable');
      assert.match(err.message, /ENOENT/);
      return true;
    });
    await assert.rejects(ping(`inet:127.0.0.1:${port}`), reason('unreachable'));
  });

  test('a stopped clamd is unreachable', async () => {
    const clamd = await startClamd();
    await clamd.stop();
    await assert.rejects(scanStream(clamd.unixSocket, Readable.from([CLEAN]), OPTS), reason('unreachable'));
    await assert.rejects(scanStream(clamd.tcp, Readable.from([CLEAN]), OPTS), reason('unreachable'));
  });

  test('a bad address is refused', async () => {
    await assert.rejects(scanStream('clamd.example:3310', Readable.from([CLEAN]), OPTS), reason('unreachable'));
  });

  test('a peer that closes without a reply, or floods a reply without NUL, is not clamd', async (t) => {
    const closer = await rogueServer((s) => s.once('data', () => s.end()));
    t.after(() => closer.close());
    await assert.rejects(scanStream(closer.address, Readable.from([CLEAN]), OPTS), reason('closed'));
    const flooder = await rogueServer((s) => s.write(Buffer.alloc(10_000, 0x41)));
    t.after(() => flooder.close());
    await assert.rejects(scanStream(flooder.address, Readable.from([CLEAN]), OPTS), reason('protocol'));
    const early = await rogueServer((s) => s.write('stream: OK\0'));
    t.after(() => early.close());
    await assert.rejects(scanStream(early.address, new PassThrough(), OPTS), reason('protocol'));
    const pinger = await rogueServer((s) => s.write('PING?\0'));
    t.after(() => pinger.close());
    await assert.rejects(ping(pinger.address), reason('protocol'));
  });
});
