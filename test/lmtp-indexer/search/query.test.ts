/** The query parser: tables of input → AST and input → typed error, then fast-check fuzz. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MAX_QUERY_BYTES, MAX_TERMS, parseQuery, QueryError, type Term } from '../../../lmtp-indexer/search/query.ts';

const word = (text: string, negated = false): Term => ({ kind: 'text', text, phrase: false, negated });
const phrase = (text: string, negated = false): Term => ({ kind: 'text', text, phrase: true, negated });
const field = (f: 'from' | 'to' | 'subject', value: string, opts: { phrase?: boolean; negated?: boolean } = {}): Term => ({
  kind: 'field',
  field: f,
  value,
  phrase: opts.phrase ?? false,
  negated: opts.negated ?? false,
});

const CASES: Array<[string, Term[]]> = [
  ['', []],
  ['   \t\n ', []],
  ['invoice', [word('invoice')]],
  ['quarterly invoice', [word('quarterly'), word('invoice')]],
  ['"quarterly report"', [phrase('quarterly report')]],
  ['"  spaced   out  "', [phrase('spaced out')]],
  ['""', []],
  ['"unclosed phrase runs on', [phrase('unclosed phrase runs on')]],
  ['-spam', [word('spam', true)]],
  ['-"weekly digest"', [phrase('weekly digest', true)]],
  ['- lone', [word('lone')]],
  ['trailing -', [word('trailing')]],
  ['--double', [word('-double', true)]],
  ['from:alice@example.com', [field('from', 'alice@example.com')]],
  ['FROM:Alice', [field('from', 'Alice')]],
  ['from:"Alice Smith"', [field('from', 'Alice Smith', { phrase: true })]],
  ['-from:newsletter', [field('from', 'newsletter', { negated: true })]],
  ['to:bob', [field('to', 'bob')]],
  ['subject:"board meeting" agenda', [field('subject', 'board meeting', { phrase: true }), word('agenda')]],
  ['has:attachment', [{ kind: 'attachment', negated: false }]],
  ['has:Attachments', [{ kind: 'attachment', negated: false }]],
  ['-has:attachment', [{ kind: 'attachment', negated: true }]],
  ['in:inbox', [{ kind: 'mailbox', mailbox: 'inbox', negated: false }]],
  ['in:"Sent Items"', [{ kind: 'mailbox', mailbox: 'Sent Items', negated: false }]],
  ['-in:Junk', [{ kind: 'mailbox', mailbox: 'Junk', negated: true }]],
  ['is:unread', [{ kind: 'flag', flag: 'unread' }]],
  ['is:READ', [{ kind: 'flag', flag: 'read' }]],
  ['-is:read', [{ kind: 'flag', flag: 'unread' }]],
  ['is:flagged', [{ kind: 'flag', flag: 'flagged' }]],
  ['-is:flagged', [{ kind: 'flag', flag: 'unflagged' }]],
  ['is:starred', [{ kind: 'flag', flag: 'flagged' }]],
  ['before:2024-03-31', [{ kind: 'date', op: 'before', date: '2024-03-31' }]],
  ['after:2024/01/01', [{ kind: 'date', op: 'after', date: '2024-01-01' }]],
  ['-before:2024-03-31', [{ kind: 'date', op: 'after', date: '2024-03-31' }]],
  ['-after:2024-02-29', [{ kind: 'date', op: 'before', date: '2024-02-29' }]],
  // Unknown keys are words: pasted subjects and times must still search.
  ['Re: lunch', [word('Re:'), word('lunch')]],
  ['10:30 standup', [word('10:30'), word('standup')]],
  ['https://example.com/x', [word('https://example.com/x')]],
  ['form:alice', [word('form:alice')]],
  // A key only counts at the start of a term.
  ['xfrom:alice', [word('xfrom:alice')]],
  ['word"with"quotes', [word('word"with"quotes')]],
  // Control characters (NUL included) separate terms like white space.
  ['a\u0000b\u0007c', [word('a'), word('b'), word('c')]],
  ['"x\u0000y"', [phrase('x y')]],
  ['from:alice has:attachment after:2023-01-01 -in:junk "status report" -draft', [
    field('from', 'alice'),
    { kind: 'attachment', negated: false },
    { kind: 'date', op: 'after', date: '2023-01-01' },
    { kind: 'mailbox', mailbox: 'junk', negated: true },
    phrase('status report'),
    word('draft', true),
  ]],
];

test('parseQuery: input → terms', () => {
  for (const [input, terms] of CASES) assert.deepEqual(parseQuery(input), { terms }, JSON.stringify(input));
});

const ERRORS: Array<[string, QueryError['code'], RegExp]> = [
  ['x'.repeat(MAX_QUERY_BYTES + 1), 'too_long', /1025 bytes long; the limit is 1024/],
  // Bytes, not characters: 342 three-byte characters are 1,026 bytes.
  ['€'.repeat(342), 'too_long', /1026 bytes/],
  [Array.from({ length: MAX_TERMS + 1 }, (_, i) => `w${i}`).join(' '), 'too_many_terms', /more than 32 terms/],
  ['from:', 'empty_value', /from: needs a value, e.g. from:alice@example.com/],
  ['subject:"" x', 'empty_value', /subject: needs a value/],
  ['in: inbox', 'empty_value', /in: needs a value/],
  ['has:pdf', 'bad_value', /has: expects attachment, not "pdf"/],
  ['is:important', 'bad_value', /is: expects unread, read or flagged, not "important"/],
  ['before:2024-13-01', 'bad_value', /before: expects a date such as 2024-03-31, not "2024-13-01"/],
  ['after:2023-02-29', 'bad_value', /after: expects a date/],
  ['after:yesterday', 'bad_value', /after: expects a date/],
  ['before:1969-12-31', 'bad_value', /before: expects a date/],
];

test('parseQuery: typed errors that name the problem', () => {
  for (const [input, code, message] of ERRORS) {
    assert.throws(
      () => parseQuery(input),
      (err: unknown) => err instanceof QueryError && err.code === code && message.test(err.message),
      `${JSON.stringify(input.slice(0, 40))} → ${code}`,
    );
  }
});

test('parseQuery: exactly at the limits is accepted', () => {
  assert.equal(parseQuery('x'.repeat(MAX_QUERY_BYTES)).terms.length, 1);
  assert.equal(parseQuery(Array.from({ length: MAX_TERMS }, (_, i) => `w${i}`).join(' ')).terms.length, MAX_TERMS);
});

// Pieces the grammar cares about, so random strings hit keys, quotes and negation often.
const piece = fc.oneof(
  fc.constantFrom('from:', 'to:', 'subject:', 'has:', 'in:', 'is:', 'before:', 'after:', 'FROM:', 'xx:', '-', '"', ' ', '\t', '\u0000', ':'),
  fc.constantFrom('attachment', 'unread', 'read', 'flagged', '2024-01-01', '2024/02/30', 'inbox', 'alice@example.com', '€', '😀', '\ud800'),
  fc.string({ maxLength: 6 }),
  fc.fullUnicodeString({ maxLength: 4 }),
);
const queryArb = fc.array(piece, { maxLength: 60 }).map((p) => p.join(''));

const FUZZ_RUNS = 20_000;

test(`parseQuery fuzz (${FUZZ_RUNS} runs): a SearchQuery or a QueryError, nothing else`, () => {
  fc.assert(
    fc.property(fc.oneof(queryArb, fc.fullUnicodeString({ maxLength: 1200 })), (input) => {
      let parsed;
      try {
        parsed = parseQuery(input);
      } catch (err) {
        assert.ok(err instanceof QueryError, `threw ${String(err)}`);
        assert.ok(err.message.length > 0);
        return;
      }
      assert.ok(parsed.terms.length <= MAX_TERMS);
      for (const t of parsed.terms) {
        // Every value is non-empty and free of control characters (PostgreSQL text can't hold NUL).
        const values = t.kind === 'text' ? [t.text] : t.kind === 'field' ? [t.value] : t.kind === 'mailbox' ? [t.mailbox] : [];
        for (const v of values) {
          assert.ok(v.length > 0);
          assert.ok(!/\p{Cc}/u.test(v), JSON.stringify(v));
        }
        if (t.kind === 'date') assert.match(t.date, /^\d{4}-\d{2}-\d{2}$/);
      }
    }),
    { numRuns: FUZZ_RUNS },
  );
});

test('parseQuery fuzz: a query of known-good terms round-trips to the same number of terms', () => {
  const good = fc.constantFrom('invoice', '"a phrase"', 'from:bob', 'to:x@y.z', 'subject:hi', 'has:attachment', 'in:Archive', 'is:unread', 'before:2024-05-01', '-spam');
  fc.assert(
    fc.property(fc.array(good, { minLength: 0, maxLength: MAX_TERMS }), fc.constantFrom(' ', '  ', '\t', '\n'), (terms, sep) => {
      assert.equal(parseQuery(terms.join(sep)).terms.length, terms.length);
    }),
    { numRuns: 2_000 },
  );
});
