// Proves the dnsmasq harness itself, read back through Node's own resolver (not ours): the records
// it serves, long TXT records split into chunks, quoting, TTLs, REFUSED vs NXDOMAIN, and that
// instances are private and really stop.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { access } from 'node:fs/promises';
import { Resolver } from 'node:dns/promises';
import { describe, test } from 'node:test';
import { dnsmasqConfig, reverseName, startDnsmasq, txtChunks } from './dnsmasq.ts';

function nodeResolver(server: string): Resolver {
  const r = new Resolver({ timeout: 500, tries: 1 });
  r.setServers([server]);
  return r;
}

describe('dnsmasq config', () => {
  test('TXT text is split into 255-byte strings', () => {
    assert.deepEqual(txtChunks(''), ['']);
    assert.deepEqual(txtChunks('a'.repeat(255)), ['a'.repeat(255)]);
    assert.deepEqual(txtChunks('a'.repeat(600)), ['a'.repeat(255), 'a'.repeat(255), 'a'.repeat(90)]);
    assert.throws(() => txtChunks('line\nbreak'), /printable ASCII/);
  });

  test('quotes and backslashes are escaped; one txt-record line per record', () => {
    const conf = dnsmasqConfig({ txt: { 'x.test': ['say "hi" \\ bye', ['one', 'two']] }, nxdomainOthers: false });
    assert.match(conf, /^txt-record=x\.test,"say \\"hi\\" \\\\ bye"$/m);
    assert.match(conf, /^txt-record=x\.test,"one","two"$/m);
    assert.doesNotMatch(conf, /local=/);
  });

  test('bad names, addresses and chunks are refused', () => {
    assert.throws(() => dnsmasqConfig({ a: { 'x.test\nserver=8.8.8.8': ['192.0.2.1'] } }), /invalid DNS name/);
    assert.throws(() => dnsmasqConfig({ a: { 'x.test': ['2001:db8::1'] } }), /not an IPv4 address/);
    assert.throws(() => dnsmasqConfig({ txt: { 'x.test': [['a'.repeat(256)]] } }), /over 255 bytes/);
  });

  test('reverse names', () => {
    assert.equal(reverseName('192.0.2.1'), '1.2.0.192.in-addr.arpa');
    assert.equal(reverseName('2001:db8::1'), `1.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.ip6.arpa`);
    assert.equal(reverseName('1.2.0.192.in-addr.arpa'), '1.2.0.192.in-addr.arpa');
  });
});

describe('private dnsmasq', () => {
  test('serves the records it is given', async (t) => {
    const dkim = `v=DKIM1; k=rsa; p=${generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
    const spf = 'v=spf1 ip4:192.0.2.0/24 include:_spf.example.test ~all';
    const tricky = 'a "quoted", #not-a-comment; back\\slash';
    const dns = await startDnsmasq({
      a: { 'mx.example.test': ['192.0.2.25'] },
      aaaa: { 'mx.example.test': ['2001:db8::25'] },
      txt: { 'example.test': [spf], 's1._domainkey.example.test': [dkim], 'tricky.example.test': [tricky] },
      mx: { 'example.test': [{ exchange: 'mx.example.test', priority: 10 }] },
      ptr: { '192.0.2.25': ['mx.example.test'], '2001:db8::25': ['mx6.example.test'] },
      ttl: 300,
    });
    t.after(() => dns.stop());
    assert.match(dns.server, /^127\.0\.0\.1:\d+$/);
    const r = nodeResolver(dns.server);

    assert.deepEqual(await r.resolve4('mx.example.test', { ttl: true }), [{ address: '192.0.2.25', ttl: 300 }]);
    assert.deepEqual(await r.resolve6('mx.example.test'), ['2001:db8::25']);
    assert.deepEqual(await r.resolveMx('example.test'), [{ exchange: 'mx.example.test', priority: 10 }]);
    assert.deepEqual(await r.resolveTxt('example.test'), [[spf]]);
    assert.deepEqual(await r.resolveTxt('tricky.example.test'), [[tricky]]);
    assert.deepEqual(await r.reverse('192.0.2.25'), ['mx.example.test']);
    assert.deepEqual(await r.reverse('2001:db8::25'), ['mx6.example.test']);

    // A 2048-bit DKIM key (~400 chars) is one TXT record of 255-byte strings.
    assert.ok(dkim.length > 390, `${dkim.length}`);
    const [record, ...more] = await r.resolveTxt('s1._domainkey.example.test');
    assert.equal(more.length, 0);
    assert.deepEqual(record, txtChunks(dkim));
    assert.equal(record?.join(''), dkim);

    await assert.rejects(r.resolve4('other.example.test'), { code: 'ENOTFOUND' });
    await assert.rejects(r.resolveTxt('mx.example.test'), { code: 'ENODATA' });
    assert.match(dns.output(), /query\[TXT\] s1\._domainkey\.example\.test from 127\.0\.0\.1/);
  });

  test('without nxdomainOthers, unknown names are REFUSED', async (t) => {
    const dns = await startDnsmasq({ a: { 'h.example.test': ['192.0.2.1'] }, nxdomainOthers: false });
    t.after(() => dns.stop());
    await assert.rejects(nodeResolver(dns.server).resolve4('other.example.test'), { code: 'EREFUSED' });
  });

  test('instances are separate and stop for good', async () => {
    const [a, b] = await Promise.all([startDnsmasq({ a: { 'x.test': ['192.0.2.1'] } }), startDnsmasq({ a: { 'x.test': ['192.0.2.2'] } })]);
    assert.ok(a && b);
    assert.notEqual(a.port, b.port);
    assert.deepEqual(await nodeResolver(a.server).resolve4('x.test'), ['192.0.2.1']);
    assert.deepEqual(await nodeResolver(b.server).resolve4('x.test'), ['192.0.2.2']);
    await a.stop();
    await a.stop(); // idempotent
    await assert.rejects(nodeResolver(a.server).resolve4('x.test'), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED' || e.code === 'ETIMEOUT');
    assert.deepEqual(await nodeResolver(b.server).resolve4('x.test'), ['192.0.2.2']);
    await b.stop();
    for (const d of [a, b]) await assert.rejects(access(d.dir));
  });
});
