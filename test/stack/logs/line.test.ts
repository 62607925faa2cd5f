// The log line parser, filter and merger (stack/logs/line.ts, merge.ts): tables of real lines from
// each daemon of the stack, then fast-check properties (never throws; JSON level/time read back;
// the merge keeps every line, each file's order, and time order across sorted files).
import assert from 'node:assert/strict';
import test from 'node:test';
import fc from 'fast-check';
import { containsWord, LEVELS, matches, parseLevel, parseLine, textLevel, textTime } from '../../../stack/logs/line.ts';
import { mergeStreams, stamp } from '../../../stack/logs/merge.ts';

const NOW = new Date(2026, 10, 22, 12, 0, 0).getTime();
const local = (y: number, mo: number, d: number, h: number, mi: number, s: number, ms = 0) => new Date(y, mo - 1, d, h, mi, s, ms).getTime();

test('times and levels of each daemon’s text lines', () => {
  const cases: Array<[string, number | undefined, number]> = [
    ['Nov 22 00:57:54 mail ceerion-postfix/smtpd[19543]: connect from unknown[127.0.0.1]', local(2026, 11, 22, 0, 57, 54), LEVELS.info!],
    ['Nov 22 00:57:54 mail ceerion-postfix/smtpd[19543]: warning: hostname does not resolve', local(2026, 11, 22, 0, 57, 54), LEVELS.warn!],
    ['Nov  2 10:00:01 mail ceerion-postfix/master[1]: fatal: bind 127.0.0.1 port 25: Address already in use', local(2026, 11, 2, 10, 0, 1), LEVELS.fatal!],
    ['Nov 22 00:57:54 imap-login: Info: Disconnected: Connection closed', local(2026, 11, 22, 0, 57, 54), LEVELS.info!],
    ['Nov 22 00:57:54 lmtp(test@ceerion.test)<1><x>: Error: sieve: failed', local(2026, 11, 22, 0, 57, 54), LEVELS.error!],
    ['2026-11-22 00:57:47.999 UTC [19159] LOG:  starting PostgreSQL 15.20', Date.UTC(2026, 10, 22, 0, 57, 47, 999), LEVELS.info!],
    ['2026-11-22 00:57:48.004 UTC [19167] FATAL:  role "x" does not exist', Date.UTC(2026, 10, 22, 0, 57, 48, 4), LEVELS.fatal!],
    ['2026-11-22 00:57:48.004 UTC [19167] WARNING:  could not flush', Date.UTC(2026, 10, 22, 0, 57, 48, 4), LEVELS.warn!],
    ['19160:M 22 Nov 2026 00:57:47.995 * Ready to accept connections', local(2026, 11, 22, 0, 57, 47, 995), LEVELS.info!],
    ['19160:C 22 Nov 2026 00:57:47.985 # Redis version=7.0.15', local(2026, 11, 22, 0, 57, 47, 985), LEVELS.warn!],
    ['Sun Nov 22 00:57:48 2026 -> instream(local): Eicar FOUND', local(2026, 11, 22, 0, 57, 48), LEVELS.info!],
    ['Sun Nov 22 00:57:48 2026 -> ERROR: Can\'t open file', local(2026, 11, 22, 0, 57, 48), LEVELS.error!],
    ['policyd on inet:127.0.0.1:10040', undefined, LEVELS.info!],
    ['2026-02-31 10:00:00 not a date', undefined, LEVELS.info!],
  ];
  for (const [line, time, level] of cases) {
    assert.equal(textTime(line, NOW), time, line);
    assert.equal(textLevel(line), level, line);
  }
  // A syslog time that would lie in the future belongs to last year.
  assert.equal(textTime('Dec 31 23:59:59 host x: y', local(2027, 1, 1, 0, 0, 5)), local(2026, 12, 31, 23, 59, 59));
  assert.equal(textTime('Dec 31 23:59:59 host x: y', local(2026, 6, 1, 0, 0, 0)), local(2025, 12, 31, 23, 59, 59));
  assert.equal(textTime('2026-11-22T01:00:00+01:00 x', NOW), Date.UTC(2026, 10, 22, 0, 0, 0));
});

test('pino lines: level, time (ISO and epoch), queue-id fields', () => {
  const a = parseLine('milter', '{"level":40,"time":"2026-11-22T00:59:11.603Z","service":"milter","qid":"9123820E4AC","msg":"x"}', NOW);
  assert.equal(a.level, 40);
  assert.equal(a.time, Date.UTC(2026, 10, 22, 0, 59, 11, 603));
  assert.equal(parseLine('x', '{"level":"error","time":1700000000000}', NOW).level, 50);
  assert.equal(parseLine('x', '{"level":30,"time":1700000000000}', NOW).time, 1700000000000);
  // Not an object: a text line.
  assert.equal(parseLine('x', '{not json', NOW).json, undefined);
  assert.equal(parseLine('x', '[1,2]', NOW).json, undefined);

  const pol = parseLine('policyd', '{"level":40,"time":1,"queueId":"4XyZ1QabcD","msg":"rate limit exceeded"}', NOW);
  const pf = parseLine('postfix', 'Nov 22 00:59:11 mail ceerion-postfix/qmgr[1]: 4XyZ1QabcD: removed', NOW);
  const other = parseLine('postfix', 'Nov 22 00:59:11 mail ceerion-postfix/qmgr[1]: 4XyZ1QabcDE: removed', NOW);
  const f = { queueId: '4XyZ1QabcD' };
  assert.ok(matches(a, { queueId: '9123820E4AC' }));
  assert.ok(matches(pol, f));
  assert.ok(matches(pf, f));
  assert.ok(!matches(other, f), 'a longer id is another id');
  assert.ok(!matches(pf, { services: new Set(['milter']) }));
  assert.ok(matches(pf, { services: new Set(['postfix']), minLevel: LEVELS.info! }));
  assert.ok(!matches(pf, { minLevel: LEVELS.warn! }), 'a text line without a severity word counts as info');
  assert.equal(parseLevel('WARNING'), 40);
  assert.equal(parseLevel('loud'), undefined);
});

test('stamp: follow mode dates text by arrival; continuation and banner lines stay with their neighbours', () => {
  const lines = ['banner without time', '2026-11-22 00:00:01 UTC [1] LOG: a', 'DETAIL: more', '2026-11-22 00:00:03 UTC [1] LOG: b'].map((r) => parseLine('postgres', r, NOW));
  const history = stamp(lines, {}, 999, 'history');
  assert.deepEqual(history.map((l) => l.at), [Date.UTC(2026, 10, 22, 0, 0, 1), Date.UTC(2026, 10, 22, 0, 0, 1), Date.UTC(2026, 10, 22, 0, 0, 1), Date.UTC(2026, 10, 22, 0, 0, 3)]);
  const follow = stamp(lines, {}, 999, 'follow');
  assert.deepEqual(follow.map((l) => l.at), [999, 999, 999, 999]);
  const json = stamp([parseLine('m', '{"level":30,"time":5}', NOW), parseLine('m', 'stderr text', NOW)], {}, 999, 'follow');
  assert.deepEqual(json.map((l) => l.at), [5, 999]);
});

const FUZZ_RUNS = 5000;

test(`fuzz: parseLine and matches never throw on arbitrary lines (${FUZZ_RUNS} runs each)`, () => {
  const line = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.fullUnicodeString({ maxLength: 200 }),
    fc.json().map((j) => j),
    fc.tuple(fc.constantFrom('Nov 22 ', '2026-11-22 ', '19160:M 22 Nov 2026 ', 'Sun Nov 22 ', '{"level":', '{'), fc.string({ maxLength: 80 })).map(([a, b]) => a + b),
  );
  let runs = 0;
  fc.assert(
    fc.property(line, fc.string({ maxLength: 12 }), (raw, id) => {
      runs++;
      const p = parseLine('svc', raw, NOW);
      assert.equal(p.raw, raw);
      assert.ok(Number.isFinite(p.level));
      if (p.time !== undefined) assert.ok(Number.isFinite(p.time));
      matches(p, { queueId: id, minLevel: 30, services: new Set(['svc']) });
      containsWord(raw, id);
    }),
    { numRuns: FUZZ_RUNS },
  );
  assert.equal(runs, FUZZ_RUNS);
});

test(`fuzz: a pino object's level and time read back (${FUZZ_RUNS} runs)`, () => {
  fc.assert(
    fc.property(
      fc.constantFrom(10, 20, 30, 40, 50, 60),
      fc.integer({ min: 0, max: 4_102_444_800_000 }),
      fc.boolean(),
      fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => !['level', 'time', '__proto__'].includes(k)), fc.jsonValue(), { maxKeys: 5 }),
      (level, time, iso, extra) => {
        const raw = JSON.stringify({ ...extra, level, time: iso ? new Date(time).toISOString() : time });
        const p = parseLine('svc', raw, NOW);
        assert.equal(p.level, level);
        assert.equal(p.time, time);
      },
    ),
    { numRuns: FUZZ_RUNS },
  );
});

test(`fuzz: merge keeps every line and each file's order; sorted files merge sorted (${FUZZ_RUNS} runs)`, () => {
  const stream = (sorted: boolean) =>
    fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 20 }).map((ts) => (sorted ? [...ts].sort((a, b) => a - b) : ts));
  fc.assert(
    fc.property(fc.boolean().chain((sorted) => fc.tuple(fc.constant(sorted), fc.array(stream(sorted), { maxLength: 6 }))), ([sorted, times]) => {
      const streams = times.map((ts, s) => ts.map((at, i) => ({ at, s, i })));
      const out = mergeStreams(streams);
      assert.equal(out.length, times.flat().length);
      for (let s = 0; s < streams.length; s++) assert.deepEqual(out.filter((l) => l.s === s).map((l) => l.i), streams[s]!.map((_, i) => i));
      if (sorted) {
        for (let k = 1; k < out.length; k++) {
          assert.ok(out[k - 1]!.at <= out[k]!.at);
          // Ties: lower stream first.
          if (out[k - 1]!.at === out[k]!.at) assert.ok(out[k - 1]!.s <= out[k]!.s);
        }
      }
    }),
    { numRuns: FUZZ_RUNS },
  );
});
