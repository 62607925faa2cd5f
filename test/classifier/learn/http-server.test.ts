/**
 * LearnHttpServer over a real socket (port 0) with a fake Learner that records its calls: the
 * happy paths, and every refusal (token, auth, route, method, size, parameters, learner errors).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { test, type TestContext } from 'node:test';
import { DEFAULT_LEARN_PORT, LearnHttpServer, type Learner, type LearnHttpServerOptions } from '../../../classifier/learn/http-server.ts';
import { LearnInputError } from '../../../classifier/model/store.ts';
import type { MailClass } from '../../../classifier/types.ts';

const TOKEN = 'correct-horse-battery-staple';
const auth = { authorization: `Bearer ${TOKEN}` };

type Call = { raw: Buffer; cls: MailClass; opts: { user?: string } };

/** The injected Learner's double: records calls, answers per the test. */
function fakeLearner(answer: (call: Call) => Promise<Awaited<ReturnType<Learner['learn']>>> = async () => ({ status: 'learned', eventId: '42', contentHash: 'ab' })) {
  const calls: Call[] = [];
  const learner: Learner = {
    learn: async (raw, cls, opts) => {
      calls.push({ raw, cls, opts });
      return answer({ raw, cls, opts });
    },
  };
  return { learner, calls };
}

async function startServer(t: TestContext, opts: Partial<LearnHttpServerOptions> = {}) {
  const fake = fakeLearner();
  const server = new LearnHttpServer({ learner: fake.learner, token: TOKEN, port: 0, ...opts });
  const { host, port } = await server.start();
  assert.equal(host, '127.0.0.1');
  t.after(() => server.close());
  return { server, port, calls: fake.calls };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** One request; `chunks` are written one by one (chunked encoding) when given. */
function request(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer, chunks?: Buffer[]): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} });
      });
    });
    // The server may answer (413) and close before the whole upload is written: the reply still
    // arrives; fail only if it does not.
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') return reject(err);
      setTimeout(() => reject(new Error(`${err.code} and no reply`)), 2_000).unref();
    });
    if (chunks) {
      for (const c of chunks) req.write(c);
      req.end();
    } else req.end(body);
  });
}

const message = Buffer.from('From: a@example.com\r\nSubject: cheap pills\r\n\r\nbuy now\r\n\xff\x00binary', 'latin1');

test('POST /learn/spam and /learn/ham hand the exact bytes, class and user to the Learner', async (t) => {
  const { port, calls } = await startServer(t);
  const spam = await request(port, 'POST', '/learn/spam', auth, message);
  assert.equal(spam.status, 200);
  assert.deepEqual(spam.body, { status: 'learned', eventId: '42', contentHash: 'ab' });
  assert.match(String(spam.headers['content-type']), /^application\/json/);
  const ham = await request(port, 'POST', '/learn/ham?user=alice%40example.com', auth, message);
  assert.equal(ham.status, 200);
  assert.equal(calls.length, 2);
  assert.ok(calls[0]!.raw.equals(message));
  assert.deepEqual([calls[0]!.cls, calls[0]!.opts], ['spam', {}]);
  assert.deepEqual([calls[1]!.cls, calls[1]!.opts], ['ham', { user: 'alice@example.com' }]);
  // Chunked uploads (no Content-Length) work too.
  const chunked = await request(port, 'POST', '/learn/spam', auth, undefined, [message.subarray(0, 10), message.subarray(10)]);
  assert.equal(chunked.status, 200);
  assert.ok(calls[2]!.raw.equals(message));
});

test('the token: at least 16 characters to start; bearer, exact, else 401', async (t) => {
  const { learner } = fakeLearner();
  assert.throws(() => new LearnHttpServer({ learner, token: 'x'.repeat(15) }), /at least 16 characters/);
  assert.throws(() => new LearnHttpServer({ learner, token: '' }), /at least 16/);
  const { port, calls } = await startServer(t);
  for (const header of [undefined, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, TOKEN, 'Bearer ']) {
    const reply = await request(port, 'POST', '/learn/spam', header === undefined ? {} : { authorization: header }, message);
    assert.equal(reply.status, 401, String(header));
    assert.match(String(reply.headers['www-authenticate']), /^Bearer/);
  }
  assert.equal((await request(port, 'POST', '/learn/spam', { authorization: `bearer  ${TOKEN}` }, message)).status, 200, 'scheme is case-insensitive');
  assert.equal(calls.length, 1);
});

test('routes and methods: 404 for unknown paths, 405 with Allow for wrong methods, /healthz without auth', async (t) => {
  const { port, calls } = await startServer(t);
  for (const path of ['/', '/learn', '/learn/eggs', '/learn/spam/x', '/LEARN/SPAM']) {
    assert.equal((await request(port, 'POST', path, auth, message)).status, 404, path);
  }
  const get = await request(port, 'GET', '/learn/spam', auth);
  assert.deepEqual([get.status, get.headers.allow], [405, 'POST']);
  const post = await request(port, 'POST', '/healthz', auth, message);
  assert.deepEqual([post.status, post.headers.allow], [405, 'GET, HEAD']);
  const health = await request(port, 'GET', '/healthz');
  assert.deepEqual([health.status, health.body], [200, { ok: true }]);
  assert.equal((await request(port, 'HEAD', '/healthz')).status, 200);
  assert.equal(calls.length, 0);
});

test('size cap: 413 from Content-Length before reading, and from a chunked upload that grows past it', async (t) => {
  const { port, calls } = await startServer(t, { maxBytes: 1024 });
  assert.equal((await request(port, 'POST', '/learn/spam', auth, Buffer.alloc(1024, 'a'))).status, 200, 'exactly the cap is fine');
  const declared = await request(port, 'POST', '/learn/spam', auth, Buffer.alloc(1025, 'a'));
  assert.equal(declared.status, 413);
  assert.match(String(declared.body.error), /larger than 1024 bytes/);
  const streamed = await request(port, 'POST', '/learn/spam', auth, undefined, Array.from({ length: 50 }, () => Buffer.alloc(100, 'b')));
  assert.equal(streamed.status, 413);
  assert.equal(calls.length, 1);
  // The server is still fine afterwards.
  assert.equal((await request(port, 'POST', '/learn/ham', auth, message)).status, 200);
});

test('bad requests: empty body, unknown or repeated parameters, a malformed user', async (t) => {
  const { port, calls } = await startServer(t);
  const cases: Array<[string, Buffer, RegExp]> = [
    ['/learn/spam', Buffer.alloc(0), /empty body/],
    ['/learn/spam?usr=alice', message, /unknown parameter "usr"/],
    ['/learn/spam?user=a&user=b', message, /user given twice/],
    ['/learn/spam?user=', message, /user must be/],
    ['/learn/spam?user=a%20b', message, /user must be/],
    ['/learn/spam?user=a%0Ab', message, /user must be/],
  ];
  for (const [path, body, error] of cases) {
    const reply = await request(port, 'POST', path, auth, body);
    assert.equal(reply.status, 400, path);
    assert.match(String(reply.body.error), error, path);
  }
  assert.equal(calls.length, 0);
});

test('learner failures: LearnInputError is a 400 with its message, anything else a 500 that reveals nothing', async (t) => {
  let fail: Error = new LearnInputError('scope "user:x y" is not valid');
  const learner: Learner = {
    learn: async () => {
      throw fail;
    },
  };
  const { port } = await startServer(t, { learner });
  const bad = await request(port, 'POST', '/learn/spam', auth, message);
  assert.deepEqual([bad.status, bad.body.error], [400, 'scope "user:x y" is not valid']);
  fail = new Error('connect ECONNREFUSED 10.0.0.5:5432 password=hunter2');
  const broken = await request(port, 'POST', '/learn/spam', auth, message);
  assert.equal(broken.status, 500);
  assert.doesNotMatch(JSON.stringify(broken.body), /hunter2|ECONNREFUSED/);
});

test('defaults: port 10042 on 127.0.0.1', () => {
  assert.equal(DEFAULT_LEARN_PORT, 10042);
});

test('the default cap is 10 MB: an 11 MB upload is refused, the server keeps serving', async (t) => {
  const { port, calls } = await startServer(t);
  const reply = await request(port, 'POST', '/learn/spam', auth, Buffer.alloc(11 * 1024 * 1024, 'z'));
  assert.equal(reply.status, 413);
  assert.match(String(reply.body.error), /larger than 10485760 bytes/);
  assert.equal((await request(port, 'GET', '/healthz')).status, 200);
  assert.equal(calls.length, 0);
});
