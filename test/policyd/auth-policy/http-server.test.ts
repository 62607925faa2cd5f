// AuthPolicyServer over real sockets on port 0, with the real Redis (a key prefix per test): the
// API header, garbage of every kind (answered, logged, never fatal), the JSON answers Dovecot
// parses, the block log line fail2ban reads, metrics, and a graceful stop.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import type { Redis } from 'ioredis';
import type { AuthPolicyConfig } from '../../../core/config/policyd.ts';
import { createRegistry } from '../../../core/metrics.ts';
import { createRedis } from '../../../core/redis.ts';
import { AuthPolicyServer, parseApiHeader } from '../../../policyd/auth-policy/http-server.ts';
import { freePort } from '../../harness/postfix.ts';
import { dovecotBody, memoryLogger, policyConfig, post, testRedis } from './support.ts';

async function serve(t: TestContext, over: Partial<AuthPolicyConfig> = {}, opts: { redisDown?: boolean } = {}) {
  const mem = memoryLogger();
  const registry = createRegistry(false);
  let redis: Redis;
  if (opts.redisDown) {
    const down = createRedis({ url: `redis://127.0.0.1:${await freePort()}`, keyPrefix: 'x:', commandTimeoutMs: 250 });
    down.on('error', () => undefined);
    t.after(() => down.disconnect());
    redis = down;
  } else {
    redis = (await testRedis(t)).client;
  }
  const server = new AuthPolicyServer({ config: policyConfig(over), redis, log: mem.log, registry, shutdownGraceMs: 1_000 });
  const port = await server.start();
  t.after(() => server.stop());
  return { server, port, mem, registry };
}

const refusals = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l.msg === 'auth-policy refused request').map((l) => l.reason);

describe('API header', () => {
  test('parsed as Dovecot sends it: "Name: value", or a bare value as X-API-Key', () => {
    assert.deepEqual(parseApiHeader('X-Ceerion-Key: s3cret'), { name: 'x-ceerion-key', value: 's3cret' });
    assert.deepEqual(parseApiHeader('Authorization: Basic dTpw'), { name: 'authorization', value: 'Basic dTpw' });
    assert.deepEqual(parseApiHeader('s3cret'), { name: 'x-api-key', value: 's3cret' });
    assert.equal(parseApiHeader(''), undefined);
  });

  test('required when configured: missing or wrong → 401, right → 200', async (t) => {
    const { port, mem } = await serve(t, { apiHeader: 'X-Ceerion-Key: s3cret' });
    assert.equal((await post(port, '/?command=allow', dovecotBody())).status, 401);
    assert.equal((await post(port, '/?command=allow', dovecotBody(), { headers: { 'X-Ceerion-Key': 'wrong' } })).status, 401);
    assert.equal((await post(port, '/?command=allow', dovecotBody(), { headers: { 'X-Ceerion-Key': 's3cret-and-more' } })).status, 401);
    const ok = await post(port, '/?command=allow', dovecotBody(), { headers: { 'x-ceerion-key': 's3cret' } });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json, { status: 0, msg: '' });
    assert.deepEqual(refusals(mem.lines), ['api-header', 'api-header', 'api-header']);
  });

  test('a bare configured value is expected in X-API-Key, as Dovecot sends it', async (t) => {
    const { port } = await serve(t, { apiHeader: 'k123' });
    assert.equal((await post(port, '/?command=allow', dovecotBody(), { headers: { 'X-API-Key': 'k123' } })).status, 200);
    assert.equal((await post(port, '/?command=allow', dovecotBody(), { headers: { 'X-Other': 'k123' } })).status, 401);
  });
});

describe('garbage', () => {
  test('each kind gets its status and a logged reason; the server keeps answering', async (t) => {
    const { port, mem } = await serve(t);
    const cases: Array<[string, () => ReturnType<typeof post>, number]> = [
      ['not-json', () => post(port, '/?command=allow', 'login=alice'), 400],
      ['not-object', () => post(port, '/?command=allow', '[]'), 400],
      ['bad-field', () => post(port, '/?command=allow', '{"login":1}'), 400],
      ['missing-field', () => post(port, '/?command=report', dovecotBody()), 400],
      ['missing-command', () => post(port, '/', dovecotBody()), 400],
      ['unknown-command', () => post(port, '/?command=nuke', dovecotBody()), 400],
      ['method', () => post(port, '/?command=allow', '', { method: 'GET' }), 405],
      ['too-large', () => post(port, '/?command=allow', Buffer.alloc(64 * 1024, 0x20)), 413],
      // No Content-Length: the cap applies while reading.
      ['too-large', () => post(port, '/?command=allow', Buffer.alloc(64 * 1024, 0x20), { headers: { 'transfer-encoding': 'chunked' } }), 413],
    ];
    for (const [reason, send, status] of cases) {
      const res = await send();
      assert.equal(res.status, status, reason);
      assert.equal(res.headers.connection, 'close', reason);
      assert.equal(refusals(mem.lines).at(-1), reason);
    }
    assert.equal((await post(port, '/?command=allow', dovecotBody())).status, 200);
  });

  test('bytes that are not HTTP get a 400 and a closed socket', async (t) => {
    const { port, mem } = await serve(t);
    const reply = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('\x16\x03\x01 this is not HTTP\r\n\r\n'));
      let buf = '';
      s.on('data', (d) => (buf += d.toString('latin1')));
      s.on('close', () => resolve(buf));
      s.on('error', reject);
    });
    assert.match(reply, /^HTTP\/1\.1 400 /);
    assert.ok(mem.lines.some((l) => l.msg === 'auth-policy bad HTTP request'));
    assert.equal((await post(port, '/?command=allow', dovecotBody())).status, 200);
  });
});

describe('answers and block lines', () => {
  test('allow, tarpit and reject as Dovecot reads them, with one block line per held-back attempt', async (t) => {
    const { port, mem } = await serve(t, { ipTarpitAfter: 2, ipRejectAfter: 3, tarpitSeconds: 3, sprayLogins: 100 });
    const answers: unknown[] = [];
    for (let i = 1; i <= 4; i++) {
      answers.push((await post(port, '/?command=allow', dovecotBody({ login: `user ${i}"`, session_id: `s${i}/AB+=` }))).json);
      const report = await post(port, '/?command=report', dovecotBody({ login: `user ${i}"`, success: false, policy_reject: false }));
      assert.deepEqual(report.json, { status: 0, msg: '' });
    }
    assert.deepEqual(answers, [
      { status: 0, msg: '' },
      { status: 0, msg: '' },
      { status: 3, msg: '' },
      { status: -1, msg: 'Too many failed logins, try again later (ref s4/AB+=)' },
    ]);
    const blocks = mem.lines.filter((l) => l.msg === 'auth-policy block');
    assert.equal(blocks.length, 2);
    assert.deepEqual(
      blocks.map((b) => [b.ip, b.login, b.reason, b.action, b.level, b.fail2ban]),
      [
        ['192.0.2.10', 'user 3"', 'ip', 'tarpit', 40, 'event=auth_block ip=192.0.2.10 login=user?3? reason=ip action=tarpit'],
        ['192.0.2.10', 'user 4"', 'ip', 'reject', 40, 'event=auth_block ip=192.0.2.10 login=user?4? reason=ip action=reject'],
      ],
    );
    assert.equal(blocks[0]!.seconds, 3);
  });

  test('a remote that is not an address never reaches the fail2ban field', async (t) => {
    const { port, mem } = await serve(t, { loginTarpitAfter: 1 });
    await post(port, '/?command=report', dovecotBody({ remote: 'evil.example', success: false }));
    await post(port, '/?command=allow', dovecotBody({ remote: 'evil.example' }));
    const block = mem.lines.find((l) => l.msg === 'auth-policy block');
    assert.equal(block?.fail2ban, 'event=auth_block ip=- login=alice reason=login action=tarpit');
  });

  test('metrics count requests, blocks and refusals', async (t) => {
    const { port, registry } = await serve(t, { ipTarpitAfter: 1 });
    await post(port, '/?command=report', dovecotBody({ success: false }));
    await post(port, '/?command=allow', dovecotBody());
    await post(port, '/?command=allow', 'nope');
    const text = await registry.metrics();
    assert.match(text, /ceerion_auth_policy_requests_total\{command="report",result="failure"\} 1/);
    assert.match(text, /ceerion_auth_policy_requests_total\{command="allow",result="tarpit"\} 1/);
    assert.match(text, /ceerion_auth_policy_requests_total\{command="invalid",result="not-json"\} 1/);
    assert.match(text, /ceerion_auth_policy_blocks_total\{reason="ip",action="tarpit"\} 1/);
  });

  test('Redis down: status 0 (onStoreError allow), a store-error line and metric, no block line', async (t) => {
    const { port, mem, registry } = await serve(t, {}, { redisDown: true });
    assert.deepEqual((await post(port, '/?command=allow', dovecotBody())).json, { status: 0, msg: '' });
    assert.equal((await post(port, '/?command=report', dovecotBody({ success: false }))).status, 200);
    assert.equal(mem.lines.filter((l) => l.msg === 'auth-policy store error').length, 2);
    assert.equal(mem.lines.filter((l) => l.msg === 'auth-policy block').length, 0);
    assert.match(await registry.metrics(), /ceerion_auth_policy_store_errors_total 2/);
  });

  test("Redis down with onStoreError 'reject': -1 with its own text, still no block line", async (t) => {
    const { port, mem } = await serve(t, { onStoreError: 'reject' }, { redisDown: true });
    assert.deepEqual((await post(port, '/?command=allow', dovecotBody({ session_id: 'S1' }))).json, { status: -1, msg: 'Login temporarily unavailable, try again later (ref S1)' });
    assert.equal(mem.lines.filter((l) => l.msg === 'auth-policy block').length, 0);
  });
});

describe('lifecycle', () => {
  test('stop() closes idle keep-alive connections, resolves, and the port refuses afterwards', async (t) => {
    const { server, port } = await serve(t);
    // A keep-alive connection with one request answered, left idle as Dovecot leaves it.
    const socket = net.connect(port, '127.0.0.1');
    const body = dovecotBody();
    socket.write(`POST /?command=allow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await new Promise<void>((r) => socket.once('data', () => r()));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    await server.stop();
    await closed;
    await assert.rejects(post(port, '/?command=allow', body), /ECONNREFUSED/);
    await server.stop(); // idempotent
  });

  test('port 0 picks a free port; a taken port fails start()', async (t) => {
    const { port } = await serve(t);
    assert.ok(port > 0);
    const second = new AuthPolicyServer({ config: policyConfig({ port }), redis: (await testRedis(t)).client, log: memoryLogger().log });
    await assert.rejects(second.start(), /EADDRINUSE/);
  });
});
