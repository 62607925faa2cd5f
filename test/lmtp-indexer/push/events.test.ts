// The push validator (lmtp-indexer/push/events.ts): tables of good and bad bodies, then fuzzing.
// Only PushValidationError may come out of parsePushBatch, whatever the input, and what passes is
// well-formed (integers in range, normalised flags, no control characters).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mergeFlags, normaliseMessageId, parsePushBatch, PushValidationError, PUSH_LIMITS, type PushBatch } from '../../../lmtp-indexer/push/events.ts';

/** Runs per property: 60,000 in all. */
const RUNS = { anyJson: 20_000, mutatedEvents: 30_000, wellFormed: 10_000 };

const batch = (events: unknown[], extra: Record<string, unknown> = {}): unknown => ({ v: 1, user: 'Alice@Example.com', separator: '.', events, ...extra });
const at = { mailbox: 'INBOX', uid: 7, uid_validity: 1_700_000_000 };

test('the events Dovecot 2.3.19 sends are read into typed events', () => {
  const parsed = parsePushBatch(
    batch([
      { name: 'MessageNew', ...at, message_id: '<m1@x>', flags: [], keywords: [] },
      { name: 'MessageAppend', ...at, mailbox: 'Junk', uid: 2, message_id: 'bare@id', flags: ['\\Seen', '\\Recent'], keywords: ['$Junk'] },
      { name: 'FlagsSet', ...at, flags: ['\\seen'], keywords: ['$Junk', '$junk'] },
      { name: 'FlagsClear', ...at, flags: {}, keywords: {} },
      { name: 'MessageExpunge', ...at },
      { name: 'MailboxRename', mailbox: 'Jobs', mailbox_old: 'Work' },
      { name: 'MessageRead', ...at },
    ]),
  );
  const expected: PushBatch = {
    user: 'alice@example.com',
    separator: '.',
    skipped: 1,
    events: [
      { name: 'MessageNew', mailbox: 'INBOX', uid: 7, uidValidity: 1_700_000_000, messageId: '<m1@x>', flags: [] },
      { name: 'MessageAppend', mailbox: 'Junk', uid: 2, uidValidity: 1_700_000_000, messageId: '<bare@id>', flags: ['\\Seen', '$Junk'] },
      { name: 'FlagsSet', mailbox: 'INBOX', uid: 7, uidValidity: 1_700_000_000, flags: ['\\Seen', '$Junk'] },
      { name: 'FlagsClear', mailbox: 'INBOX', uid: 7, uidValidity: 1_700_000_000, flags: [] },
      { name: 'MessageExpunge', mailbox: 'INBOX', uid: 7, uidValidity: 1_700_000_000 },
      { name: 'MailboxRename', mailbox: 'Jobs', oldMailbox: 'Work' },
    ],
  };
  assert.deepEqual(parsed, expected);
});

test('a message without Message-ID, or with an empty one, has messageId null; the separator defaults to "."', () => {
  const { events, separator } = parsePushBatch({ v: 1, user: 'a@b', events: [{ name: 'MessageAppend', ...at }, { name: 'MessageNew', ...at, message_id: '  ' }] });
  assert.equal(separator, '.');
  assert.deepEqual(
    events.map((e) => ('messageId' in e ? e.messageId : 'none')),
    [null, null],
  );
});

test('Message-IDs are normalised the way mailparser stores them in the index', () => {
  const table: Array<[string, string | null]> = [
    ['<a@b>', '<a@b>'],
    ['  <a@b>  ', '<a@b>'],
    ['a@b', '<a@b>'],
    ['<a@b', '<a@b>'],
    ['\r\n <a@b>', '<a@b>'],
    ['', null],
  ];
  for (const [raw, want] of table) assert.equal(normaliseMessageId(raw), want, JSON.stringify(raw));
});

test('mergeFlags drops \\Recent and duplicates, keywords case-insensitively', () => {
  assert.deepEqual(mergeFlags(['\\Seen', '\\Recent'], ['$Junk', '$JUNK', 'Work']), ['\\Seen', '$Junk', 'Work']);
});

test('garbage is refused with the first bad field named', () => {
  const long = (n: number) => 'x'.repeat(n);
  const table: Array<[string, unknown, RegExp]> = [
    ['not an object', [1, 2], /^body: expected a JSON object/],
    ['null', null, /^body: expected a JSON object/],
    ['wrong version', { v: 2, user: 'a', events: [] }, /^v: /],
    ['no user', { v: 1, events: [] }, /^body\.user: expected a string/],
    ['empty user', { v: 1, user: '', events: [] }, /^body\.user: expected 1\.\.320/],
    ['user too long', { v: 1, user: long(PUSH_LIMITS.maxUserChars + 1), events: [] }, /^body\.user: /],
    ['user with a space', { v: 1, user: 'a b', events: [] }, /^body\.user: whitespace/],
    ['user with a control character', { v: 1, user: 'a\nb', events: [] }, /^body\.user: control characters/],
    ['separator of two characters', batch([], { separator: '//' }), /^body\.separator: expected 1\.\.1/],
    ['events not an array', { v: 1, user: 'a', events: {} }, /^body\.events: expected an array/],
    ['too many events', batch(Array.from({ length: PUSH_LIMITS.maxEvents + 1 }, () => ({ name: 'MessageExpunge', ...at }))), /more than 5000 events/],
    ['event not an object', batch(['MessageNew']), /^events\[0\]: expected an object/],
    ['event without a name', batch([{ ...at }]), /^events\[0\]\.name: /],
    ['lower-case event name', batch([{ name: 'messageNew', ...at }]), /^events\[0\]\.name: /],
    ['uid as a string', batch([{ name: 'MessageExpunge', ...at, uid: '7' }]), /^events\[0\]\.uid: expected an integer/],
    ['uid 0', batch([{ name: 'MessageExpunge', ...at, uid: 0 }]), /^events\[0\]\.uid: /],
    ['uid over 2^32-1', batch([{ name: 'MessageExpunge', ...at, uid: 2 ** 32 }]), /^events\[0\]\.uid: /],
    ['fractional uid', batch([{ name: 'MessageExpunge', ...at, uid: 1.5 }]), /^events\[0\]\.uid: /],
    ['no uid_validity', batch([{ name: 'FlagsSet', mailbox: 'INBOX', uid: 1, flags: [] }]), /^events\[0\]\.uid_validity: /],
    ['empty mailbox', batch([{ name: 'MessageExpunge', ...at, mailbox: '' }]), /^events\[0\]\.mailbox: /],
    ['NUL in a mailbox', batch([{ name: 'MessageExpunge', ...at, mailbox: 'IN\0BOX' }]), /^events\[0\]\.mailbox: control/],
    ['mailbox too long', batch([{ name: 'MessageExpunge', ...at, mailbox: long(PUSH_LIMITS.maxMailboxChars + 1) }]), /^events\[0\]\.mailbox: /],
    ['flags not an array', batch([{ name: 'FlagsSet', ...at, flags: '\\Seen' }]), /^events\[0\]\.flags: expected an array/],
    ['a flag not a string', batch([{ name: 'FlagsSet', ...at, flags: [1] }]), /^events\[0\]\.flags\[0\]: expected a string/],
    ['unknown system flag', batch([{ name: 'FlagsSet', ...at, flags: ['\\Junk'] }]), /unknown system flag/],
    ['keyword with a space', batch([{ name: 'FlagsSet', ...at, keywords: ['a b'] }]), /^events\[0\]\.keywords\[0\]: not an IMAP keyword/],
    ['too many flags', batch([{ name: 'FlagsSet', ...at, keywords: Array.from({ length: PUSH_LIMITS.maxFlags + 1 }, (_, i) => `k${i}`) }]), /more than 256 flags/],
    ['message_id not a string', batch([{ name: 'MessageNew', ...at, message_id: 5 }]), /^events\[0\]\.message_id: /],
    ['message_id too long', batch([{ name: 'MessageNew', ...at, message_id: long(PUSH_LIMITS.maxMessageIdChars + 1) }]), /^events\[0\]\.message_id: /],
    ['NUL in a message_id', batch([{ name: 'MessageNew', ...at, message_id: '<a\0b>' }]), /NUL/],
    ['rename without the old name', batch([{ name: 'MailboxRename', mailbox: 'Jobs' }]), /^events\[0\]\.mailbox_old: /],
    ['second event bad', batch([{ name: 'MessageExpunge', ...at }, { name: 'MessageExpunge', ...at, uid: -1 }]), /^events\[1\]\.uid: /],
  ];
  for (const [label, body, reason] of table) {
    assert.throws(() => parsePushBatch(body), (err: unknown) => err instanceof PushValidationError && reason.test(err.message), label);
  }
});

/** What passes must be safe to write: checked on every accepted batch of the fuzz runs. */
function assertWellFormed(b: PushBatch): void {
  assert.ok(b.user.length > 0 && b.user === b.user.toLowerCase() && !/[\s\x00-\x1f]/.test(b.user));
  assert.equal(b.separator.length, 1);
  for (const e of b.events) {
    if (e.name === 'MailboxRename') {
      assert.ok(e.mailbox.length > 0 && e.oldMailbox.length > 0);
      continue;
    }
    assert.ok(Number.isInteger(e.uid) && e.uid >= 1 && e.uid <= 0xffffffff);
    assert.ok(Number.isInteger(e.uidValidity) && e.uidValidity >= 1 && e.uidValidity <= 0xffffffff);
    assert.ok(!/[\x00-\x1f\x7f]/.test(e.mailbox));
    if ('flags' in e) for (const f of e.flags) assert.ok(f !== '\\Recent' && !/[\s\x00-\x1f]/.test(f));
    if ('messageId' in e && e.messageId !== null) assert.match(e.messageId, /^<[^]*>$/);
  }
}

function check(body: unknown, outcomes: Map<string, number>): void {
  try {
    assertWellFormed(parsePushBatch(body));
    outcomes.set('accepted', (outcomes.get('accepted') ?? 0) + 1);
  } catch (err) {
    if (!(err instanceof PushValidationError)) throw err;
    const key = err.message.replace(/\[\d+\]/g, '[]').split(':')[0]!;
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  }
}

const summary = (m: Map<string, number>): string => [...m].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}=${n}`).join(', ');

test(`fuzz: any JSON value is either a valid batch or a PushValidationError (${RUNS.anyJson} runs)`, (t) => {
  const outcomes = new Map<string, number>();
  fc.assert(
    fc.property(
      fc.oneof(fc.jsonValue(), fc.record({ v: fc.constant(1), user: fc.constant('a@b'), separator: fc.jsonValue(), events: fc.array(fc.jsonValue(), { maxLength: 5 }) }, { requiredKeys: ['v', 'user', 'events'] })),
      (v) => check(v, outcomes),
    ),
    { numRuns: RUNS.anyJson },
  );
  t.diagnostic(summary(outcomes));
});

const fieldValue = fc.oneof(
  fc.integer({ min: -2, max: 2 ** 33 }),
  fc.double(),
  fc.string({ maxLength: 12 }),
  fc.constantFrom('\\Seen', '\\Recent', '\\seen', '$Junk', '', ' ', '\0', 'INBOX', '<a@b>', 'a b', '\\Bogus'),
  fc.array(fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.constantFrom('\\Seen', '\\Flagged', '$Junk')), { maxLength: 4 }),
  fc.constant(null),
  fc.constant({}),
  fc.boolean(),
);
const goodEvent = fc.record({
  name: fc.constantFrom('MessageNew', 'MessageAppend', 'FlagsSet', 'FlagsClear', 'MessageExpunge'),
  mailbox: fc.stringMatching(/^[A-Za-z0-9 ._\u00e9\u4e2d/-]{1,20}$/),
  uid: fc.integer({ min: 1, max: 0xffffffff }),
  uid_validity: fc.integer({ min: 1, max: 0xffffffff }),
  message_id: fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\0') && s.trim() !== ''),
  flags: fc.subarray(['\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft', '\\Recent']),
  keywords: fc.array(fc.stringMatching(/^[$A-Za-z0-9_]{1,12}$/), { maxLength: 4 }),
});

const FIELDS = ['name', 'mailbox', 'uid', 'uid_validity', 'message_id', 'flags', 'keywords', 'mailbox_old'] as const;
/** A good event with one to three fields replaced by odd values or removed. */
const mutatedEvent = fc
  .tuple(goodEvent, fc.array(fc.tuple(fc.constantFrom(...FIELDS), fc.option(fieldValue, { nil: undefined })), { minLength: 1, maxLength: 3 }))
  .map(([e, changes]) => {
    const out: Record<string, unknown> = { ...e };
    for (const [field, value] of changes) {
      if (value === undefined) delete out[field];
      else out[field] = value;
    }
    return out;
  });

test(`fuzz: events with mutated fields (${RUNS.mutatedEvents} runs)`, (t) => {
  const outcomes = new Map<string, number>();
  fc.assert(
    fc.property(fc.array(fc.oneof(goodEvent, mutatedEvent), { maxLength: 6 }), fc.oneof(fc.constant('a@b'), fc.string({ maxLength: 6 })), (events, user) => check({ v: 1, user, events }, outcomes)),
    { numRuns: RUNS.mutatedEvents },
  );
  t.diagnostic(summary(outcomes));
  // The generator must reach acceptance as well as refusal, or the property says little.
  assert.ok((outcomes.get('accepted') ?? 0) > 0 && outcomes.size > 5, summary(outcomes));
});

test(`fuzz: well-formed batches are always accepted, keep every event and lose no flag (${RUNS.wellFormed} runs)`, () => {
  fc.assert(
    fc.property(fc.array(goodEvent, { maxLength: 20 }), (events) => {
      const parsed = parsePushBatch({ v: 1, user: 'a@b', events });
      assertWellFormed(parsed);
      assert.equal(parsed.events.length, events.length);
      parsed.events.forEach((e, i) => {
        const src = events[i]!;
        assert.equal(e.name, src.name);
        if ('flags' in e) {
          const want = new Set([...src.flags, ...src.keywords].filter((f) => f !== '\\Recent').map((f) => f.toLowerCase()));
          assert.deepEqual(new Set(e.flags.map((f) => f.toLowerCase())), want);
        }
      });
    }),
    { numRuns: RUNS.wellFormed },
  );
});
