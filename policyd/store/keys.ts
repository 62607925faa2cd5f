/**
 * Pure helpers that turn policy-request attributes into the text the store keys on: the client's
 * network, a normalised sender, a sender domain, a recipient's local part. None of them throws:
 * they see whatever Postfix (or a misbehaving client) sends, and a key must always come out.
 */
import net from 'node:net';

// ---- client network -----------------------------------------------------------------------------

/** Clamp a prefix length to 0..max (config validates it; here garbage must not throw). */
function clampPrefix(bits: number, max: number): number {
  if (!Number.isFinite(bits)) return max;
  return Math.min(max, Math.max(0, Math.trunc(bits)));
}

/** Dotted quad → 4 bytes; undefined unless node accepts it (no leading zeros, each ≤ 255). */
function v4Bytes(text: string): number[] | undefined {
  return net.isIPv4(text) ? text.split('.').map(Number) : undefined;
}

/** IPv6 text (any valid form, embedded IPv4 tail allowed) → 16 bytes. */
function v6Bytes(text: string): number[] | undefined {
  if (!net.isIPv6(text)) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (part: string | undefined): number[] | undefined => {
    if (!part) return [];
    const out: number[] = [];
    const pieces = part.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (piece.includes('.')) {
        // Only the last piece may be an IPv4 tail (::ffff:192.0.2.1); it fills two groups.
        const quad = i === pieces.length - 1 ? v4Bytes(piece) : undefined;
        if (!quad) return undefined;
        out.push((quad[0]! << 8) | quad[1]!, (quad[2]! << 8) | quad[3]!);
      } else {
        if (!/^[0-9a-f]{1,4}$/i.test(piece)) return undefined;
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return undefined;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 0 : fill !== 0) return undefined;
  const all = [...head, ...Array<number>(fill).fill(0), ...tail];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

/** Zero every bit after the first `bits`. */
function mask(bytes: number[], bits: number): number[] {
  return bytes.map((b, i) => {
    const keep = Math.min(8, Math.max(0, bits - i * 8));
    return b & ((0xff << (8 - keep)) & 0xff);
  });
}

/** RFC 5952 text: lower case, no leading zeros, the longest run (≥ 2) of zero groups as "::". */
function formatV6(bytes: number[]): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLen = 1; // a single zero group is never compressed
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/**
 * The network a client address belongs to, as canonical text with its prefix length:
 * `192.0.2.0/24`, `2001:db8:1:2::/64`. IPv4-mapped IPv6 (`::ffff:192.0.2.7`) is treated as the
 * IPv4 address it carries, so one client gets one key whichever way it reached us. Anything that
 * is not an address comes back lower-cased, so it still makes a (per-string) key.
 */
export function clientNetwork(ip: string, v4Prefix: number, v6Prefix: number): string {
  const text = String(ip);
  const v4 = v4Bytes(text);
  if (v4) return `${mask(v4, clampPrefix(v4Prefix, 32)).join('.')}/${clampPrefix(v4Prefix, 32)}`;
  // A zone index (fe80::1%eth0) names a local interface, not part of the address.
  const v6 = v6Bytes(text.replace(/%[^%]*$/, ''));
  if (!v6) return text.toLowerCase();
  if (v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) {
    const bits = clampPrefix(v4Prefix, 32);
    return `${mask(v6.slice(12), bits).join('.')}/${bits}`;
  }
  const bits = clampPrefix(v6Prefix, 128);
  return `${formatV6(mask(v6, bits))}/${bits}`;
}

// ---- addresses ----------------------------------------------------------------------------------

/** Drop surrounding angle brackets (`<a@b>`, `<>`), as some clients send them. */
function unbracket(addr: string): string {
  while (addr.length >= 2 && addr.startsWith('<') && addr.endsWith('>')) addr = addr.slice(1, -1);
  return addr;
}

/** Split at the LAST `@`: a quoted local part may contain `@`, a domain never does. */
function splitAddress(addr: string): { local: string; domain: string } | undefined {
  const at = addr.lastIndexOf('@');
  return at < 0 ? undefined : { local: addr.slice(0, at), domain: addr.slice(at + 1) };
}

/** A BATV tag: key digit, 3 digits of day, 6 hex of hash (RFC draft-levine-smtp-batv). */
const looksLikeTag = (s: string): boolean => /^[0-9a-f]{10}/.test(s);

/**
 * One layer of BATV removed from a (lower-case) local part, or undefined when there is none:
 * - `prvs=TAG=user` (the draft's order) and `prvs=user=TAG` (an order seen in the wild, which
 *   postgrey also accepts: the part that looks like a tag is the tag);
 * - `msprvs1=TAG=user` (Microsoft's variant);
 * - `btv1==TAG==user` (Barracuda's).
 */
function stripBatvOnce(local: string): string | undefined {
  const btv = /^btv1==[^=]+==(.+)$/.exec(local);
  if (btv) return btv[1];
  const prvs = /^(?:prvs|msprvs1)=([^=]+)=(.+)$/.exec(local);
  if (!prvs) return undefined;
  const [, first, rest] = prvs as unknown as [string, string, string];
  if (!looksLikeTag(first) && looksLikeTag(rest) && !rest.includes('=')) return first;
  return rest;
}

/**
 * The sender as greylisting keys it (postgrey's `do_sender_substitutions`, plus more BATV forms),
 * so that one mailing list or bounce system is one sender however it tags each message:
 * - lower case;
 * - BATV removed (repeatedly: a relay may re-tag an already tagged address);
 * - a `+extension` cut off (VERP and sub-addressing);
 * - every run of digits that stands alone between non-word characters (Perl's `\b\d+\b`, as in
 *   postgrey) replaced by `#`: `bounce-12345-678@x` → `bounce-#-#@x`, while `user123` keeps its
 *   digits, being a different mailbox rather than a per-message number.
 * The null sender (empty, or `<>`) stays empty. Idempotent: normalising twice changes nothing.
 */
export function normalizeSender(addr: string): string {
  // Repeat until nothing changes: removing a BATV layer can expose more to remove (`prvs=…=<x@y>`
  // has brackets again). After the first pass every step only shortens the text or turns a digit
  // into `#`, so this ends, and it is what makes the result a fixed point.
  let out = normalizeOnce(String(addr));
  for (let again = normalizeOnce(out); again !== out; again = normalizeOnce(out)) out = again;
  return out;
}

function normalizeOnce(addr: string): string {
  const text = unbracket(addr).toLowerCase();
  const parts = splitAddress(text);
  if (!parts) return text;
  let local = parts.local;
  for (let next = stripBatvOnce(local); next !== undefined; next = stripBatvOnce(local)) local = next;
  local = local.replace(/\+.*$/s, '').replace(/\b\d+\b/g, '#');
  return `${local}@${parts.domain}`;
}

/** The sender's domain, lower case; empty for the null sender or an address without `@`. */
export function senderDomain(addr: string): string {
  return splitAddress(unbracket(String(addr)).toLowerCase())?.domain ?? '';
}

/**
 * A recipient's local part, lower case, without its `+extension`: the text to compare with
 * `neverLimitRecipients` (`postmaster`, `abuse`), so `postmaster+x@d` is never limited either.
 * An address without `@` is all local part.
 */
export function recipientLocalPart(addr: string): string {
  const text = unbracket(String(addr)).toLowerCase();
  return (splitAddress(text)?.local ?? text).replace(/\+.*$/s, '');
}
