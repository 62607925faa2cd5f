// The key helpers: tables of real-world shapes (postgrey's normalisation, BATV variants, IPv4 and
// IPv6 networks), then properties over arbitrary input: nothing throws, normalising twice changes
// nothing, and every address lies inside the network computed for it (checked with Node's own
// BlockList, not with our parser).
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { clientNetwork, normalizeSender, recipientLocalPart, senderDomain } from '../../../policyd/store/keys.ts';

describe('clientNetwork', () => {
  test('IPv4 networks at common prefixes', () => {
    const cases: Array<[string, number, string]> = [
      ['192.0.2.7', 24, '192.0.2.0/24'],
      ['192.0.2.7', 32, '192.0.2.7/32'],
      ['192.0.2.255', 25, '192.0.2.128/25'],
      ['203.0.113.77', 16, '203.0.0.0/16'],
      ['10.1.2.3', 8, '10.0.0.0/8'],
      ['255.255.255.255', 0, '0.0.0.0/0'],
      ['198.51.100.9', 31, '198.51.100.8/31'],
    ];
    for (const [ip, bits, want] of cases) assert.equal(clientNetwork(ip, bits, 64), want, `${ip}/${bits}`);
  });

  test('IPv6 networks in RFC 5952 text, whatever form the address came in', () => {
    const cases: Array<[string, number, string]> = [
      ['2001:db8:1:2:3:4:5:6', 64, '2001:db8:1:2::/64'],
      ['2001:0DB8:0001:0002:0000:0000:0000:0001', 64, '2001:db8:1:2::/64'],
      ['2001:db8::1', 128, '2001:db8::1/128'],
      ['2001:db8::1', 48, '2001:db8::/48'],
      ['2001:db8:0:0:1:0:0:1', 128, '2001:db8::1:0:0:1/128'], // the first of two equal zero runs
      ['2001:db8:0:1:1:1:1:1', 128, '2001:db8:0:1:1:1:1:1/128'], // a single zero group stays
      ['::1', 128, '::1/128'],
      ['::', 64, '::/64'],
      ['fe80::1%eth0', 64, 'fe80::/64'],
      ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', 56, '2001:db8:ffff:ff00::/56'],
      ['::c000:201', 128, '::c000:201/128'], // IPv4-compatible (deprecated) is not IPv4-mapped
      ['64:ff9b::192.0.2.1', 128, '64:ff9b::c000:201/128'],
    ];
    for (const [ip, bits, want] of cases) assert.equal(clientNetwork(ip, 24, bits), want, `${ip}/${bits}`);
  });

  test('IPv4-mapped IPv6 is grouped as the IPv4 address it carries', () => {
    assert.equal(clientNetwork('::ffff:192.0.2.7', 24, 64), '192.0.2.0/24');
    assert.equal(clientNetwork('::FFFF:c000:0207', 24, 64), '192.0.2.0/24');
    assert.equal(clientNetwork('0:0:0:0:0:ffff:192.0.2.7', 32, 64), '192.0.2.7/32');
  });

  test('anything that is not an address comes back lower-cased', () => {
    for (const [input, want] of [
      ['', ''],
      ['UNKNOWN', 'unknown'],
      ['192.0.2.256', '192.0.2.256'],
      ['192.0.2.07', '192.0.2.07'],
      ['2001:DB8::G', '2001:db8::g'],
      ['1::2::3', '1::2::3'],
      ['192.0.2.1/24', '192.0.2.1/24'],
    ]) {
      assert.equal(clientNetwork(input!, 24, 64), want, input);
    }
  });

  test('out-of-range prefixes are clamped, not thrown', () => {
    assert.equal(clientNetwork('192.0.2.7', 40, 64), '192.0.2.7/32');
    assert.equal(clientNetwork('192.0.2.7', -3, 64), '0.0.0.0/0');
    assert.equal(clientNetwork('2001:db8::1', 24, 200), '2001:db8::1/128');
    assert.equal(clientNetwork('2001:db8::1', 24, Number.NaN), '2001:db8::1/128');
  });

  test('property: an IPv4 address lies in its network, and the network maps to itself', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (ip, bits) => {
        const network = clientNetwork(ip, bits, 64);
        const [base, len] = network.split('/') as [string, string];
        assert.equal(Number(len), bits);
        const list = new net.BlockList();
        list.addSubnet(base, bits, 'ipv4');
        assert.ok(list.check(ip, 'ipv4'), `${ip} in ${network}`);
        assert.equal(clientNetwork(base, bits, 64), network);
        assert.equal(clientNetwork(`::ffff:${ip}`, bits, 64), network);
      }),
    );
  });

  test('property: an IPv6 address lies in its network, which is canonical text', () => {
    fc.assert(
      fc.property(fc.ipV6(), fc.integer({ min: 0, max: 128 }), (ip, bits) => {
        const network = clientNetwork(ip, 24, bits);
        const [base, len] = network.split('/') as [string, string];
        if (net.isIPv4(base)) return; // fc.ipV6 also makes IPv4-mapped addresses: covered above
        assert.equal(Number(len), bits);
        const list = new net.BlockList();
        list.addSubnet(base, bits, 'ipv6');
        assert.ok(list.check(ip, 'ipv6'), `${ip} in ${network}`);
        assert.equal(clientNetwork(base, 24, bits), network);
        // Canonical: lower case, no leading zeros, at most one "::".
        assert.doesNotMatch(base, /[A-F]|(^|:)0[0-9a-f]|::.*::/);
        assert.equal(clientNetwork(base.toUpperCase(), 24, bits), network);
      }),
    );
  });

  test('property: never throws, always a string', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.fullUnicodeString(), fc.ipV4Extended(), fc.ipV6()), fc.double(), fc.double(), (ip, a, b) => {
        assert.equal(typeof clientNetwork(ip, a, b), 'string');
      }),
    );
  });
});

describe('normalizeSender', () => {
  test("postgrey's substitutions, BATV forms and the null sender", () => {
    const cases: Array<[string, string]> = [
      ['', ''],
      ['<>', ''],
      ['Alice@Example.ORG', 'alice@example.org'],
      ['<alice@example.org>', 'alice@example.org'],
      // VERP and sub-addressing: the extension goes.
      ['list+bounces-alice=example.org@lists.example', 'list@lists.example'],
      ['alice+tag@example.org', 'alice@example.org'],
      // Digit runs that stand alone (Perl's \b\d+\b, as postgrey) become '#'.
      ['bounce-12345-678@mailer.example', 'bounce-#-#@mailer.example'],
      ['12345@numbers.example', '#@numbers.example'],
      ['msg.2024.07.01@example.org', 'msg.#.#.#@example.org'],
      ['user123@example.org', 'user123@example.org'],
      ['a_1@example.org', 'a_1@example.org'], // '_' is a word character: no boundary
      // BATV: the draft's order, the reversed order postgrey also accepts, Microsoft's, Barracuda's.
      ['prvs=0123abcdef=alice@example.org', 'alice@example.org'],
      ['PRVS=1234567890=Bob@Example.org', 'bob@example.org'],
      ['prvs=alice=0123abcdef@example.org', 'alice@example.org'],
      ['msprvs1=19922jr4hkgp7=bounces@example.org', 'bounces@example.org'],
      ['btv1==0912cbe6a7e==alice@example.org', 'alice@example.org'],
      // BATV, then VERP, then digits.
      ['prvs=0123abcdef=bounce+9876-alice=example.org@list.example', 'bounce@list.example'],
      ['prvs=0123abcdef=news-4711@example.org', 'news-#@example.org'],
      // Not BATV: a 'prvs' that is just a name.
      ['prvs@example.org', 'prvs@example.org'],
      // No '@': lower-cased only.
      ['MAILER-DAEMON', 'mailer-daemon'],
      // A quoted local part may hold '@': the domain is after the last one.
      ['"a@b"@example.org', '"a@b"@example.org'],
    ];
    for (const [input, want] of cases) assert.equal(normalizeSender(input), want, input);
  });

  test('property: never throws, idempotent, lower case, no extension left', () => {
    const localChars = fc.constantFrom(...'abcXYZ0123456789.-_+=<>@'.split(''));
    const addressish = fc
      .tuple(
        fc.constantFrom('', 'prvs=', 'msprvs1=', 'btv1==', 'PRVS=0123abcdef='),
        fc.stringOf(localChars, { maxLength: 24 }),
        fc.constantFrom('', '=', '==', '@example.org', '@Example.ORG>'),
      )
      .map(([a, b, c]) => a + b + c);
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.fullUnicodeString(), fc.emailAddress(), addressish), (s) => {
        const once = normalizeSender(s);
        assert.equal(normalizeSender(once), once, `not idempotent for ${JSON.stringify(s)}`);
        assert.equal(once.toLowerCase(), once);
        const at = once.lastIndexOf('@');
        if (at >= 0) assert.ok(!once.slice(0, at).includes('+'), `extension left in ${JSON.stringify(once)}`);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('senderDomain and recipientLocalPart', () => {
  test('tables', () => {
    assert.equal(senderDomain('Alice@Example.ORG'), 'example.org');
    assert.equal(senderDomain('<alice@example.org>'), 'example.org');
    assert.equal(senderDomain(''), '');
    assert.equal(senderDomain('<>'), '');
    assert.equal(senderDomain('no-at-sign'), '');
    assert.equal(senderDomain('"a@b"@example.org'), 'example.org');

    assert.equal(recipientLocalPart('PostMaster@example.org'), 'postmaster');
    assert.equal(recipientLocalPart('postmaster+reports@example.org'), 'postmaster');
    assert.equal(recipientLocalPart('<abuse@example.org>'), 'abuse');
    assert.equal(recipientLocalPart('abuse'), 'abuse');
    assert.equal(recipientLocalPart(''), '');
  });

  test('property: never throw, and the parts put back together give the lower-cased address', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.emailAddress()), (s) => {
        const d = senderDomain(s);
        const l = recipientLocalPart(s);
        if (s.includes('@') && !s.includes('+') && !/^<.*>$/s.test(s)) assert.equal(`${l}@${d}`, s.toLowerCase());
      }),
    );
  });
});
