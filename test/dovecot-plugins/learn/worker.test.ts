// The queue and worker against real Redis and a real classifier learn log in a private
// PostgreSQL that the test stops and starts: a learn that fails stays queued and is applied when
// the database is back; an entry that cannot be decoded goes to the dead stream. And the gateway
// socket: garbage gets `-`, a good request gets `+` and lands in the queue.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'node:test';
import { Redis } from 'ioredis';
import { configSchema } from '../../../core/config/schema.ts';
import { silentLogger } from '../../../core/log.ts';
import { classifierLearner } from '../../../dovecot-plugins/learn/service.ts';
import { LearnGateway } from '../../../dovecot-plugins/learn/gateway.ts';
import { LearnQueue } from '../../../dovecot-plugins/learn/queue.ts';
import { encodeScriptHeader } from '../../../dovecot-plugins/learn/script-codec.ts';
import { LearnWorker } from '../../../dovecot-plugins/learn/worker.ts';
import { startPostgres } from '../../harness/postgres.ts';

async function redisWithPrefix(t: test.TestContext): Promise<{ redis: Redis; queue: LearnQueue }> {
  const prefix = `ceerion-test-${randomBytes(5).toString('hex')}:`;
  const redis = new Redis('redis://127.0.0.1:6379', { keyPrefix: prefix });
  t.after(async () => {
    const raw = new Redis('redis://127.0.0.1:6379');
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
    redis.disconnect();
  });
  const queue = new LearnQueue(redis, { stream: 'learn:queue', deadStream: 'learn:dead', group: 'learners', maxLength: 1000 });
  await queue.ensureGroup();
  return { redis, queue };
}

const job = (subject: string) => ({ cls: 'spam' as const, user: 'alice', message: Buffer.from(`Subject: ${subject}\r\n\r\nbuy now\r\n`), source: 'pipe' as const, receivedAt: Date.now() });

test('a learn that fails while PostgreSQL is down stays queued and is applied when it is back', async (t) => {
  const pg = await startPostgres();
  t.after(() => pg.close());
  const config = configSchema.parse({ database: { url: pg.url, schema: 'ceerion' } });
  const { learner, pool } = await classifierLearner(config);
  t.after(() => pool.end());
  const { queue } = await redisWithPrefix(t);
  const worker = new LearnWorker({ queue, learner, scope: 'global', batchSize: 8, retryDelayMs: 200, maxAttempts: 100, blockMs: 100, log: silentLogger });

  await queue.add(job('first'));
  assert.equal(await worker.runOnce(100), 1);
  assert.equal(worker.stats.learned, 1);

  await pg.stop();
  await queue.add(job('while down'));
  await worker.runOnce(100);
  assert.equal(worker.stats.failed, 1, 'the learn failed');
  assert.deepEqual(await queue.counts(), { queued: 1, pending: 1, dead: 0 }, 'and is still queued, pending');

  await pg.start();
  const deadline = Date.now() + 10_000;
  while (worker.stats.learned < 2 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    await worker.runOnce(100).catch(() => 0);
  }
  assert.equal(worker.stats.learned, 2, 'applied after PostgreSQL came back');
  assert.deepEqual(await queue.counts(), { queued: 0, pending: 0, dead: 0 });
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM ceerion.classifier_learned');
  assert.equal(Number(rows[0]!.n), 2);
});

test('an entry that cannot be decoded is buried in the dead stream with its reason', async (t) => {
  const { redis, queue } = await redisWithPrefix(t);
  await redis.xadd('learn:queue', '*', 'v', '1', 'cls', 'eggs', 'user', 'alice', 'msg', 'x');
  const worker = new LearnWorker({
    queue,
    learner: { learn: () => Promise.reject(new Error('must not be called')) },
    scope: 'global',
    batchSize: 8,
    retryDelayMs: 200,
    maxAttempts: 3,
    log: silentLogger,
  });
  await worker.runOnce(100);
  assert.equal(worker.stats.buried, 1);
  assert.deepEqual(await queue.counts(), { queued: 0, pending: 0, dead: 1 });
  const dead = await redis.xrange('learn:dead', '-', '+');
  assert.match(dead[0]![1].join(' '), /spam or ham/);
});

function ask(socket: string, bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let out = '';
    c.on('data', (d) => (out += d.toString()));
    c.on('close', () => resolve(out));
    c.on('error', reject);
    c.end(bytes);
  });
}

test('gateway: a request is queued and answered +; garbage and half requests get -; oversize is skipped with +', async (t) => {
  const { queue } = await redisWithPrefix(t);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-gw-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const socket = path.join(dir, 'ceerion-learn');
  const gateway = new LearnGateway({
    socket,
    socketMode: '0600',
    sink: { accept: async (j) => (await queue.add(j), 'queued') },
    maxMessageBytes: 1000,
    maxHeaderBytes: 512,
    idleTimeoutMs: 500,
    log: silentLogger,
  });
  await gateway.start();
  t.after(() => gateway.stop());
  const header = encodeScriptHeader({ env: { USER: 'alice', HOME: '/x' }, args: ['spam'] });
  assert.equal(await ask(socket, Buffer.concat([header, Buffer.from('Subject: a\r\n\r\nb\r\n')])), '+\n');
  assert.equal(await ask(socket, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), '-\n');
  assert.equal(await ask(socket, header.subarray(0, 20)), '-\n', 'ended inside the header');
  assert.equal(await ask(socket, Buffer.concat([header, Buffer.alloc(5000, 0x61)])), '+\n', 'too large: skipped, the move goes on');
  assert.equal(await ask(socket, Buffer.concat([encodeScriptHeader({ env: { USER: 'alice' }, args: ['eggs'] }), Buffer.from('x')])), '+\n', 'bad class: logged, not queued');
  // A client that connects and sends nothing is dropped after the idle timeout.
  const idle = await new Promise<number>((resolve) => {
    const start = Date.now();
    const c = net.connect(socket);
    c.resume(); // read what we are sent (the `-`), so the close is seen
    c.on('close', () => resolve(Date.now() - start));
    c.on('error', () => undefined);
  });
  assert.ok(idle >= 400 && idle < 3_000, `idle connection closed after ${idle} ms`);
  assert.deepEqual(Object.fromEntries(gateway.outcomes), { queued: 1, 'protocol-error': 2, 'too-large': 1, invalid: 1, timeout: 1 });
  assert.equal((await queue.counts()).queued, 1);
});
