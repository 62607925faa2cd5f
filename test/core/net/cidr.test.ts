import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cidrMatcher, parseCidr } from '../../../core/net/cidr.ts';

test('IPv4 ranges, single hosts and prefix edges', () => {
  const m = cidrMatcher(['192.0.2.0/24', '198.51.100.7', '10.0.0.0/8', '203.0.113.128/25']);
  for (const yes of ['192.0.2.0', '192.0.2.255', '198.51.100.7', '10.255.0.1', '203.0.113.200', '::ffff:192.0.2.9']) assert.ok(m(yes), yes);
  for (const no of ['192.0.3.0', '198.51.100.8', '11.0.0.1', '203.0.113.127', '2001:db8::1', 'garbage', '', undefined]) assert.ok(!m(no), String(no));
});

test('IPv6 ranges, with :: in every position', () => {
  const m = cidrMatcher(['2001:db8::/32', '::1/128', 'fe80::/10', '2001:db8:ffff:1::5']);
  for (const yes of ['2001:db8::1', '2001:0db8:1234::', '::1', 'fe80::abcd', 'febf::1', '2001:db8:ffff:1::5']) assert.ok(m(yes), yes);
  for (const no of ['2001:db9::1', '::2', 'fec0::1', '192.0.2.1']) assert.ok(!m(no), no);
  assert.ok(cidrMatcher(['::/0'])('1234:5678::9'));
  assert.ok(cidrMatcher(['0.0.0.0/0'])('8.8.8.8'));
});

test('bad specs are refused with the spec named', () => {
  assert.throws(() => parseCidr('192.0.2.0/33'), /192\.0\.2\.0\/33/);
  assert.throws(() => parseCidr('example.com/24'), /example\.com/);
  assert.throws(() => parseCidr('2001:db8::/129'), /129/);
});
