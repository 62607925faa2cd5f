/**
 * `ceerion lmtp` as an operator runs it: a child process with its config from CEERION_* variables,
 * answering LMTP, serving /healthz, and exiting 0 on SIGTERM. Dovecot is deliberately absent here
 * (its address refuses connections), so the answer must be a 4xx that keeps the mail in Postfix.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { lmtpSend } from '../helpers/lmtp-client.ts';
import { freePort } from '../harness/postfix.ts';
import { testSchema } from '../harness/postgres.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

test('ceerion lmtp: runs from environment config, defers when Dovecot is down, reports health, exits 0 on SIGTERM', async (t) => {
  const db = testSchema(t);
  const work = await mkdtemp(path.join(os.tmpdir(), 'ceerion-cli-lmtp-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const [lmtpPort, httpPort, deadPort] = [await freePort(), await freePort(), await freePort()];
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST')));
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/ceerion.mjs'), 'lmtp', '--metrics-port', '0'], {
    cwd: work,
    env: {
      ...env,
      CEERION_DATABASE_URL: db.url,
      CEERION_DATABASE_SCHEMA: db.schema,
      CEERION_LMTP_LISTEN: `inet:127.0.0.1:${lmtpPort}`,
      CEERION_LMTP_DOVECOT_ADDRESS: `inet:127.0.0.1:${deadPort}`,
      CEERION_LMTP_HTTP_PORT: String(httpPort),
      CEERION_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout!.resume();
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(lmtpPort, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (i > 300 || child.exitCode !== null) assert.fail(`ceerion lmtp did not listen: ${stderr}`);
    await sleep(100);
  }
  assert.match(stderr, new RegExp(`lmtp indexer on inet:127\\.0\\.0\\.1:${lmtpPort}, API on http://127\\.0\\.0\\.1:${httpPort}/`));
  const tr = await lmtpSend({ port: lmtpPort }, { from: 'a@example.net', to: ['alice@example.test'], message: 'Subject: x\r\n\r\nbody\r\n' });
  assert.match(tr.results[0]!.line, /^451 4\.4\.1 Dovecot LMTP at inet:127\.0\.0\.1:\d+ unreachable/);
  const health = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { database: true, backlog: 0 });
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, stderr);
});
