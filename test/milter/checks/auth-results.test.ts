/** The pure parts of the authentication check: authserv-id parsing, forged-header selection, DMARC decisions. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../core/config/load.ts';
import { authservIdOf, dmarcAction, forgedResultHeaders, parseHeaderBlock } from '../../../milter/checks/auth/results.ts';

const dmarcCfg = (over: Record<string, unknown> = {}) => parseConfig({ milter: { checks: { auth: { dmarc: over } } } }).milter.checks.auth.dmarc;

test('authservIdOf reads A-R and ARC-Authentication-Results, ignoring comments and case', () => {
  assert.equal(authservIdOf({ name: 'Authentication-Results', value: 'MX.Example.COM; spf=pass' }), 'mx.example.com');
  assert.equal(authservIdOf({ name: 'Authentication-Results', value: ' (comment) mx.example.com 1; none' }), 'mx.example.com');
  assert.equal(authservIdOf({ name: 'ARC-Authentication-Results', value: 'i=2; mx.example.com; dkim=pass' }), 'mx.example.com');
  assert.equal(authservIdOf({ name: 'Authentication-Results', value: '' }), undefined);
});

test('forgedResultHeaders deletes only ours, per name, highest index first', () => {
  const headers = [
    { name: 'Authentication-Results', value: 'mx.test; spf=pass' },
    { name: 'Authentication-Results', value: 'upstream.example; spf=fail' },
    { name: 'Authentication-Results', value: 'mx.test; dkim=pass' },
    { name: 'ARC-Authentication-Results', value: 'i=1; upstream.example; dmarc=pass' },
  ];
  assert.deepEqual(
    forgedResultHeaders(headers, 'MX.TEST').map((m) => [m.kind, (m as { index: number }).index]),
    [
      ['chgheader', 3],
      ['chgheader', 1],
    ],
  );
});

test('parseHeaderBlock keeps folding as LF + whitespace', () => {
  const fields = parseHeaderBlock('Received-SPF: pass (x)\r\n client-ip=192.0.2.1;\r\nAuthentication-Results: mx.test;\r\n spf=pass\r\n');
  assert.deepEqual(fields, [
    { name: 'Received-SPF', value: 'pass (x)\n client-ip=192.0.2.1;' },
    { name: 'Authentication-Results', value: 'mx.test;\n spf=pass' },
  ]);
});

test('dmarcAction: policy, pct sampling, overrides, enforcement off', () => {
  const fail = { result: 'fail', domain: 'example.com', policy: 'reject' };
  assert.equal(dmarcAction(fail, dmarcCfg(), () => 0).kind, 'reject');
  assert.equal(dmarcAction({ ...fail, result: 'pass' }, dmarcCfg(), () => 0).kind, 'none');
  assert.equal(dmarcAction({ ...fail, result: 'temperror' }, dmarcCfg(), () => 0).kind, 'none', 'a DNS failure never rejects');
  assert.equal(dmarcAction({ ...fail, pct: 10 }, dmarcCfg(), () => 0.05).kind, 'reject');
  assert.equal(dmarcAction({ ...fail, pct: 10 }, dmarcCfg(), () => 0.5).kind, 'quarantine');
  assert.equal(dmarcAction({ ...fail, policy: 'quarantine', pct: 0 }, dmarcCfg(), () => 0).kind, 'none');
  assert.equal(dmarcAction(fail, dmarcCfg({ overrides: { 'EXAMPLE.com': 'quarantine' } }), () => 0).kind, 'quarantine');
  assert.equal(dmarcAction(fail, dmarcCfg({ enforce: false }), () => 0).kind, 'none');
  assert.match(dmarcAction(fail, dmarcCfg({ enforce: false }), () => 0).why, /not enforced/);
});
