import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { createLogger } from '../../../core/log.ts';
import { boundPort, closeHttp, closeIdleWhileStopping, listenHttp } from '../../../core/http/lifecycle.ts';

const log = createLogger('silent');

test('listen resolves the bound port; a port in use rejects instead of crashing', async (t) => {
  const a = http.createServer((_req, res) => res.end('a'));
  const port = await listenHttp(a, { host: '127.0.0.1', port: 0 }, log, 'a');
  t.after(() => closeHttp(a, 100));
  assert.ok(port > 0);
  assert.equal(boundPort(a), port);
  const b = http.createServer();
  await assert.rejects(listenHttp(b, { host: '127.0.0.1', port }, log, 'b'), /EADDRINUSE/);
  assert.equal(boundPort(b), 0);
  await closeHttp(b, 100); // never listened: resolves at once
});

test('stop lets a request in flight finish, drops idle keep-alive sockets, and forces the rest after the grace', async () => {
  let stopping = false;
  let release!: () => void;
  const server = http.createServer((req, res) => {
    closeIdleWhileStopping(server, res, () => stopping);
    if (req.url === '/slow') release = () => res.end('slow done');
    else if (req.url === '/hang') return; // never answered: only the grace period ends it
    else res.end('fast');
  });
  const port = await listenHttp(server, { host: '127.0.0.1', port: 0 }, log, 'test');
  const agent = new http.Agent({ keepAlive: true });
  const get = (p: string) =>
    new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: p, agent }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
  assert.equal(await get('/fast'), 'fast'); // leaves an idle keep-alive socket
  const slow = get('/slow');
  await new Promise((r) => setTimeout(r, 50));
  stopping = true;
  const closed = closeHttp(server, 60_000);
  release();
  assert.equal(await slow, 'slow done', 'the request in flight finished');
  await closed; // the idle sockets did not hold it open for the 60 s grace
  agent.destroy();

  const hung = http.createServer(() => undefined);
  const hungPort = await listenHttp(hung, { host: '127.0.0.1', port: 0 }, log, 'hung');
  const req = http.get({ host: '127.0.0.1', port: hungPort, path: '/hang' });
  const aborted = new Promise((resolve) => req.on('error', resolve));
  await new Promise((r) => setTimeout(r, 50));
  await closeHttp(hung, 100);
  assert.match(String(((await aborted) as Error).message), /socket hang up|ECONNRESET/);
});
