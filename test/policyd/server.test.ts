/**
 * The policy listener's housekeeping: the address it reports, the unix socket's mode, stale and
 * foreign sockets, removal on stop, and the connection gauge. Sessions: session.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../../core/log.ts';
import { PolicyClient } from '../../policyd/client.ts';
import { PolicyServer, type PolicyServerOptions } from '../../policyd/server.ts';
import type { PolicyHandler } from '../../policyd/types.ts';

const dunno: PolicyHandler = { request: async () => 'DUNNO' };
const REQUEST = { request: 'smtpd_access_policy', protocol_state: 'RCPT' };

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ceerion-policyd-server-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function server(t: TestContext, listen: string, over: Partial<PolicyServerOptions> = {}): PolicyServer {
  const s = new PolicyServer({ listen, maxLineBytes: 8192, maxAttributes: 128, idleTimeoutMs: 60_000, shutdownGraceMs: 500, handler: dunno, log: silentLogger, ...over });
  t.after(() => s.stop(100));
  return s;
}

test('TCP on port 0: start returns the bound address in Postfix notation, and it answers', async (t) => {
  const s = server(t, 'inet:127.0.0.1:0');
  const address = await s.start();
  const port = Number(/^inet:127\.0\.0\.1:(\d+)$/.exec(address)?.[1]);
  assert.ok(port > 0 && port < 65536, address);
  assert.equal(s.address, address);
  const c = await PolicyClient.connect(address);
  t.after(() => c.destroy());
  assert.equal(await c.request(REQUEST), 'DUNNO');
});

test('unix socket: created in a new directory with mode 0666 (or socketMode), removed on stop', async (t) => {
  const dir = tempDir(t);
  for (const [mode, want] of [[undefined, 0o666], [0o660, 0o660]] as const) {
    const sock = path.join(dir, `sub-${want.toString(8)}`, 'policy.sock');
    const s = server(t, `unix:${sock}`, mode === undefined ? {} : { socketMode: mode });
    assert.equal(await s.start(), `unix:${sock}`);
    assert.ok(statSync(sock).isSocket());
    assert.equal(statSync(sock).mode & 0o777, want);
    const c = await PolicyClient.connect(`unix:${sock}`);
    assert.equal(await c.request(REQUEST), 'DUNNO');
    await s.stop();
    await c.waitClosed();
    assert.throws(() => statSync(sock), { code: 'ENOENT' });
  }
});

test('unix socket: a stale socket left by a killed process is replaced', async (t) => {
  const sock = path.join(tempDir(t), 'policy.sock');
  const child = spawn(process.execPath, ['-e', "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))", sock]);
  const [, signal] = await once(child, 'exit');
  assert.equal(signal, 'SIGKILL');
  assert.ok(statSync(sock).isSocket(), 'the killed process left its socket behind');
  const s = server(t, `unix:${sock}`);
  await s.start();
  const c = await PolicyClient.connect(`unix:${sock}`);
  t.after(() => c.destroy());
  assert.equal(await c.request(REQUEST), 'DUNNO');
});

test('unix socket: a regular file or a live socket is refused, and left in place', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'not-a-socket');
  writeFileSync(file, 'keep me');
  await assert.rejects(server(t, `unix:${file}`).start(), /exists and is not a socket; refusing to remove it/);
  assert.ok(statSync(file).isFile());

  const sock = path.join(dir, 'live.sock');
  const first = server(t, `unix:${sock}`);
  await first.start();
  const second = server(t, `unix:${sock}`);
  await assert.rejects(second.start(), /is in use by another running process/);
  await second.stop();
  // The failed second server must not have removed the first one's socket.
  const c = await PolicyClient.connect(`unix:${sock}`);
  t.after(() => c.destroy());
  assert.equal(await c.request(REQUEST), 'DUNNO');
});

test('metrics: sessions opened and open now; no registry means no metrics and no error', { timeout: 30_000 }, async (t) => {
  const registry = new Registry();
  const s = server(t, 'inet:127.0.0.1:0', { registry });
  const address = await s.start();
  const value = async (name: string) => (await registry.getSingleMetric(name)!.get()).values.reduce((sum, v) => sum + v.value, 0);
  const a = await PolicyClient.connect(address);
  const b = await PolicyClient.connect(address);
  await a.request(REQUEST);
  await b.request(REQUEST);
  assert.equal(await value('ceerion_policyd_sessions_total'), 2);
  assert.equal(await value('ceerion_policyd_sessions_active'), 2);
  assert.equal(s.activeSessions, 2);
  await a.close();
  // Our side closing does not mean the server has processed it yet: wait for its own view.
  while (s.activeSessions > 1) await new Promise((r) => setImmediate(r));
  assert.equal(await value('ceerion_policyd_sessions_active'), 1);
  b.destroy();

  const bare = server(t, 'inet:127.0.0.1:0');
  const c = await PolicyClient.connect(await bare.start());
  t.after(() => c.destroy());
  assert.equal(await c.request(REQUEST), 'DUNNO');
});
