/**
 * The merge rules by table: config defaults ← `_default` ← domain row; limits replaced whole,
 * greylist keys one by one; invalid rows named by domain and key, and left out of the table.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { policydSchema } from '../../../core/config/policyd.ts';
import {
  buildPolicyTable,
  configPolicy,
  explainPolicy,
  mergePolicy,
  parseRow,
  PolicyRowError,
  type PolicyLayer,
} from '../../../policyd/domain-policy/merge.ts';

const config = policydSchema.parse({
  limits: { clientIp: { count: 100, periodSeconds: 3600 }, sender: { count: 50, periodSeconds: 600 } },
  greylist: { enabled: false, delaySeconds: 300 },
});
const defaults = configPolicy(config);
const layer = (l: Partial<PolicyLayer>): PolicyLayer => ({ limits: {}, greylist: {}, ...l });

describe('mergePolicy', () => {
  const cases: Array<{ name: string; base?: PolicyLayer; domain?: PolicyLayer; limits: Record<string, unknown>; greylist: Record<string, unknown> }> = [
    { name: 'no rows: the config', limits: { clientIp: { count: 100, periodSeconds: 3600 } }, greylist: { enabled: false, delaySeconds: 300 } },
    {
      name: '_default overrides config',
      base: layer({ limits: { clientIp: { count: 20, periodSeconds: 60 } }, greylist: { enabled: true } }),
      limits: { clientIp: { count: 20, periodSeconds: 60 }, sender: { count: 50, periodSeconds: 600 } },
      greylist: { enabled: true, delaySeconds: 300 },
    },
    {
      name: 'the domain overrides _default, which overrides config',
      base: layer({ limits: { clientIp: { count: 20, periodSeconds: 60 } }, greylist: { enabled: true, delaySeconds: 60 } }),
      domain: layer({ limits: { clientIp: { count: 5, periodSeconds: 60 } }, greylist: { delaySeconds: 900 } }),
      limits: { clientIp: { count: 5, periodSeconds: 60 }, sender: { count: 50, periodSeconds: 600 } },
      greylist: { enabled: true, delaySeconds: 900 },
    },
    {
      name: 'a limit is replaced whole: the row\'s period, not the inherited one',
      domain: layer({ limits: { sender: { count: 7, periodSeconds: 3600 } } }),
      limits: { sender: { count: 7, periodSeconds: 3600 } },
      greylist: {},
    },
    {
      name: 'count 0 in a row turns an inherited limit off',
      base: layer({ limits: { clientIp: { count: 0, periodSeconds: 3600 } } }),
      limits: { clientIp: { count: 0, periodSeconds: 3600 } },
      greylist: {},
    },
    {
      name: 'the domain can turn greylisting off where _default turns it on',
      base: layer({ greylist: { enabled: true } }),
      domain: layer({ greylist: { enabled: false } }),
      limits: {},
      greylist: { enabled: false },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const got = mergePolicy(defaults, c.base, c.domain);
      for (const [k, v] of Object.entries(c.limits)) assert.deepEqual(got.limits[k as keyof typeof got.limits], v, `limits.${k}`);
      for (const [k, v] of Object.entries(c.greylist)) assert.deepEqual(got.greylist[k as keyof typeof got.greylist], v, `greylist.${k}`);
      // Keys no layer names keep the config's value.
      assert.deepEqual(got.limits.saslUser, config.limits.saslUser);
      assert.equal(got.greylist.action, config.greylist.action);
    });
  }

  test('explainPolicy names the origin of every value', () => {
    const { origins } = explainPolicy(
      defaults,
      layer({ limits: { saslUser: { count: 10, periodSeconds: 60 } }, greylist: { enabled: true } }),
      layer({ limits: { saslUser: { count: 1, periodSeconds: 60 }, recipient: { count: 3, periodSeconds: 60 } } }),
    );
    assert.deepEqual(origins.limits, { clientIp: 'config', saslUser: 'domain', sender: 'config', senderDomain: 'config', recipient: 'domain', sizeBytes: 'config' });
    assert.equal(origins.greylist.enabled, '_default');
    assert.equal(origins.greylist.delaySeconds, 'config');
  });

  test('merging never changes the config defaults it started from', () => {
    const before = structuredClone(defaults);
    mergePolicy(defaults, layer({ limits: { clientIp: { count: 1, periodSeconds: 1 } }, greylist: { enabled: true } }));
    assert.deepEqual(defaults, before);
  });
});

describe('parseRow', () => {
  test('fills a limit\'s period with the schema default and keeps only the keys the row names', () => {
    assert.deepEqual(parseRow({ domain: 'example.com', limits: { clientIp: { count: 5 } }, greylist: { enabled: true } }), {
      limits: { clientIp: { count: 5, periodSeconds: 3600 } },
      greylist: { enabled: true },
    });
  });

  const invalid: Array<[string, unknown, unknown, string[], RegExp]> = [
    ['negative count', { clientIp: { count: -1 } }, {}, ['limits.clientIp.count'], /limits\.clientIp\.count = -1: Number must be greater than or equal to 0/],
    ['unknown limit (a typo)', { clientIP: { count: 1 } }, {}, ['limits.clientIP'], /limits\.clientIP = {"count":1}: unknown key/],
    ['unknown key inside a limit', { sender: { count: 1, burst: 2 } }, {}, ['limits.sender.burst'], /limits\.sender\.burst = 2: unknown key/],
    ['greylist value of the wrong type', {}, { enabled: 'yes' }, ['greylist.enabled'], /greylist\.enabled = "yes": Expected boolean/],
    ['a period of 0', { sender: { count: 1, periodSeconds: 0 } }, {}, ['limits.sender.periodSeconds'], /limits\.sender\.periodSeconds = 0/],
    ['limits not an object', [1], {}, ['limits'], /limits = \[1\]: Expected object/],
  ];
  for (const [name, limits, greylist, keys, message] of invalid) {
    test(`rejects ${name}, naming the domain and key`, () => {
      assert.throws(
        () => parseRow({ domain: 'bad.example', limits, greylist }),
        (err: unknown) => {
          assert.ok(err instanceof PolicyRowError);
          assert.equal(err.domain, 'bad.example');
          assert.deepEqual(err.keys, keys);
          assert.match(err.message, /^invalid policy for bad\.example: /);
          assert.match(err.message, message);
          return true;
        },
      );
    });
  }
});

describe('buildPolicyTable', () => {
  const rows = [
    { domain: '_default', limits: { clientIp: { count: 30, periodSeconds: 60 } }, greylist: {} },
    { domain: 'strict.example', limits: { sender: { count: 1, periodSeconds: 60 } }, greylist: { enabled: true } },
    { domain: 'bad.example', limits: { sender: { count: 'many' } }, greylist: {} },
  ];

  test('merges every row over _default and leaves invalid rows out, reporting them', () => {
    const table = buildPolicyTable(defaults, rows);
    assert.deepEqual(table.fallback.limits.clientIp, { count: 30, periodSeconds: 60 });
    const strict = table.domains.get('strict.example');
    assert.deepEqual(strict?.limits.clientIp, { count: 30, periodSeconds: 60 });
    assert.deepEqual(strict?.limits.sender, { count: 1, periodSeconds: 60 });
    assert.equal(strict?.greylist.enabled, true);
    assert.equal(table.domains.has('bad.example'), false);
    assert.equal(table.domains.has('_default'), false);
    assert.deepEqual(table.invalid.map((e) => [e.domain, e.keys]), [['bad.example', ['limits.sender.count']]]);
  });

  test('an invalid _default row is ignored too: config defaults under every domain', () => {
    const table = buildPolicyTable(defaults, [{ domain: '_default', limits: { nope: 1 }, greylist: {} }, rows[1]!]);
    assert.deepEqual(table.fallback, defaults);
    assert.deepEqual(table.domains.get('strict.example')?.limits.clientIp, config.limits.clientIp);
    assert.deepEqual(table.invalid.map((e) => e.domain), ['_default']);
  });

  test('policies are frozen: one caller cannot change what the next one gets', () => {
    const table = buildPolicyTable(defaults, rows);
    assert.throws(() => {
      (table.fallback.limits.clientIp as { count: number }).count = 1;
    }, TypeError);
  });
});
