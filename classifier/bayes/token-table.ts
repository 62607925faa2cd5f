/**
 * Open-addressing hash table from 64-bit token hashes (hi, lo uint32 halves) to spam/ham counts
 * and a "last seen" day, for the Bayes filter.
 *
 * Layout: five parallel typed arrays (structure of arrays) so a table of 1M tokens is a handful of
 * flat ArrayBuffers the GC never has to walk: keys 2×4 B, counts 2×4 B (Float32 so the forgetting
 * scale can leave fractional counts; integers stay exact up to 2^24), last-seen 2 B = 18 B a slot.
 * Capacity is a power of two kept at ≤ 70 % load, so 1M tokens live in 2^21 slots ≈ 38 MB.
 *
 * The last-seen array doubles as the occupancy map (0 = empty slot, else day + 1), which saves a
 * separate byte per slot. Deleting a token (both counts back to 0, e.g. after an unlearn) uses
 * backward-shift deletion, so there are no tombstones and lookups never slow down with churn.
 */

const MAGIC = 0x31545443; // "CTT1" read as a little-endian uint32
const VERSION = 1;
const HEADER_BYTES = 16;
const MAX_LOAD = 0.7;
const MIN_CAPACITY = 16;
/** uint16 days since 1970 with 0 reserved for "empty": day 65534 is the year 2149. */
export const MAX_DAY = 0xfffe;
/** Counts at or below this (after a subtraction) mean the token is gone. */
const ZERO = 1e-6;

export interface TokenEntry {
  hi: number;
  lo: number;
  spam: number;
  ham: number;
  /** Days since 1970-01-01 (UTC) of the last learn that touched the token. */
  lastSeen: number;
}

/** Days since the Unix epoch, clamped into the table's uint16 range. */
export function dayNumber(ms: number = Date.now()): number {
  return Math.min(MAX_DAY, Math.max(0, Math.floor(ms / 86_400_000)));
}

function capacityFor(tokens: number): number {
  let cap = MIN_CAPACITY;
  while (cap * MAX_LOAD < tokens) cap *= 2;
  return cap;
}

export class TokenTable {
  private hiKeys!: Uint32Array;
  private loKeys!: Uint32Array;
  private spamCounts!: Float32Array;
  private hamCounts!: Float32Array;
  /** 0 = empty slot; otherwise lastSeen day + 1. */
  private seen!: Uint16Array;
  private mask = 0;
  private shift = 0;
  private limit = 0;
  private count = 0;

  constructor(expectedTokens = 0) {
    this.allocate(capacityFor(expectedTokens));
  }

  /** Number of tokens stored. */
  get size(): number {
    return this.count;
  }

  get capacity(): number {
    return this.mask + 1;
  }

  /** Bytes held by the backing arrays. */
  get byteLength(): number {
    return this.capacity * 18;
  }

  private allocate(cap: number): void {
    this.hiKeys = new Uint32Array(cap);
    this.loKeys = new Uint32Array(cap);
    this.spamCounts = new Float32Array(cap);
    this.hamCounts = new Float32Array(cap);
    this.seen = new Uint16Array(cap);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.limit = Math.floor(cap * MAX_LOAD);
    this.count = 0;
  }

  /**
   * Home slot. The keys are already hashes, but the features code may produce hashes whose low
   * bits are weak (e.g. FNV), so mix both halves and take the top bits (Fibonacci hashing).
   */
  private home(hi: number, lo: number): number {
    let h = lo ^ Math.imul(hi, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    return (h ^ (h >>> 13)) >>> this.shift;
  }

  /** Slot index of a token, or -1. Used by the hot scoring loop to avoid allocating. */
  find(hi: number, lo: number): number {
    const { hiKeys, loKeys, seen, mask } = this;
    for (let i = this.home(hi, lo); ; i = (i + 1) & mask) {
      if (seen[i] === 0) return -1;
      if (loKeys[i] === lo && hiKeys[i] === hi) return i;
    }
  }

  spamAt(slot: number): number {
    return this.spamCounts[slot]!;
  }

  hamAt(slot: number): number {
    return this.hamCounts[slot]!;
  }

  lastSeenAt(slot: number): number {
    return this.seen[slot]! - 1;
  }

  get(hi: number, lo: number): TokenEntry | undefined {
    const i = this.find(hi, lo);
    if (i < 0) return undefined;
    return { hi, lo, spam: this.spamCounts[i]!, ham: this.hamCounts[i]!, lastSeen: this.seen[i]! - 1 };
  }

  /**
   * Adds to a token's counts (never below 0). A new token is stored only if it gets a positive
   * count; a token whose counts both fall to 0 is deleted. `day` (if ≥ 0) raises lastSeen.
   */
  add(hi: number, lo: number, dSpam: number, dHam: number, day = -1): void {
    const { hiKeys, loKeys, seen, mask } = this;
    let i = this.home(hi, lo);
    for (; seen[i] !== 0; i = (i + 1) & mask) {
      if (loKeys[i] !== lo || hiKeys[i] !== hi) continue;
      const spam = Math.max(0, this.spamCounts[i]! + dSpam);
      const ham = Math.max(0, this.hamCounts[i]! + dHam);
      if (spam + ham <= ZERO) {
        this.removeAt(i);
        return;
      }
      this.spamCounts[i] = spam;
      this.hamCounts[i] = ham;
      if (day >= 0) seen[i] = Math.max(seen[i]!, Math.min(day, MAX_DAY) + 1);
      return;
    }
    const spam = Math.max(0, dSpam);
    const ham = Math.max(0, dHam);
    if (spam + ham <= ZERO) return;
    hiKeys[i] = hi;
    loKeys[i] = lo;
    this.spamCounts[i] = spam;
    this.hamCounts[i] = ham;
    seen[i] = Math.min(Math.max(day, 0), MAX_DAY) + 1;
    if (++this.count > this.limit) this.resize(this.capacity * 2);
  }

  /** Removes a token; returns whether it was present. */
  delete(hi: number, lo: number): boolean {
    const i = this.find(hi, lo);
    if (i < 0) return false;
    this.removeAt(i);
    return true;
  }

  /** Backward-shift deletion: pull later members of the probe run into the hole where allowed. */
  private removeAt(slot: number): void {
    const { hiKeys, loKeys, spamCounts, hamCounts, seen, mask } = this;
    let hole = slot;
    for (let j = (slot + 1) & mask; seen[j] !== 0; j = (j + 1) & mask) {
      const h = this.home(hiKeys[j]!, loKeys[j]!);
      // j may move into the hole only if its home is not cyclically inside (hole, j].
      if (((j - h) & mask) >= ((j - hole) & mask)) {
        hiKeys[hole] = hiKeys[j]!;
        loKeys[hole] = loKeys[j]!;
        spamCounts[hole] = spamCounts[j]!;
        hamCounts[hole] = hamCounts[j]!;
        seen[hole] = seen[j]!;
        hole = j;
      }
    }
    seen[hole] = 0;
    spamCounts[hole] = 0;
    hamCounts[hole] = 0;
    this.count--;
  }

  /** Rehashes every token into a table of `cap` slots (grow, or shrink after a prune). */
  private resize(cap: number, keep?: (slot: number) => boolean): void {
    const { hiKeys, loKeys, spamCounts, hamCounts, seen } = this;
    this.allocate(cap);
    for (let i = 0; i < seen.length; i++) {
      if (seen[i] === 0 || (keep && !keep(i))) continue;
      this.insertNew(hiKeys[i]!, loKeys[i]!, spamCounts[i]!, hamCounts[i]!, seen[i]!);
    }
  }

  /** Insert of a key known to be absent, without the growth check (callers size the table). */
  private insertNew(hi: number, lo: number, spam: number, ham: number, seenPlusOne: number): void {
    let i = this.home(hi, lo);
    while (this.seen[i] !== 0) i = (i + 1) & this.mask;
    this.hiKeys[i] = hi;
    this.loKeys[i] = lo;
    this.spamCounts[i] = spam;
    this.hamCounts[i] = ham;
    this.seen[i] = seenPlusOne;
    this.count++;
  }

  /** Calls `fn` for each token, in slot order. Do not mutate the table from inside `fn`. */
  forEach(fn: (hi: number, lo: number, spam: number, ham: number, lastSeen: number) => void): void {
    const { hiKeys, loKeys, spamCounts, hamCounts, seen } = this;
    for (let i = 0; i < seen.length; i++) {
      if (seen[i] !== 0) fn(hiKeys[i]!, loKeys[i]!, spamCounts[i]!, hamCounts[i]!, seen[i]! - 1);
    }
  }

  *entries(): IterableIterator<TokenEntry> {
    for (let i = 0; i < this.seen.length; i++) {
      if (this.seen[i] !== 0) {
        yield { hi: this.hiKeys[i]!, lo: this.loKeys[i]!, spam: this.spamCounts[i]!, ham: this.hamCounts[i]!, lastSeen: this.seen[i]! - 1 };
      }
    }
  }

  /** Multiplies every count by `factor` (the Bayes forgetting renormalisation). */
  scaleAll(factor: number): void {
    const { spamCounts, hamCounts, seen } = this;
    for (let i = 0; i < seen.length; i++) {
      if (seen[i] === 0) continue;
      spamCounts[i] = spamCounts[i]! * factor;
      hamCounts[i] = hamCounts[i]! * factor;
    }
  }

  /**
   * Expiry: removes tokens last seen before `notSeenSinceDay` whose total count is below
   * `minCount` (default: every stale token). Rebuilds the table, shrinking it if it got sparse.
   * Returns how many tokens were removed.
   */
  prune(notSeenSinceDay: number, minCount = Infinity): number {
    const before = this.count;
    const { spamCounts, hamCounts, seen } = this;
    const keep = (i: number) => seen[i]! - 1 >= notSeenSinceDay || spamCounts[i]! + hamCounts[i]! >= minCount;
    let kept = 0;
    for (let i = 0; i < seen.length; i++) if (seen[i] !== 0 && keep(i)) kept++;
    if (kept === before) return 0;
    this.resize(capacityFor(kept), keep);
    return before - kept;
  }

  clear(): void {
    this.allocate(MIN_CAPACITY);
  }

  /**
   * Compact little-endian form: a 16-byte header (magic "CTT1", version u16, flags u16, count u32,
   * reserved u32) then column blocks hi[u32] lo[u32] spam[f32] ham[f32] lastSeen[u16] of only the
   * occupied slots (18 B a token; columns compress better than rows).
   */
  serialize(): Buffer {
    const n = this.count;
    const buf = Buffer.alloc(HEADER_BYTES + n * 18);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    dv.setUint32(0, MAGIC, true);
    dv.setUint16(4, VERSION, true);
    dv.setUint32(8, n, true);
    const oLo = HEADER_BYTES + 4 * n;
    const oSpam = oLo + 4 * n;
    const oHam = oSpam + 4 * n;
    const oSeen = oHam + 4 * n;
    let k = 0;
    this.forEach((hi, lo, spam, ham, lastSeen) => {
      dv.setUint32(HEADER_BYTES + 4 * k, hi, true);
      dv.setUint32(oLo + 4 * k, lo, true);
      dv.setFloat32(oSpam + 4 * k, spam, true);
      dv.setFloat32(oHam + 4 * k, ham, true);
      dv.setUint16(oSeen + 2 * k, lastSeen, true);
      k++;
    });
    return buf;
  }

  static deserialize(buf: Uint8Array): TokenTable {
    if (buf.byteLength < HEADER_BYTES) throw new Error('token table: truncated header');
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    if (dv.getUint32(0, true) !== MAGIC) throw new Error('token table: bad magic');
    const version = dv.getUint16(4, true);
    if (version !== VERSION) throw new Error(`token table: unsupported version ${version}`);
    const n = dv.getUint32(8, true);
    if (buf.byteLength < HEADER_BYTES + n * 18) throw new Error('token table: truncated body');
    const t = new TokenTable(n);
    const oLo = HEADER_BYTES + 4 * n;
    const oSpam = oLo + 4 * n;
    const oHam = oSpam + 4 * n;
    const oSeen = oHam + 4 * n;
    for (let k = 0; k < n; k++) {
      // add() rather than insertNew() so a corrupt file with duplicate keys merges instead of
      // creating unreachable twins.
      t.add(
        dv.getUint32(HEADER_BYTES + 4 * k, true),
        dv.getUint32(oLo + 4 * k, true),
        dv.getFloat32(oSpam + 4 * k, true),
        dv.getFloat32(oHam + 4 * k, true),
        dv.getUint16(oSeen + 2 * k, true),
      );
    }
    return t;
  }
}
