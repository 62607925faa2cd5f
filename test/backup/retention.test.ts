// Retention planning: a simulated two months of nightly backups with exact expectations, the
// edge cases (zero policy, unverified, ordering by time, ISO week and year boundaries) and a
// fast-check property over random backup sets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { isoWeekBucket, planRetention, type RetentionCandidate } from '../../backup/retention.ts';

/** Runs for the fast-check property (each run plans one random set of up to 80 backups). */
const PROPERTY_RUNS = 3_000;

/** An id that sorts independently of the time (like the run's random suffix would). */
const idFor = (iso: string) => `b-${createHash('sha256').update(iso).digest('hex').slice(0, 8)}`;

const at = (iso: string, verified = true): RetentionCandidate => ({ id: idFor(iso), completedAt: new Date(iso), verified });

/** The clock the fixture is built from; planRetention itself reads no clock. */
const NOW = new Date('2026-11-21T12:00:00Z'); // a Saturday in ISO week 2026-W47

/** Nightly at 02:00 UTC for the 60 days up to NOW (23 Sep – 21 Nov 2026), plus extra runs. */
function simulatedMonths(): RetentionCandidate[] {
  const out: RetentionCandidate[] = [];
  const today = Date.UTC(NOW.getUTCFullYear(), NOW.getUTCMonth(), NOW.getUTCDate());
  for (let d = 59; d >= 0; d--) out.push(at(new Date(today - d * 86_400_000 + 2 * 3_600_000).toISOString()));
  out.push(at('2026-11-20T14:30:00.000Z')); // a manual run after the nightly: newest of its day
  out.push(at('2026-11-19T01:00:00.000Z')); // a run before the nightly: not the newest of its day
  out.push(at('2026-11-15T23:59:59.000Z')); // Sunday night: last of day, and of ISO week 46
  out.push(at('2026-10-31T23:00:00.000Z')); // last of October
  return out;
}

const ids = (plan: ReturnType<typeof planRetention>) => plan.keep.map((k) => k.id);

test('two months of nightly backups, policy 7/4/6: exactly the expected backups survive', () => {
  const backups = simulatedMonths();
  assert.equal(backups.length, 64);
  const plan = planRetention(backups, { keepDaily: 7, keepWeekly: 4, keepMonthly: 6 });
  const expected: Array<[string, string[]]> = [
    ['2026-11-21T02:00:00.000Z', ['daily:2026-11-21', 'weekly:2026-W47', 'monthly:2026-11', 'newest']],
    ['2026-11-20T14:30:00.000Z', ['daily:2026-11-20']],
    ['2026-11-19T02:00:00.000Z', ['daily:2026-11-19']],
    ['2026-11-18T02:00:00.000Z', ['daily:2026-11-18']],
    ['2026-11-17T02:00:00.000Z', ['daily:2026-11-17']],
    ['2026-11-16T02:00:00.000Z', ['daily:2026-11-16']],
    ['2026-11-15T23:59:59.000Z', ['daily:2026-11-15', 'weekly:2026-W46']],
    ['2026-11-08T02:00:00.000Z', ['weekly:2026-W45']], // Sunday, end of week 45
    ['2026-11-01T02:00:00.000Z', ['weekly:2026-W44']], // Sunday, end of week 44 (which began in October)
    ['2026-10-31T23:00:00.000Z', ['monthly:2026-10']],
    ['2026-09-30T02:00:00.000Z', ['monthly:2026-09']], // only three months exist: the rule keeps three
  ];
  assert.deepEqual(
    plan.keep,
    expected.map(([iso, reasons]) => ({ id: idFor(iso), reasons })),
  );
  assert.equal(plan.remove.length, 64 - expected.length);
  assert.ok(plan.remove.includes(idFor('2026-11-20T02:00:00.000Z')), 'the older run of a day goes');
  assert.ok(plan.remove.includes(idFor('2026-11-19T01:00:00.000Z')));
  assert.ok(plan.remove.includes(idFor('2026-09-23T02:00:00.000Z')));
});

test('policy 0/0/0 keeps only the newest verified backup', () => {
  const backups = simulatedMonths();
  const plan = planRetention(backups, { keepDaily: 0, keepWeekly: 0, keepMonthly: 0 });
  assert.deepEqual(plan.keep, [{ id: idFor('2026-11-21T02:00:00.000Z'), reasons: ['newest'] }]);
  assert.equal(plan.remove.length, backups.length - 1);
});

test('input order does not matter; output is newest first', () => {
  const backups = simulatedMonths();
  const policy = { keepDaily: 7, keepWeekly: 4, keepMonthly: 6 };
  const reference = planRetention(backups, policy);
  const reversed = planRetention([...backups].reverse(), policy);
  const byId = planRetention([...backups].sort((a, b) => (a.id < b.id ? -1 : 1)), policy);
  assert.deepEqual(reversed, reference);
  assert.deepEqual(byId, reference);
  const times = reference.keep.map((k) => backups.find((b) => b.id === k.id)!.completedAt.getTime());
  assert.deepEqual(times, [...times].sort((a, b) => b - a));
});

test('unverified backups are never removed, never fill a slot and never count as newest', () => {
  const backups = [
    at('2026-11-21T02:00:00Z'),
    at('2026-11-21T13:00:00Z', false), // newer but unverified: must not displace 02:00 as day's newest
    at('2026-11-20T02:00:00Z', false),
    at('2026-11-20T01:00:00Z'),
    at('2026-11-19T02:00:00Z'),
    at('2026-11-22T02:00:00Z', false), // the newest of all, unverified
  ];
  const plan = planRetention(backups, { keepDaily: 2, keepWeekly: 0, keepMonthly: 0 });
  assert.deepEqual(plan.keep, [
    { id: idFor('2026-11-21T02:00:00Z'), reasons: ['daily:2026-11-21', 'newest'] },
    { id: idFor('2026-11-20T01:00:00Z'), reasons: ['daily:2026-11-20'] },
  ]);
  assert.deepEqual(plan.remove, [idFor('2026-11-19T02:00:00Z')]);
  const zero = planRetention(backups, { keepDaily: 0, keepWeekly: 0, keepMonthly: 0 });
  assert.deepEqual(ids(zero), [idFor('2026-11-21T02:00:00Z')]);
  assert.deepEqual(planRetention([at('2026-11-21T02:00:00Z', false)], { keepDaily: 0, keepWeekly: 0, keepMonthly: 0 }), {
    keep: [],
    remove: [],
  });
  assert.deepEqual(planRetention([], { keepDaily: 7, keepWeekly: 4, keepMonthly: 6 }), { keep: [], remove: [] });
});

test('ordering is by completion time, not by id', () => {
  // Ids sort the opposite way from time; a name-based sort would keep the oldest.
  const backups: RetentionCandidate[] = [
    { id: 'a-newest', completedAt: new Date('2026-11-21T23:00:00Z'), verified: true },
    { id: 'm-middle', completedAt: new Date('2026-11-21T12:00:00Z'), verified: true },
    { id: 'z-oldest', completedAt: new Date('2026-11-21T01:00:00Z'), verified: true },
    { id: '20261122T020000Z-ffffff', completedAt: new Date('2026-11-20T02:00:00Z'), verified: true }, // id claims a later day
  ];
  const plan = planRetention(backups, { keepDaily: 1, keepWeekly: 0, keepMonthly: 0 });
  assert.deepEqual(plan.keep, [{ id: 'a-newest', reasons: ['daily:2026-11-21', 'newest'] }]);
  assert.deepEqual(plan.remove, ['m-middle', 'z-oldest', '20261122T020000Z-ffffff']);
});

test('ISO weeks: Sunday/Monday boundary and the 2026→2027 year turn (2026 has 53 weeks)', () => {
  assert.equal(isoWeekBucket(new Date('2026-11-15T23:59:59.999Z')), '2026-W46'); // Sunday
  assert.equal(isoWeekBucket(new Date('2026-11-16T00:00:00.000Z')), '2026-W47'); // Monday
  assert.equal(isoWeekBucket(new Date('2026-12-28T00:00:00Z')), '2026-W53');
  assert.equal(isoWeekBucket(new Date('2027-01-03T23:59:59Z')), '2026-W53'); // January, but ISO year 2026
  assert.equal(isoWeekBucket(new Date('2027-01-04T00:00:00Z')), '2027-W01');
  assert.equal(isoWeekBucket(new Date('2024-12-30T00:00:00Z')), '2025-W01'); // December, but ISO year 2025

  const backups = [
    at('2027-01-05T02:00:00Z'), // Tue, 2027-W01
    at('2027-01-04T00:00:00Z'), // Mon, 2027-W01
    at('2027-01-03T23:00:00Z'), // Sun, 2026-W53 (and January 2027)
    at('2027-01-01T02:00:00Z'), // Fri, 2026-W53
    at('2026-12-31T02:00:00Z'), // Thu, 2026-W53 (and December 2026)
    at('2026-12-27T02:00:00Z'), // Sun, 2026-W52
    at('2026-12-20T02:00:00Z'), // Sun, 2026-W51
  ];
  const weekly = planRetention(backups, { keepDaily: 0, keepWeekly: 3, keepMonthly: 0 });
  assert.deepEqual(weekly.keep, [
    { id: idFor('2027-01-05T02:00:00Z'), reasons: ['weekly:2027-W01', 'newest'] },
    { id: idFor('2027-01-03T23:00:00Z'), reasons: ['weekly:2026-W53'] },
    { id: idFor('2026-12-27T02:00:00Z'), reasons: ['weekly:2026-W52'] },
  ]);
  const monthly = planRetention(backups, { keepDaily: 0, keepWeekly: 0, keepMonthly: 12 });
  assert.deepEqual(monthly.keep, [
    { id: idFor('2027-01-05T02:00:00Z'), reasons: ['monthly:2027-01', 'newest'] },
    { id: idFor('2026-12-31T02:00:00Z'), reasons: ['monthly:2026-12'] },
  ]);
});

test('days are UTC days, whatever the local time zone of the machine', () => {
  const backups = [at('2026-11-21T23:30:00Z'), at('2026-11-21T00:30:00Z'), at('2026-11-20T23:59:59Z')];
  const plan = planRetention(backups, { keepDaily: 5, keepWeekly: 0, keepMonthly: 0 });
  assert.deepEqual(plan.keep.map((k) => k.reasons[0]), ['daily:2026-11-21', 'daily:2026-11-20']);
});

test('bad input is refused, naming the backup', () => {
  const policy = { keepDaily: 1, keepWeekly: 1, keepMonthly: 1 };
  assert.throws(() => planRetention([at('2026-11-21T02:00:00Z'), at('2026-11-21T02:00:00Z')], policy), /b-[0-9a-f]+ appears twice/);
  assert.throws(() => planRetention([{ id: 'x', completedAt: new Date('nope'), verified: true }], policy), /backup x: completedAt/);
  assert.throws(() => planRetention([], { ...policy, keepWeekly: -1 }), /retention keepWeekly: -1/);
  assert.throws(() => planRetention([], { ...policy, keepDaily: 1.5 }), /retention keepDaily: 1.5/);
});

const DAY = 86_400_000;
const BASE = Date.UTC(2026, 0, 1);
/** Hours over ~14 months (so days, weeks and months repeat), or a few instants (exact-time ties). */
const timeArb = fc.oneof(
  fc.integer({ min: 0, max: 420 * 24 }).map((h) => BASE + h * 3_600_000),
  fc.integer({ min: 0, max: 3 }).map((i) => BASE + 400 * DAY + i * 1000),
);
const backupsArb = fc.uniqueArray(
  fc.record({ id: fc.hexaString({ minLength: 1, maxLength: 4 }), t: timeArb, verified: fc.boolean() }),
  { selector: (r) => r.id, maxLength: 80 },
);
const policyArb = fc.record({
  keepDaily: fc.integer({ min: 0, max: 10 }),
  keepWeekly: fc.integer({ min: 0, max: 6 }),
  keepMonthly: fc.integer({ min: 0, max: 8 }),
});

test(`property (${PROPERTY_RUNS} runs): partition of verified, newest kept, order-independent, rules honoured`, () => {
  fc.assert(
    fc.property(backupsArb, policyArb, fc.integer(), (raw, policy, seed) => {
      const backups = raw.map((r) => ({ id: r.id, completedAt: new Date(r.t), verified: r.verified }));
      const plan = planRetention(backups, policy);
      const keepIds = ids(plan);
      const verified = backups.filter((b) => b.verified);

      // keep ∪ remove = all verified, and the two are disjoint.
      assert.deepEqual([...keepIds, ...plan.remove].sort(), verified.map((b) => b.id).sort());
      assert.equal(new Set([...keepIds, ...plan.remove]).size, keepIds.length + plan.remove.length);

      // The newest verified backup is always kept.
      const newestTime = Math.max(...verified.map((b) => b.completedAt.getTime()));
      if (verified.length) assert.ok(plan.keep.some((k) => backups.find((b) => b.id === k.id)!.completedAt.getTime() === newestTime));

      // Every kept backup has a reason; each rule uses at most N slots, and each slot holds the
      // newest verified backup of its bucket.
      const byId = new Map(backups.map((b) => [b.id, b]));
      const perRule = { daily: 0, weekly: 0, monthly: 0 };
      for (const k of plan.keep) {
        assert.ok(k.reasons.length > 0);
        for (const r of k.reasons) {
          const [rule] = r.split(':') as [keyof typeof perRule | 'newest'];
          if (rule === 'newest') continue;
          perRule[rule]++;
          const t = byId.get(k.id)!.completedAt.getTime();
          const sameBucket = verified.filter((b) => r === reasonFor(rule, b.completedAt));
          assert.ok(sameBucket.every((b) => b.completedAt.getTime() <= t));
        }
      }
      // … and fills min(N, buckets that have a verified backup) of them.
      for (const [rule, n] of [['daily', policy.keepDaily], ['weekly', policy.keepWeekly], ['monthly', policy.keepMonthly]] as const) {
        const buckets = new Set(verified.map((b) => reasonFor(rule, b.completedAt))).size;
        assert.equal(perRule[rule], Math.min(n, buckets), rule);
      }

      // Same answer for any permutation of the input.
      const shuffled = shuffle(backups, seed);
      assert.deepEqual(planRetention(shuffled, policy), plan);
    }),
    { numRuns: PROPERTY_RUNS },
  );
});

/** The reason a backup at `t` would carry under `rule` (independent of the code under test, but for ISO weeks). */
function reasonFor(rule: 'daily' | 'weekly' | 'monthly', t: Date): string {
  const iso = t.toISOString();
  const bucket = rule === 'daily' ? iso.slice(0, 10) : rule === 'monthly' ? iso.slice(0, 7) : isoWeekBucket(t);
  return `${rule}:${bucket}`;
}

/** Fisher–Yates with a small seeded PRNG (mulberry32), so a failure replays from fast-check's seed. */
function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = Math.imul(s ^ (s >>> 15), 1 | s);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
