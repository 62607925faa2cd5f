// SMFIR_REPLYCODE texts: 'ddd x.y.z text', '%' doubled, enhanced class matching the reply class.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MilterProtocolError } from '../../../milter/protocol/errors.ts';
import { buildReplyCode, validateReplyCode } from '../../../milter/protocol/replycode.ts';

const BUILT: Array<{ args: [number, string | undefined, string]; reply: string }> = [
  { args: [550, '5.7.1', 'Message refused'], reply: '550 5.7.1 Message refused' },
  { args: [451, '4.7.1', 'Try again later'], reply: '451 4.7.1 Try again later' },
  { args: [421, undefined, 'Service not available'], reply: '421 Service not available' },
  { args: [554, '5.7.0', 'Spam score 100% certain'], reply: '554 5.7.0 Spam score 100%% certain' },
  { args: [550, '5.7.1', '%s %d %%'], reply: '550 5.7.1 %%s %%d %%%%' },
  { args: [550, undefined, '%'], reply: '550 %%' },
  { args: [599, '5.999.999', ''], reply: '599 5.999.999 ' },
  { args: [400, '4.0.0', 'x'], reply: '400 4.0.0 x' },
  { args: [550, undefined, '5.7.1 same class in the text'], reply: '550 5.7.1 same class in the text' },
];

for (const { args, reply } of BUILT) {
  test(`buildReplyCode(${args.map((a) => JSON.stringify(a)).join(', ')})`, () => {
    assert.equal(buildReplyCode(...args), reply);
    const parsed = validateReplyCode(reply);
    assert.equal(parsed.code, args[0]);
  });
}

test('validateReplyCode splits code, enhanced code and text', () => {
  assert.deepEqual(validateReplyCode('550 5.7.1 Message refused'), { code: 550, enhanced: '5.7.1', text: 'Message refused' });
  assert.deepEqual(validateReplyCode('421 Closing'), { code: 421, enhanced: undefined, text: 'Closing' });
  assert.deepEqual(validateReplyCode('451 4.3.0 100%% busy'), { code: 451, enhanced: '4.3.0', text: '100%% busy' });
  assert.deepEqual(validateReplyCode('550 '), { code: 550, enhanced: undefined, text: '' });
});

const rangeError = (pattern: RegExp) => (err: unknown) => err instanceof RangeError && pattern.test(err.message);

test('buildReplyCode rejects an enhanced code of another class', () => {
  assert.throws(() => buildReplyCode(550, '4.7.1', 'x'), rangeError(/does not match reply class 550/));
  assert.throws(() => buildReplyCode(450, '5.7.1', 'x'), rangeError(/does not match reply class 450/));
  assert.throws(() => buildReplyCode(550, '2.0.0', 'x'), rangeError(/bad enhanced status code 2\.0\.0/));
});

test('buildReplyCode rejects text that the MTA would read as an enhanced code of another class', () => {
  assert.throws(() => buildReplyCode(550, undefined, '4.7.1 try later'), rangeError(/does not match reply class 550/));
  assert.throws(() => buildReplyCode(451, undefined, '2.0.0 ok'), rangeError(/does not match reply class 451/));
  // Not an enhanced code: no space after it, or not three numbers.
  assert.equal(buildReplyCode(550, undefined, '4.7.1'), '550 4.7.1');
  assert.equal(buildReplyCode(550, undefined, '4.7 later'), '550 4.7 later');
});

test('buildReplyCode rejects codes that are not 4xx or 5xx', () => {
  for (const code of [250, 399, 600, 1000, 0, -550, 450.5, Number.NaN]) {
    assert.throws(() => buildReplyCode(code, undefined, 'x'), rangeError(/4xx or 5xx/), String(code));
  }
});

test('buildReplyCode rejects malformed enhanced codes', () => {
  for (const enhanced of ['5.7', '5.7.1000', '5.1000.1', 'x.y.z', '6.0.0', '5.7.1 ', ' 5.7.1', '']) {
    assert.throws(() => buildReplyCode(550, enhanced, 'x'), rangeError(/bad enhanced status code/), JSON.stringify(enhanced));
  }
});

test('buildReplyCode rejects CR, LF and NUL in the text', () => {
  for (const text of ['a\rb', 'a\nb', 'line\r\n', '\n', 'nul\0']) {
    assert.throws(() => buildReplyCode(550, '5.7.1', text), rangeError(/single line/), JSON.stringify(text));
  }
});

const protocolError = (reason: string) => (err: unknown) => err instanceof MilterProtocolError && err.reason === reason;

test('validateReplyCode rejects an undoubled %', () => {
  for (const reply of ['550 5.7.1 100% sure', '550 %', '550 %%%', '550 a%%b%c', '451 %s']) {
    assert.throws(() => validateReplyCode(reply), protocolError('undoubled % in reply'), reply);
  }
  for (const reply of ['550 100%% sure', '550 %%', '550 %%%%', '550 a%%b%%c']) assert.doesNotThrow(() => validateReplyCode(reply), reply);
});

test('validateReplyCode rejects malformed replies', () => {
  for (const reply of ['250 ok', '550', '550x', '55 short', '5500 long', '650 x', '550 a\r\nb', '550 a\n', '', ' 550 x']) {
    assert.throws(() => validateReplyCode(reply), protocolError('bad reply code'), JSON.stringify(reply));
  }
  assert.throws(() => validateReplyCode('450 5.7.1 x'), protocolError('reply class mismatch'));
  assert.throws(() => validateReplyCode('550 2.0.0 x'), protocolError('reply class mismatch'));
});

test('property: whatever buildReplyCode returns, validateReplyCode accepts', () => {
  const enhancedOf = (klass: number) =>
    fc.tuple(fc.integer({ min: 0, max: 999 }), fc.integer({ min: 0, max: 999 })).map(([a, c]) => `${klass}.${a}.${c}`);
  // Text that may start with something shaped like an enhanced code, and contains '%' often.
  const text = fc
    .tuple(
      fc.option(fc.constantFrom('2', '4', '5').chain((k) => enhancedOf(Number(k)).map((e) => `${e} `))),
      fc.string({ unit: fc.constantFrom('a', ' ', '%', '.', '1', 'é', '\t') }),
    )
    .map(([prefix, rest]) => (prefix ?? '') + rest);
  const arb = fc.integer({ min: 400, max: 599 }).chain((code) =>
    fc.tuple(fc.constant(code), fc.option(enhancedOf(Math.floor(code / 100)), { nil: undefined }), text),
  );
  let built = 0;
  fc.assert(
    fc.property(arb, ([code, enhanced, txt]) => {
      let reply: string;
      try {
        reply = buildReplyCode(code, enhanced, txt);
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        return;
      }
      built++;
      const parsed = validateReplyCode(reply);
      assert.equal(parsed.code, code);
      if (enhanced !== undefined) {
        assert.equal(parsed.enhanced, enhanced);
        assert.equal(parsed.text, txt.replace(/%/g, '%%'));
      }
    }),
    { numRuns: 2000 },
  );
  assert.ok(built > 1000, `only ${built} of 2000 replies were built`);
});
