/**
 * Which backups `ceerion backup prune` keeps: restic's `forget --keep-daily/--keep-weekly/
 * --keep-monthly`, as a pure function over the manifests' completion times.
 *
 * Per rule, walk the backups newest first and keep the first (newest) backup of each new bucket
 * (UTC day, ISO 8601 week, UTC month) until N buckets are kept. Buckets are the ones that *have* a
 * backup, not calendar slots counted back from today: if backups stopped a month ago, keepDaily 7
 * still keeps the last seven days that ran, so a broken scheduler never lets prune empty the bucket.
 * That is also why there is no clock parameter: the result depends on the backups alone.
 *
 * Only verified backups take part. An unverified one (no manifest, failed verification) is never
 * removed here and never fills a slot, so a run that uploaded garbage cannot push a good backup out;
 * the caller expires incomplete backups by age (retention.incompleteAfterHours). Unverified
 * backups therefore appear in neither `keep` nor `remove`.
 */

export interface RetentionCandidate {
  id: string;
  completedAt: Date;
  verified: boolean;
}

export interface RetentionPolicy {
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
}

export interface RetentionPlan {
  /** Newest first. Reasons name the rule and its bucket: `daily:2026-11-21`, `weekly:2026-W47`, `monthly:2026-11`, `newest`. */
  keep: Array<{ id: string; reasons: string[] }>;
  /** Ids to delete, newest first. */
  remove: string[];
}

const DAY_MS = 86_400_000;

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** `2026-11-21` (UTC). */
export function dayBucket(t: Date): string {
  return `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
}

/**
 * `2026-W47`: ISO 8601 week (weeks start on Monday; week 1 holds the year's first Thursday), so the
 * days around New Year may belong to the previous or next ISO year (1–3 Jan 2027 are 2026-W53).
 */
export function isoWeekBucket(t: Date): string {
  const midnight = Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate());
  const mondayBased = (t.getUTCDay() + 6) % 7;
  // The Thursday of this week decides the ISO year; its distance from 1 January gives the week.
  const thursday = new Date(midnight + (3 - mondayBased) * DAY_MS);
  const isoYear = thursday.getUTCFullYear();
  const week = 1 + Math.floor((thursday.getTime() - Date.UTC(isoYear, 0, 1)) / (7 * DAY_MS));
  return `${isoYear}-W${pad(week)}`;
}

/** `2026-11` (UTC). */
export function monthBucket(t: Date): string {
  return `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}`;
}

const RULES = [
  { name: 'daily', key: 'keepDaily', bucket: dayBucket },
  { name: 'weekly', key: 'keepWeekly', bucket: isoWeekBucket },
  { name: 'monthly', key: 'keepMonthly', bucket: monthBucket },
] as const;

export function planRetention(backups: RetentionCandidate[], policy: RetentionPolicy): RetentionPlan {
  for (const rule of RULES) {
    const n = policy[rule.key];
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`retention ${rule.key}: ${n} is not a whole number ≥ 0`);
  }
  const seen = new Set<string>();
  for (const b of backups) {
    if (Number.isNaN(b.completedAt.getTime())) throw new RangeError(`backup ${b.id}: completedAt is not a valid date`);
    // Duplicate ids would make keep/remove ambiguous (and delete objects a kept entry still names).
    if (seen.has(b.id)) throw new RangeError(`backup ${b.id} appears twice`);
    seen.add(b.id);
  }

  // Time decides, never the id: ids carry a random suffix and names can be renamed. The id only
  // breaks exact-time ties, so that the plan does not depend on the order of the input.
  const verified = backups
    .filter((b) => b.verified)
    .sort((a, b) => b.completedAt.getTime() - a.completedAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

  const reasons = new Map<string, string[]>();
  for (const rule of RULES) {
    let left = policy[rule.key];
    let last: string | undefined;
    for (const b of verified) {
      if (left === 0) break;
      const bucket = rule.bucket(b.completedAt);
      if (bucket === last) continue; // an older backup of a bucket already kept
      last = bucket;
      left--;
      const list = reasons.get(b.id) ?? [];
      list.push(`${rule.name}:${bucket}`);
      reasons.set(b.id, list);
    }
  }
  // The newest good backup survives any policy, even 0/0/0: prune must never leave nothing to restore.
  const newest = verified[0];
  if (newest) reasons.set(newest.id, [...(reasons.get(newest.id) ?? []), 'newest']);

  const keep: RetentionPlan['keep'] = [];
  const remove: string[] = [];
  for (const b of verified) {
    const why = reasons.get(b.id);
    if (why) keep.push({ id: b.id, reasons: why });
    else remove.push(b.id);
  }
  return { keep, remove };
}
