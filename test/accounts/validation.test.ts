// accounts/address.ts and accounts/quota.ts: what may be an account, an alias source or
// destination, and a quota; tables of cases plus fast-check properties.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { accountAddress, aliasSource, destinationAddress, existingAddress, InvalidAddressError } from '../../accounts/address.ts';
import { describeQuotaRule, InvalidQuotaError, quotaRuleFor } from '../../accounts/quota.ts';

// The accounts table's CHECK (accounts/migrations/0001_accounts.sql).
const TABLE_CHECK = /^[^@\s]+@[^@\s]+$/;

test('accountAddress: lower-cased Dovecot logins; no +detail, slashes, quotes or bare hosts', () => {
  for (const [input, want] of [
    ['alice@example.com', 'alice@example.com'],
    ['  Alice.Smith@Mail.Example.COM ', 'alice.smith@mail.example.com'],
    ['a_b-c@xn--bcher-kva.example', 'a_b-c@xn--bcher-kva.example'],
    ['postmaster@example.co.uk', 'postmaster@example.co.uk'],
  ]) {
    assert.equal(accountAddress(input!), want);
  }
  for (const [input, message] of [
    ['alice', /not an address/],
    ['alice+tag@example.com', /'\+detail' is added by senders/],
    ['a/../b@example.com', /not an account address/],
    ["o'brien@example.com", /not an account address/],
    ['.alice@example.com', /not an account address/],
    ['al..ice@example.com', /not an account address/],
    ['@example.com', /not an account address/],
    ['alice@localhost', /not a domain name/],
    ['alice@-bad.example', /not a domain name/],
    ['alice@example.123', /not a domain name/],
    ['alice@bücher.example', /xn-- form/],
    [`${'a'.repeat(65)}@example.com`, /longer than 64/],
    ['alice@a@example.com', /not an account address/],
  ] as const) {
    assert.throws(() => accountAddress(input), (err: Error) => err instanceof InvalidAddressError && message.test(err.message), input);
  }
});

test('aliasSource and destinationAddress: any unquoted address; @domain only as a source', () => {
  assert.equal(aliasSource('@Example.com'), '@example.com');
  assert.equal(aliasSource("O'Brien+lists@example.com"), "o'brien+lists@example.com");
  assert.equal(destinationAddress('Someone.Else@Other.ORG'), 'someone.else@other.org');
  assert.throws(() => destinationAddress('@example.com'), InvalidAddressError);
  assert.throws(() => aliasSource('@'), InvalidAddressError);
  assert.throws(() => aliasSource('@localhost'), InvalidAddressError);
  assert.throws(() => destinationAddress('a b@example.com'), InvalidAddressError);
  assert.throws(() => destinationAddress('"quoted"@example.com'), InvalidAddressError);
});

test('existingAddress: any row the table could hold, lower-cased, so older rows stay manageable', () => {
  assert.equal(existingAddress(' First+Last@Example.TEST '), 'first+last@example.test');
  assert.equal(existingAddress('root@localhost'), 'root@localhost');
  for (const bad of ['alice', '@example.com', 'a b@example.com', 'a@b@example.com', '']) assert.throws(() => existingAddress(bad), InvalidAddressError, bad);
});

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
const domain = fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.stringMatching(/^[a-z]{2,6}$/)).map(([ls, tld]) => [...ls, tld].join('.'));
const local = fc.array(fc.stringMatching(/^[a-z0-9_-]{1,8}$/), { minLength: 1, maxLength: 3 }).map((parts) => parts.join('.'));
const mixCase = (s: string, flips: boolean[]): string => [...s].map((c, i) => (flips[i % flips.length] ? c.toUpperCase() : c)).join('');

test('property: valid accounts normalise to lower case, idempotently, and pass the table CHECK', () => {
  fc.assert(
    fc.property(local, domain, fc.array(fc.boolean(), { minLength: 1 }), (l, d, flips) => {
      const address = accountAddress(mixCase(`${l}@${d}`, flips));
      assert.equal(address, `${l}@${d}`);
      assert.equal(accountAddress(address), address);
      assert.match(address, TABLE_CHECK);
      // Every account is also a valid alias source and destination.
      assert.equal(aliasSource(address), address);
      assert.equal(destinationAddress(address), address);
      assert.equal(aliasSource(`@${d}`), `@${d}`);
    }),
    { numRuns: 500 },
  );
});

test('property: whatever is accepted, is lower case and passes the table CHECK; nothing else throws', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (input) => {
      for (const parse of [accountAddress, destinationAddress, aliasSource, existingAddress]) {
        try {
          const out = parse(input);
          assert.equal(out, out.toLowerCase());
          assert.match(out.replace(/^@/, 'x@'), TABLE_CHECK);
        } catch (err) {
          assert.ok(err instanceof InvalidAddressError, String(err));
        }
      }
    }),
    { numRuns: 1_000 },
  );
});

test('quotaRuleFor: sizes with a unit become *:storage=…; none is the default; zero and junk are refused', () => {
  assert.equal(quotaRuleFor('500M'), '*:storage=500M');
  assert.equal(quotaRuleFor('2g'), '*:storage=2G');
  assert.equal(quotaRuleFor(' 1T '), '*:storage=1T');
  assert.equal(quotaRuleFor('100k'), '*:storage=100K');
  assert.equal(quotaRuleFor('none'), null);
  assert.equal(quotaRuleFor('DEFAULT'), null);
  for (const bad of ['0', '0G', '2', '2GB', '1.5G', '-1G', 'G', '', 'unlimited', '*:storage=2G', '99999999T']) {
    assert.throws(() => quotaRuleFor(bad), InvalidQuotaError, bad);
  }
  assert.throws(() => quotaRuleFor('8193T'), /larger than any mailbox/);
  assert.equal(quotaRuleFor('8191T'), '*:storage=8191T');
  assert.equal(describeQuotaRule(null), 'default');
  assert.equal(describeQuotaRule('*:storage=2G'), '2G');
  assert.equal(describeQuotaRule('*:messages=100'), '*:messages=100');
});

test('property: every N with a unit round-trips through the rule, up to what a byte count can hold', () => {
  const bytes: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 9_999_999 }), fc.constantFrom('K', 'M', 'G', 'T', 'k', 'm', 'g', 't'), (n, unit) => {
      const upper = unit.toUpperCase();
      if (n * bytes[upper]! > Number.MAX_SAFE_INTEGER) return void assert.throws(() => quotaRuleFor(`${n}${unit}`), /larger than any mailbox/);
      const rule = quotaRuleFor(`${n}${unit}`);
      assert.equal(rule, `*:storage=${n}${upper}`);
      assert.equal(describeQuotaRule(rule), `${n}${upper}`);
    }),
  );
});
