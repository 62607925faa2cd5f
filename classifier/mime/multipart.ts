/**
 * Splitting a multipart body at its boundary (RFC 2046 §5.1.1). A delimiter is "--boundary" at the
 * start of a line, followed by "--" for the close delimiter, then only blanks to the end of the
 * line. The line break before a delimiter belongs to it, not to the part before it.
 */
import { defect, type Ctx } from './encodings.ts';

export interface Split {
  /** Part ranges as [start, end) pairs, absolute offsets into the buffer. */
  parts: number[];
  /** The close delimiter was seen. */
  closed: boolean;
  /** More parts were present than `maxParts` allowed. */
  capped: boolean;
}

/** Longest boundary we search for: RFC 2046 allows 70; longer ones come from garbage. */
export const MAX_BOUNDARY = 200;

/**
 * What follows "--boundary" at `i` (index just after it): 2 = close delimiter, 1 = delimiter,
 * 0 = not a delimiter (a longer boundary that shares this prefix, or text). Returns via `lineEndOut`
 * the index of the first byte after the delimiter line.
 */
function delimiterKind(buf: Buffer, i: number, end: number, lineEndOut: number[]): number {
  let kind = 1;
  if (i + 1 < end && buf[i] === 45 && buf[i + 1] === 45) {
    kind = 2;
    i += 2;
  }
  while (i < end && (buf[i] === 32 || buf[i] === 9)) i++;
  if (i >= end) {
    lineEndOut[0] = end;
    return kind;
  }
  if (buf[i] === 10) {
    lineEndOut[0] = i + 1;
    return kind;
  }
  if (buf[i] === 13 && (i + 1 >= end || buf[i + 1] === 10)) {
    lineEndOut[0] = Math.min(end, i + 2);
    return kind;
  }
  // Some mailers put junk after a close delimiter; it still closes.
  if (kind === 2) {
    const nl = buf.indexOf(10, i);
    lineEndOut[0] = nl < 0 || nl >= end ? end : nl + 1;
    return kind;
  }
  return 0;
}

/**
 * Find the parts of buf[start, end) delimited by `boundary` (already encoded as bytes). Returns
 * null when no delimiter occurs at all. Searching runs over a subarray so a nested part never scans
 * past its own end: total work is the body size times the nesting depth, which maxDepth caps.
 */
export function splitMultipart(buf: Buffer, start: number, end: number, boundary: Buffer, maxParts: number, ctx: Ctx): Split | null {
  const view = buf.subarray(start, end);
  const len = view.length;
  const needle = Buffer.allocUnsafe(boundary.length + 3);
  needle[0] = 10;
  needle[1] = 45;
  needle[2] = 45;
  boundary.copy(needle, 3);
  const out: number[] = [];
  const lineEnd = [0];
  let partStart = -1; // start of the part being read, -1 before the first delimiter
  let closed = false;
  let capped = false;
  // The first delimiter may open the body without a line break before it.
  let search = 0;
  if (len >= needle.length - 1 && view.compare(needle, 1, needle.length, 0, needle.length - 1) === 0) {
    const kind = delimiterKind(view, needle.length - 1, len, lineEnd);
    if (kind === 2) return { parts: out, closed: true, capped: false };
    if (kind === 1) {
      partStart = lineEnd[0]!;
      search = partStart;
    }
  }
  while (search <= len) {
    const at = view.indexOf(needle, Math.max(0, search - 1));
    if (at < 0) break;
    const kind = delimiterKind(view, at + needle.length, len, lineEnd);
    if (kind === 0) {
      search = at + needle.length;
      continue;
    }
    if (partStart >= 0) {
      const partEnd = at > partStart && view[at - 1] === 13 ? at - 1 : at;
      if (out.length / 2 >= maxParts) {
        capped = true;
        break;
      }
      out.push(start + partStart, start + Math.max(partStart, partEnd));
    }
    if (kind === 2) {
      closed = true;
      break;
    }
    partStart = lineEnd[0]!;
    search = partStart;
  }
  if (partStart < 0) return null;
  if (!closed && !capped) {
    defect(ctx, 'multipart-unclosed');
    if (out.length / 2 < maxParts) out.push(start + partStart, end);
    else capped = true;
  }
  return { parts: out, closed, capped };
}
