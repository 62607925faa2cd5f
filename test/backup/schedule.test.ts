// The scheduler's calendar with an injected clock: daily runs at HH:MM UTC, the maildir on its
// weekday, the drill on its weekday, a failing backup does not stop the next day's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isDay, nextRun, parseAt, runSchedule } from '../../backup/schedule.ts';
import { silentLogger } from '../../core/log.ts';

test('nextRun is the first HH:MM UTC strictly after now', () => {
  assert.equal(nextRun(new Date('2026-11-21T01:00:00Z'), '02:30').toISOString(), '2026-11-21T02:30:00.000Z');
  assert.equal(nextRun(new Date('2026-11-21T02:30:00Z'), '02:30').toISOString(), '2026-11-22T02:30:00.000Z');
  assert.equal(nextRun(new Date('2026-12-31T23:59:00Z'), '00:00').toISOString(), '2027-01-01T00:00:00.000Z');
  assert.throws(() => parseAt('24:00'), /HH:MM/);
  assert.throws(() => parseAt('2:30'), /HH:MM/);
  assert.equal(isDay(new Date('2026-11-22T02:30:00Z'), 'sun'), true);
  assert.equal(isDay(new Date('2026-11-22T02:30:00Z'), 'mon'), false);
  assert.equal(isDay(new Date('2026-11-22T02:30:00Z'), 'never'), false);
  assert.equal(isDay(new Date('2026-11-22T02:30:00Z'), 'daily'), true);
});

test('two simulated weeks: 14 backups, maildir on Sundays, drills on Mondays, failures survived', async () => {
  let clock = new Date('2026-11-20T12:00:00Z').getTime(); // a Friday
  const stop = new AbortController();
  const runs: Array<{ at: string; maildir: boolean }> = [];
  const drills: string[] = [];
  await runSchedule(
    { at: '02:30', maildirDay: 'sun', drillDay: 'mon' },
    {
      log: silentLogger,
      now: () => new Date(clock),
      sleep: async (ms) => {
        assert.ok(ms <= 3_600_000, 'sleeps in slices of at most an hour');
        clock += ms;
      },
      backup: async (withMaildir) => {
        runs.push({ at: new Date(clock).toISOString(), maildir: withMaildir });
        if (runs.length === 3) throw new Error('S3 unreachable');
        if (runs.length === 14) stop.abort();
      },
      drill: async () => {
        drills.push(new Date(clock).toISOString().slice(0, 10));
        return true;
      },
    },
    stop.signal,
  );
  assert.equal(runs.length, 14);
  assert.equal(runs[0]!.at, '2026-11-21T02:30:00.000Z');
  assert.deepEqual(runs.filter((r) => r.maildir).map((r) => r.at.slice(0, 10)), ['2026-11-22', '2026-11-29']);
  assert.deepEqual(drills, ['2026-11-23', '2026-11-30']);
});
