/**
 * The pure parts of MTA-STS: rendering a policy (RFC 8461 §3.2), its id, the strict parser, the
 * config section, and the request decision (Host and path), the last fuzzed with fast-check
 * against an oracle written independently of request.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseConfig } from '../../core/config/load.ts';
import { mtaStsSchema } from '../../core/config/mta-sts.ts';
import { compilePolicies, parsePolicy, policyFor, policyId, POLICY_PATH, renderPolicy, txtRecord } from '../../mta-sts/policy.ts';
import { decide, parseHost, parseTarget } from '../../mta-sts/request.ts';
import { hostArb, methodArb, targetArb } from './arbitraries.ts';
import { POLICIES } from './helpers.ts';

const config = mtaStsSchema.parse({ policies: POLICIES });
const policies = compilePolicies(config);

test('a policy renders as RFC 8461 lines: version first, mode, one mx per pattern, max_age, CRLF endings', () => {
  assert.equal(
    renderPolicy({ mode: 'enforce', mx: ['mx1.example.com', '*.mx.example.net'], maxAge: 86400 }),
    'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mx.example.net\r\nmax_age: 86400\r\n',
  );
  assert.equal(renderPolicy({ mode: 'none', mx: [], maxAge: 0 }), 'version: STSv1\r\nmode: none\r\nmax_age: 0\r\n');
});

test('the id is 32 alphanumerics derived from the policy text: stable, and different for any change', () => {
  const base = { mode: 'enforce' as const, mx: ['mx1.example.com'], maxAge: 604800 };
  const id = policyId(renderPolicy(base));
  assert.match(id, /^[A-Za-z0-9]{32}$/);
  assert.equal(policyId(renderPolicy({ ...base })), id);
  for (const changed of [{ ...base, mode: 'testing' as const }, { ...base, mx: ['mx2.example.com'] }, { ...base, mx: ['mx1.example.com', 'mx2.example.com'] }, { ...base, maxAge: 86400 }]) {
    assert.notEqual(policyId(renderPolicy(changed)), id, JSON.stringify(changed));
  }
  assert.equal(txtRecord(renderPolicy(base)), `v=STSv1; id=${id}`);
});

test('config: domains and mx are normalised; enforce/testing need an mx; errors name the key', () => {
  const sts = policyFor(config, 'EXAMPLE.org');
  assert.equal(sts?.domain, 'example.org');
  assert.deepEqual(sts?.policy, { mode: 'testing', mx: ['mx1.example.com'], maxAge: 604800 });
  assert.equal(policyFor(config, 'other.example'), undefined);
  assert.deepEqual([...policies.keys()], ['example.com', 'example.org', 'gone.example']);
  const defaults = parseConfig({}).mtaSts;
  assert.equal(defaults.host, '127.0.0.1');
  assert.equal(defaults.port, 10045);
  assert.deepEqual(defaults.policies, {});
  const bad: Array<[unknown, RegExp]> = [
    [{ policies: { 'example.com': { mode: 'enforce' } } }, /mtaSts\.policies\.example\.com\.mx: mode enforce needs at least one mx host/],
    [{ policies: { 'example.com': { mode: 'strict', mx: ['a.example'] } } }, /mtaSts\.policies\.example\.com\.mode = "strict"/],
    [{ policies: { 'example.com': { mx: ['a b'] } } }, /mx\.0 = "a b": an MX host name or \*\.domain/],
    [{ policies: { 'example.com': { mx: ['a.example'], maxAge: 31557601 } } }, /maxAge = 31557601/],
    [{ policies: { 'exa mple.com': { mx: ['a.example'] } } }, /mtaSts\.policies\.exa mple\.com = .*: a domain name/],
    [{ policies: { 'example.com': { mx: ['a.example'] }, 'EXAMPLE.COM.': { mx: ['a.example'] } } }, /example\.com is configured twice/],
    [{ policies: { 'example.com': { mx: ['a.example'], id: 'x' } } }, /mtaSts\.policies\.example\.com\.id = "x": unknown key/],
    [{ listen: 'inet:0.0.0.0:443' }, /mtaSts\.listen = "inet:0\.0\.0\.0:443": unknown key/],
  ];
  for (const [mtaSts, pattern] of bad) assert.throws(() => parseConfig({ mtaSts }), pattern, JSON.stringify(mtaSts));
});

test('parsePolicy reads what renderPolicy writes, LF or CRLF, and refuses what the ABNF does not allow', () => {
  const p = { mode: 'testing' as const, mx: ['mx.example.com', '*.example.net'], maxAge: 3600 };
  assert.deepEqual(parsePolicy(renderPolicy(p)), p);
  assert.deepEqual(parsePolicy(renderPolicy(p).replace(/\r\n/g, '\n')), p);
  assert.deepEqual(parsePolicy('version: STSv1\nmode: none\nmax_age: 0\nextension_x: some value \n'), { mode: 'none', mx: [], maxAge: 0 });
  const bad: Array<[string, RegExp]> = [
    ['mode: enforce\r\nversion: STSv1\r\nmx: a.example\r\nmax_age: 1\r\n', /first line/],
    ['version: STSv1\r\nmode: enforce\r\nmx: a.example\r\n', /no max_age/],
    ['version: STSv1\r\nmode: enforce\r\nmode: testing\r\nmx: a.example\r\nmax_age: 1\r\n', /more than one mode/],
    ['version: STSv1\r\nmode: enforce\r\nmax_age: 1\r\n', /without mx/],
    ['version: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmax_age: 31557601\r\n', /max_age/],
    ['version: STSv1\r\nmode: enforce\r\nmx: *.*.example\r\nmax_age: 1\r\n', /is not a host name/],
    ['version: STSv1\r\nmode: enforce\r\nmx a.example\r\nmax_age: 1\r\n', /line 3/],
    ['version: STSv1\r\nmode: enforce\r\nmx: a=b\r\nmax_age: 1\r\n', /line 3/],
  ];
  for (const [text, pattern] of bad) assert.throws(() => parsePolicy(text), pattern, JSON.stringify(text));
});

test('Host parsing: case, trailing dot and port are normalised; anything that is not a name is a reason', () => {
  assert.deepEqual(parseHost('MTA-STS.Example.COM.:443'), { ok: true, name: 'mta-sts.example.com', ip: false });
  assert.deepEqual(parseHost('mta-sts.example.com:'), { ok: true, name: 'mta-sts.example.com', ip: false });
  assert.deepEqual(parseHost('192.0.2.1:80'), { ok: true, name: '192.0.2.1', ip: true });
  assert.deepEqual(parseHost('[2001:db8::1]:443'), { ok: true, name: '[2001:db8::1]', ip: true });
  for (const [value, reason] of [
    ['', /empty/],
    ['mta-sts.example.com:99999', /port out of range/],
    ['mta-sts.example.com:80:80', /name\[:port\]/],
    ['mta_sts.example.com', /not a DNS name/],
    ['mta-sts..example.com', /not a DNS name/],
    ['-mta-sts.example.com', /not a DNS name/],
    ['mta-sts.example.com/x', /not a DNS name/],
    ['a'.repeat(64) + '.example.com', /not a DNS name/],
    ['[zz::1]', /IPv6/],
    ['x'.repeat(300), /longer than 260/],
  ] as const) {
    const r = parseHost(value);
    assert.equal(r.ok, false, value);
    if (!r.ok) assert.match(r.reason, reason, value);
  }
  assert.deepEqual(parseTarget('http://mta-sts.example.com:80/.well-known/mta-sts.txt?x=1'), { ok: true, authority: 'mta-sts.example.com:80', path: POLICY_PATH });
  assert.deepEqual(parseTarget('HTTP://h'), { ok: true, authority: 'h', path: '/' });
  assert.equal(parseTarget('*').ok, false);
  assert.equal(parseTarget('http://user@h/').ok, false);
});

test('decide: 200 for the policy path on mta-sts.<configured>, else 400/404/405 with a reason', () => {
  const d = (method: string, target: string, ...hosts: string[]) => decide({ method, target, hosts }, policies);
  const ok = d('GET', POLICY_PATH, 'mta-sts.example.com');
  assert.equal(ok.status, 200);
  if (ok.status === 200) assert.equal(ok.policy.text, renderPolicy(config.policies['example.com']!));
  assert.equal(d('HEAD', `${POLICY_PATH}?cache=1`, 'MTA-STS.EXAMPLE.ORG.').status, 200);
  assert.equal(d('GET', `http://mta-sts.example.com${POLICY_PATH}`, 'wrong.example').status, 200);
  assert.equal(d('GET', `http://wrong.example${POLICY_PATH}`, 'mta-sts.example.com').status, 404);
  assert.deepEqual(d('GET', POLICY_PATH), { status: 400, reason: 'no Host header' });
  assert.deepEqual(d('GET', POLICY_PATH, 'mta-sts.example.com', 'mta-sts.example.com'), { status: 400, reason: '2 Host headers' });
  assert.deepEqual(d('GET', POLICY_PATH, 'a b'), { status: 400, reason: 'Host is not a DNS name' });
  assert.deepEqual(d('POST', POLICY_PATH, 'mta-sts.example.com'), { status: 405, reason: 'method POST' });
  assert.equal(d('GET', POLICY_PATH, 'example.com').status, 404);
  assert.equal(d('GET', POLICY_PATH, 'mta-sts.other.example').status, 404);
  for (const path of ['/', '/.well-known/mta-sts.txt/', '/.well-known/MTA-STS.txt', '//.well-known/mta-sts.txt', '/./.well-known/mta-sts.txt', '/.well-known/mta%2Dsts.txt']) {
    assert.equal(d('GET', path, 'mta-sts.example.com').status, 404, path);
  }
});

/** The oracle: what the answer must be, from RFC 9112 and RFC 1123, written without looking at request.ts. */
function expected(method: string, target: string, host: string): number {
  let authority = host;
  let path: string;
  if (target.startsWith('/')) path = target.split('?')[0]!;
  else {
    const abs = /^https?:\/\/(.*)$/is.exec(target);
    if (!abs || abs[1]!.includes('#')) return 400;
    const rest = abs[1]!;
    const cut = rest.search(/[/?]/);
    authority = cut < 0 ? rest : rest.slice(0, cut);
    const after = cut < 0 ? '' : rest.slice(cut);
    if (authority.includes('@')) return 400;
    path = after.startsWith('/') ? after.split('?')[0]! : '/';
  }
  let name: string | undefined;
  let port: string | undefined;
  const v6 = /^\[[0-9a-fA-F:.]{2,45}\](?::(\d{0,5}))?$/.exec(authority);
  if (v6) port = v6[1];
  else {
    const m = /^([^:]*)(?::(\d{0,5}))?$/.exec(authority);
    if (!m) return 400;
    name = m[1]!.toLowerCase().replace(/\.$/, '');
    port = m[2];
    const labels = name.split('.');
    if (name.length === 0 || name.length > 253 || !labels.every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l))) return 400;
  }
  if (port && Number(port) > 65535) return 400;
  if (method !== 'GET' && method !== 'HEAD') return 405;
  const configured = ['mta-sts.example.com', 'mta-sts.example.org', 'mta-sts.gone.example'];
  return name !== undefined && configured.includes(name) && path === POLICY_PATH ? 200 : 404;
}

const PURE_RUNS = 20_000;

test(`fuzz decide (${PURE_RUNS} runs): never throws, 200 exactly when the oracle says, right policy, status always known`, (t) => {
  const seen: Record<number, number> = {};
  fc.assert(
    fc.property(methodArb, targetArb, hostArb, (method, target, host) => {
      const d = decide({ method, target, hosts: [host] }, policies);
      seen[d.status] = (seen[d.status] ?? 0) + 1;
      assert.ok([200, 400, 404, 405].includes(d.status));
      assert.equal(d.status, expected(method, target, host), `${method} ${JSON.stringify(target)} Host: ${JSON.stringify(host)} → ${JSON.stringify(d)}`);
      if (d.status === 200) assert.equal(d.policy, policies.get(d.domain));
      else assert.ok(d.reason.length > 0);
    }),
    { numRuns: PURE_RUNS, seed: 8461 },
  );
  // The generators must reach every answer often, or the property proves little.
  t.diagnostic(`answers over ${PURE_RUNS} runs: ${JSON.stringify(seen)}`);
  for (const status of [200, 400, 404, 405]) assert.ok((seen[status] ?? 0) > PURE_RUNS / 20, `status ${status} seen ${seen[status] ?? 0} times`);
});
