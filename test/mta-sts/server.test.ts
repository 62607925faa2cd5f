/**
 * The MTA-STS server over real HTTP on its own port: what a sending MTA fetches, HEAD, the
 * refusals (400 with a logged reason, 404, 405, 413, 431), keep-alive and shutdown, and a
 * fast-check fuzz of Host headers and request targets sent as raw bytes.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { createRegistry } from '../../core/metrics.ts';
import { compilePolicies, parsePolicy, policyId, POLICY_PATH } from '../../mta-sts/policy.ts';
import { decide } from '../../mta-sts/request.ts';
import { hostArb, methodArb, targetArb } from './arbitraries.ts';
import { get, parseResponses, raw, rawExchange, startServer } from './helpers.ts';

test('GET serves each configured domain its policy as text/plain, with the id as ETag', async (t) => {
  const { port, config, server } = await startServer(t);
  const policies = compilePolicies(config);
  for (const [host, domain] of [['mta-sts.example.com', 'example.com'], ['MTA-STS.Example.ORG.:443', 'example.org'], ['mta-sts.gone.example', 'gone.example']] as const) {
    // Node's own client, as any fetcher would send it.
    const res = await fetchPolicy(port, host);
    assert.equal(res.status, 200, host);
    assert.equal(res.headers['content-type'], 'text/plain');
    const expected = policies.get(domain)!;
    assert.equal(res.body, expected.text);
    assert.equal(Number(res.headers['content-length']), Buffer.byteLength(expected.text));
    assert.equal(res.headers.etag, `"${policyId(res.body)}"`);
    assert.deepEqual(parsePolicy(res.body), config.policies[Object.keys(config.policies).find((k) => k.toLowerCase().replace(/\.$/, '') === domain)!]);
  }
  assert.equal(server.policies.get('example.com')!.id, policyId(policies.get('example.com')!.text));
  // A query string is ignored; absolute-form takes the host from the target (RFC 9112 §3.2.2).
  assert.equal((await get(port, 'mta-sts.example.com', `${POLICY_PATH}?nocache=1`)).status, 200);
  const abs = await get(port, 'proxy.internal', `http://mta-sts.example.com${POLICY_PATH}`);
  assert.equal(abs.status, 200);
  assert.match(abs.body, /^version: STSv1\r\nmode: enforce\r\n/);
});

test('HEAD answers the same head without a body', async (t) => {
  const { port } = await startServer(t);
  const head = await raw(port, 'HEAD', POLICY_PATH, [['Host', 'mta-sts.example.com']]);
  const full = await get(port, 'mta-sts.example.com');
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], full.headers['content-length']);
  assert.equal(head.headers.etag, full.headers.etag);
  const text = await rawExchange(port, `HEAD ${POLICY_PATH} HTTP/1.1\r\nHost: mta-sts.example.com\r\nConnection: close\r\n\r\n`);
  assert.ok(text.endsWith('\r\n\r\n'), 'nothing after the head');
});

test('unknown hosts and paths get 404, other methods 405 with Allow, a bad Host 400 with the reason logged', async (t) => {
  const { port, logs } = await startServer(t);
  for (const host of ['example.com', 'mta-sts.other.example', 'www.example.com', '127.0.0.1', '[::1]:80']) {
    assert.equal((await get(port, host)).status, 404, host);
  }
  for (const path of ['/', '/.well-known/', '/.well-known/mta-sts.txt/', '/.well-known/MTA-STS.TXT', '//.well-known/mta-sts.txt']) {
    assert.equal((await get(port, 'mta-sts.example.com', path)).status, 404, path);
  }
  for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
    const r = await raw(port, method, POLICY_PATH, [['Host', 'mta-sts.example.com'], ['Content-Length', '0']]);
    assert.equal(r.status, 405, method);
    assert.equal(r.headers.allow, 'GET, HEAD');
  }
  const cases: Array<[string, string]> = [
    [`GET ${POLICY_PATH} HTTP/1.1\r\nHost: mta_sts.example.com\r\n`, 'Host is not a DNS name'],
    [`GET ${POLICY_PATH} HTTP/1.1\r\nHost: mta-sts.example.com:99999\r\n`, 'port out of range in Host'],
    [`GET ${POLICY_PATH} HTTP/1.1\r\nHost: mta-sts.example.com\r\nHost: mta-sts.example.org\r\n`, '2 Host headers'],
    [`GET ${POLICY_PATH} HTTP/1.0\r\n`, 'no Host header'],
    [`GET ${POLICY_PATH} HTTP/1.1\r\nHost: \r\n`, 'empty Host'],
    [`GET * HTTP/1.1\r\nHost: mta-sts.example.com\r\n`, 'request target is neither /path nor http://host/path'],
  ];
  for (const [head, reason] of cases) {
    const before = logs.length;
    const [res] = parseResponses(await rawExchange(port, `${head}Connection: close\r\n\r\n`));
    assert.equal(res?.status, 400, head);
    assert.equal(res?.headers.connection, 'close');
    const line = logs.slice(before).find((l) => l.msg === 'mta-sts refused request');
    assert.equal(line?.reason, reason, head);
    assert.equal(line?.status, 400);
    assert.equal(line?.level, 40);
  }
});

test('size caps: a body gets 413, an oversized head 431; the server carries on', async (t) => {
  const { port, logs } = await startServer(t, { maxBodyBytes: 16, maxHeaderBytes: 2048 });
  const declared = await raw(port, 'GET', POLICY_PATH, [['Host', 'mta-sts.example.com'], ['Content-Length', '100000']], 'x'.repeat(1000));
  assert.equal(declared.status, 413);
  const chunked = await raw(port, 'GET', POLICY_PATH, [['Host', 'mta-sts.example.com'], ['Transfer-Encoding', 'chunked']], `40\r\n${'y'.repeat(64)}\r\n0\r\n\r\n`);
  assert.equal(chunked.status, 413);
  const small = await raw(port, 'GET', POLICY_PATH, [['Host', 'mta-sts.example.com'], ['Content-Length', '3']], 'abc');
  assert.equal(small.status, 200, 'a body within the cap is read and ignored');
  const big = await raw(port, 'GET', POLICY_PATH, [['Host', 'mta-sts.example.com'], ['X-Pad', 'p'.repeat(4096)]]);
  assert.equal(big.status, 431);
  assert.ok(logs.some((l) => l.status === 431 && l.reason === 'HPE_HEADER_OVERFLOW'));
  assert.ok(logs.some((l) => l.status === 413 && /body over 16 bytes/.test(String(l.reason))));
  assert.equal((await get(port, 'mta-sts.example.com')).status, 200);
});

test('a request that does not arrive within requestTimeoutMs gets 408 and the connection closes', async (t) => {
  const { port, logs } = await startServer(t, { requestTimeoutMs: 300 });
  const started = Date.now();
  const text = await new Promise<string>((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let got = '';
    socket.on('data', (c: Buffer) => (got += c.toString('latin1')));
    socket.once('error', reject);
    socket.once('close', () => resolve(got));
    socket.write(`GET ${POLICY_PATH} HTTP/1.1\r\nHost: mta-sts.example.com\r\n`); // and never the blank line
  });
  assert.match(text, /^HTTP\/1\.1 408 /);
  assert.ok(Date.now() - started < 3_000, `closed after ${Date.now() - started} ms`);
  assert.ok(logs.some((l) => l.status === 408));
});

test('keep-alive serves several requests on one connection; stop() closes idle ones at once', async (t) => {
  const registry = createRegistry(false);
  const { port, server } = await startServer(t, {}, registry);
  const two = `GET ${POLICY_PATH} HTTP/1.1\r\nHost: mta-sts.example.com\r\n\r\nGET ${POLICY_PATH} HTTP/1.1\r\nHost: mta-sts.example.org\r\nConnection: close\r\n\r\n`;
  const [a, b] = parseResponses(await rawExchange(port, two));
  assert.equal(a?.status, 200);
  assert.equal(b?.status, 200);
  assert.notEqual(a?.headers.etag, b?.headers.etag);
  assert.equal((await get(port, 'nobody.example')).status, 404);
  const metrics = await registry.getSingleMetricAsString('ceerion_mta_sts_requests_total');
  assert.match(metrics, /status="200"\} 2/);
  assert.match(metrics, /status="404"\} 1/);

  // An idle keep-alive connection must not hold shutdown open.
  const agent = new http.Agent({ keepAlive: true });
  await fetchPolicy(port, 'mta-sts.example.com', agent);
  const started = Date.now();
  await server.stop();
  assert.ok(Date.now() - started < 1000, `stop took ${Date.now() - started} ms`);
  agent.destroy();
  await assert.rejects(fetchPolicy(port, 'mta-sts.example.com'), /ECONNREFUSED/);
});

const HTTP_RUNS = 3000;

test(`fuzz over HTTP (${HTTP_RUNS} raw requests): every answer is what decide() says, or a parser 400; the server never falls over`, { timeout: 120_000 }, async (t) => {
  const { port, config, logs } = await startServer(t);
  const policies = compilePolicies(config);
  const seen: Record<string, number> = {};
  // CR, LF and NUL would end or corrupt the head itself; everything else goes on the wire as is.
  const wireHost = hostArb.filter((h) => !/[\r\n\0]/.test(h));
  const wireTarget = targetArb.filter((p) => /^[\x21-\x7e]+$/.test(p));
  await fc.assert(
    fc.asyncProperty(methodArb, wireTarget, wireHost, async (method, target, host) => {
      const before = logs.length;
      const text = await rawExchange(port, `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      const [res] = parseResponses(text, method === 'HEAD');
      assert.ok(res, `no answer to ${method} ${target} Host: ${JSON.stringify(host)}`);
      // Node trims spaces and tabs around header values before we see them.
      const want = decide({ method, target, hosts: [host.replace(/^[ \t]+|[ \t]+$/g, '')] }, policies);
      const parserRefused = res.status === 400 && logs.slice(before).some((l) => /^HPE_/.test(String(l.reason)));
      seen[parserRefused ? 'parser-400' : String(res.status)] = (seen[parserRefused ? 'parser-400' : String(res.status)] ?? 0) + 1;
      if (!parserRefused) assert.equal(res.status, want.status, `${method} ${target} Host: ${JSON.stringify(host)}`);
      else assert.notEqual(want.status, 200, `the parser refused a request decide() would serve: ${method} ${target} Host: ${JSON.stringify(host)}`);
      if (res.status === 200 && want.status === 200 && method === 'GET') assert.equal(res.body, want.policy.text);
    }),
    { numRuns: HTTP_RUNS, seed: 8461 },
  );
  t.diagnostic(`answers over ${HTTP_RUNS} requests: ${JSON.stringify(seen)}`);
  for (const status of ['200', '400', '404', '405']) assert.ok((seen[status] ?? 0) > HTTP_RUNS / 50, `status ${status} seen ${seen[status] ?? 0} times`);
  assert.equal((await get(port, 'mta-sts.example.com')).status, 200);
});

interface Fetched {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** GET through Node's http client (a well-behaved fetcher), Host set explicitly. */
function fetchPolicy(port: number, host: string, agent?: http.Agent): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: POLICY_PATH, headers: { host }, ...(agent ? { agent } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (s: string) => (body += s));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.once('error', reject);
  });
}
