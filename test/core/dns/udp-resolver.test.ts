// The UDP resolver against a private dnsmasq: every record type in Node's shapes (checked against
// Node's own resolver on the same server), negative answers, TTLs, and the failure paths
// (a server that never answers, a closed port, REFUSED, close()).
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import dgram from 'node:dgram';
import dns from 'node:dns';
import { Resolver } from 'node:dns/promises';
import { after, before, describe, test } from 'node:test';
import { createUdpResolver, NegativeAnswer, parseServer, type UdpResolver } from '../../../core/dns/udp-resolver.ts';
import { DnsError } from '../../../core/dns/types.ts';
import { startDnsmasq, type Dnsmasq } from '../../harness/dnsmasq.ts';
import { startBlackHole } from './dns-server.ts';

const dkimKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
const DKIM = `v=DKIM1; k=rsa; p=${dkimKey}`;

const isDnsError = (code: string) => (err: unknown) => err instanceof DnsError && err.code === code;

describe('udp resolver against dnsmasq', () => {
  let dnsmasq: Dnsmasq;
  let resolve: UdpResolver;
  let node: Resolver;
  before(async () => {
    dnsmasq = await startDnsmasq({
      ttl: 120,
      a: { 'mx1.example.test': ['192.0.2.10', '192.0.2.11'] },
      aaaa: { 'mx1.example.test': ['2001:db8::10'] },
      txt: {
        'example.test': ['v=spf1 ip4:192.0.2.0/24 -all', ['first chunk ', 'second chunk']],
        'sel._domainkey.example.test': [DKIM],
        '_dmarc.example.test': ['v=DMARC1; p=reject; rua=mailto:d@example.test'],
      },
      mx: { 'example.test': [{ exchange: 'mx1.example.test', priority: 10 }, { exchange: 'mx2.example.test', priority: 20 }] },
      ptr: { '192.0.2.10': ['mx1.example.test'] },
      cname: { 'www.example.test': 'mx1.example.test' },
    });
    resolve = createUdpResolver({ servers: [dnsmasq.server], timeoutMs: 1000, tries: 2 });
    node = new Resolver({ timeout: 1000, tries: 2 });
    node.setServers([dnsmasq.server]);
  });
  after(async () => {
    resolve.close();
    await dnsmasq.stop();
  });

  const sorted = (v: unknown): unknown => (Array.isArray(v) ? [...v].map((x) => JSON.stringify(x)).sort() : v);

  const cases: Array<[string, string, unknown]> = [
    ['mx1.example.test', 'A', ['192.0.2.10', '192.0.2.11']],
    ['mx1.example.test', 'AAAA', ['2001:db8::10']],
    ['example.test', 'TXT', [['v=spf1 ip4:192.0.2.0/24 -all'], ['first chunk ', 'second chunk']]],
    ['_dmarc.example.test', 'TXT', [['v=DMARC1; p=reject; rua=mailto:d@example.test']]],
    ['example.test', 'MX', [{ exchange: 'mx1.example.test', priority: 10 }, { exchange: 'mx2.example.test', priority: 20 }]],
    ['10.2.0.192.in-addr.arpa', 'PTR', ['mx1.example.test']],
    ['www.example.test', 'CNAME', ['mx1.example.test']],
    // The CNAME is followed to the target's addresses.
    ['www.example.test', 'A', ['192.0.2.10', '192.0.2.11']],
  ];
  for (const [name, type, want] of cases) {
    test(`${type} ${name} in the same shape as Node's resolver`, async () => {
      const got = await resolve(name, type);
      assert.deepEqual(sorted(got), sorted(want));
      assert.deepEqual(sorted(got), sorted(await node.resolve(name, type)));
    });
  }

  test('a 2048-bit DKIM key comes back as one record of several chunks', async () => {
    assert.ok(DKIM.length > 400, `DKIM record is ${DKIM.length} chars`);
    const got = (await resolve('sel._domainkey.example.test', 'TXT')) as string[][];
    assert.equal(got.length, 1);
    const chunks = got[0]!;
    assert.ok(chunks.length >= 2 && chunks.every((c) => c.length <= 255), `chunk lengths ${chunks.map((c) => c.length)}`);
    assert.equal(chunks.join(''), DKIM);
    assert.deepEqual(got, await node.resolveTxt('sel._domainkey.example.test'));
  });

  test('names are case-insensitive and may end with a dot', async () => {
    assert.deepEqual(await resolve('EXAMPLE.Test.', 'mx'), await resolve('example.test', 'MX'));
  });

  test('TTLs are reported', async () => {
    const { answer, ttl } = await resolve.resolveWithTtl('mx1.example.test', 'A');
    assert.equal(answer.length, 2);
    assert.equal(ttl, 120);
  });

  test('NXDOMAIN is ENOTFOUND, as from Node', async () => {
    await assert.rejects(resolve('nope.example.test', 'A'), isDnsError('ENOTFOUND'));
    await assert.rejects(node.resolve4('nope.example.test'), { code: 'ENOTFOUND' });
  });

  test('no record of the type is ENODATA, as from Node', async () => {
    await assert.rejects(resolve('_dmarc.example.test', 'MX'), isDnsError('ENODATA'));
    await assert.rejects(node.resolveMx('_dmarc.example.test'), { code: 'ENODATA' });
  });

  test('negative answers carry their TTL (dnsmasq sends no SOA: undefined)', async () => {
    const err = await resolve.resolveWithTtl('nope.example.test', 'TXT').catch((e: unknown) => e);
    assert.ok(err instanceof NegativeAnswer);
    assert.equal(err.ttl, undefined);
  });

  test('no servers configured: the system ones (dns.getServers()) are used', async (t) => {
    const system = dns.getServers();
    dns.setServers([dnsmasq.server]);
    t.after(() => dns.setServers(system));
    const fromSystem = createUdpResolver({ servers: [], timeoutMs: 1000, tries: 1 });
    t.after(() => fromSystem.close());
    assert.deepEqual(await fromSystem('mx1.example.test', 'AAAA'), ['2001:db8::10']);
  });

  test('an unsupported type is a programming error', async () => {
    await assert.rejects(resolve('example.test', 'SRV'), TypeError);
  });
});

describe('udp resolver failures', () => {
  test('a server that never answers: ETIMEOUT within timeoutMs × tries, one query per try', async (t) => {
    const hole = await startBlackHole();
    t.after(() => hole.close());
    const resolve = createUdpResolver({ servers: [hole.server], timeoutMs: 150, tries: 3 });
    const start = Date.now();
    await assert.rejects(resolve('example.test', 'TXT'), isDnsError('ETIMEOUT'));
    const took = Date.now() - start;
    assert.ok(took >= 440 && took < 450 + 400, `took ${took}ms`);
    assert.equal(hole.received(), 3);
  });

  test('the next server answers when the first is silent', async (t) => {
    const hole = await startBlackHole();
    t.after(() => hole.close());
    const dnsmasq = await startDnsmasq({ a: { 'h.example.test': ['192.0.2.1'] } });
    t.after(() => dnsmasq.stop());
    const resolve = createUdpResolver({ servers: [hole.server, dnsmasq.server], timeoutMs: 200, tries: 2 });
    const start = Date.now();
    assert.deepEqual(await resolve('h.example.test', 'A'), ['192.0.2.1']);
    assert.ok(Date.now() - start >= 190, 'waited for the first server');
    assert.equal(hole.received(), 1);
  });

  test('a closed port fails fast with ECONNREFUSED', async () => {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const port = sock.address().port;
    await new Promise<void>((r) => sock.close(() => r()));
    const resolve = createUdpResolver({ servers: [`127.0.0.1:${port}`], timeoutMs: 2000, tries: 2 });
    const start = Date.now();
    await assert.rejects(resolve('example.test', 'A'), isDnsError('ECONNREFUSED'));
    assert.ok(Date.now() - start < 1000);
  });

  test('REFUSED from every server is EREFUSED', async (t) => {
    const dnsmasq = await startDnsmasq({ a: { 'h.example.test': ['192.0.2.1'] }, nxdomainOthers: false });
    t.after(() => dnsmasq.stop());
    const resolve = createUdpResolver({ servers: [dnsmasq.server], timeoutMs: 500, tries: 2 });
    await assert.rejects(resolve('other.example.test', 'A'), isDnsError('EREFUSED'));
    assert.deepEqual(await resolve('h.example.test', 'A'), ['192.0.2.1']);
  });

  test('close() ends lookups in flight and refuses new ones', async (t) => {
    const hole = await startBlackHole();
    t.after(() => hole.close());
    const resolve = createUdpResolver({ servers: [hole.server], timeoutMs: 5000, tries: 2 });
    const pending = resolve('example.test', 'A');
    await new Promise((r) => setTimeout(r, 50));
    const start = Date.now();
    resolve.close();
    await assert.rejects(pending, isDnsError('ECONNREFUSED'));
    assert.ok(Date.now() - start < 500);
    await assert.rejects(resolve('example.test', 'A'), isDnsError('ECONNREFUSED'));
  });
});

describe('parseServer', () => {
  const good: Array<[string, ReturnType<typeof parseServer>]> = [
    ['192.0.2.53', { host: '192.0.2.53', port: 53, family: 4 }],
    ['127.0.0.1:5353', { host: '127.0.0.1', port: 5353, family: 4 }],
    ['2001:db8::53', { host: '2001:db8::53', port: 53, family: 6 }],
    ['[2001:db8::53]:5353', { host: '2001:db8::53', port: 5353, family: 6 }],
    ['[::1]', { host: '::1', port: 53, family: 6 }],
  ];
  for (const [text, want] of good) test(`parses ${text}`, () => assert.deepEqual(parseServer(text), want));
  for (const bad of ['', 'dns.example', '127.0.0.1:0', '127.0.0.1:70000', '[::1]:x', '1.2.3:53']) {
    test(`rejects ${JSON.stringify(bad)}`, () => assert.throws(() => parseServer(bad), /invalid DNS server/));
  }
});
