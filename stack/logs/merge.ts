/**
 * Putting several files' lines in one time order. Pure.
 *
 * Each line gets an ordering time `at`: a JSON line its own `time`; a text line, when reading a
 * file's history, the time it starts with (daemons' formats, line.ts), and while following, the
 * moment it arrived (the daemons' own times have a second's resolution, or none). A line with no
 * time of its own takes the previous line's in the same file, so continuation lines (PostgreSQL's
 * DETAIL:, a stack trace) stay with the line they belong to; leading such lines take the first
 * time after them.
 *
 * The merge is a k-way merge of per-file sequences: a file's lines are never reordered among
 * themselves (a service's log is in the order it happened, even if its clock stepped), and lines
 * with equal times keep file order (the order of the `streams` argument).
 */
import type { ParsedLine } from './line.ts';

export interface TimedLine extends ParsedLine {
  at: number;
}

export interface StampState {
  /** The ordering time of the file's previous line. */
  last?: number;
}

export function stamp(lines: ParsedLine[], state: StampState, arrival: number, mode: 'history' | 'follow'): TimedLine[] {
  const own = (l: ParsedLine): number | undefined => (l.json !== undefined || mode === 'history' ? l.time : arrival);
  // Leading lines with no time and no line before them (a banner at the top of the history) take
  // the first time that follows: the file's fallback (its mtime) would put them, and with them the
  // whole file, after everything else.
  let next = state.last ?? lines.map(own).find((t) => t !== undefined) ?? arrival;
  return lines.map((l) => {
    const at = own(l) ?? next;
    next = at;
    state.last = at;
    return { ...l, at };
  });
}

/** k-way merge by `at`; stable within each stream, ties broken by stream order. */
export function mergeStreams<T extends { at: number }>(streams: T[][]): T[] {
  const heads = streams.map(() => 0);
  const total = streams.reduce((n, s) => n + s.length, 0);
  const out: T[] = [];
  // Few streams (one per service): a linear scan per line beats a heap's bookkeeping.
  while (out.length < total) {
    let best = -1;
    for (let i = 0; i < streams.length; i++) {
      const line = streams[i]![heads[i]!];
      if (line === undefined) continue;
      if (best < 0 || line.at < streams[best]![heads[best]!]!.at) best = i;
    }
    out.push(streams[best]![heads[best]!]!);
    heads[best]!++;
  }
  return out;
}
