// Proves the clamd harness: a private clamd answers on its unix socket and its TCP port, loads
// only our test signature, and is really gone after stop(). Requires root (to install clamav-daemon).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { ClamdError, ping } from '../../milter/clamd/client.ts';
import { clamdVersion, isAlive, startClamd } from './clamd.ts';

test('a private clamd answers PING on its unix socket and TCP port, and stop() removes it', async (t) => {
  const clamd = await startClamd();
  t.after(() => clamd.stop());
  assert.match(clamd.unixSocket, /^unix:\/.*\/clamd\.sock$/);
  assert.match(clamd.tcp, /^inet:127\.0\.0\.1:\d+$/);
  await ping(clamd.unixSocket);
  await ping(clamd.tcp);
  t.diagnostic(`${await clamdVersion()} ready in ${clamd.readyMs} ms`);
  const log = await clamd.log();
  assert.match(log, /Loaded 1 signatures?\./, log);

  await clamd.stop();
  assert.equal(isAlive(clamd.pid), false);
  await assert.rejects(access(clamd.dir));
  await assert.rejects(ping(clamd.tcp), (err: ClamdError) => err.reason === 'unreachable');
  await assert.rejects(ping(clamd.unixSocket), (err: ClamdError) => err.reason === 'unreachable');
});

test('two private clamds run side by side on their own sockets', async (t) => {
  const [a, b] = await Promise.all([startClamd(), startClamd()]);
  assert.ok(a && b);
  t.after(() => Promise.all([a.stop(), b.stop()]));
  assert.notEqual(a.tcp, b.tcp);
  assert.notEqual(a.unixSocket, b.unixSocket);
  await a.stop();
  await ping(b.unixSocket);
  await ping(b.tcp);
});
