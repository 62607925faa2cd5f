/**
 * Robinson–Fisher Bayes filter (the bogofilter / SpamAssassin "chi-square" combining).
 *
 *   p(w) = (spam(w)/nspam) / (spam(w)/nspam + ham(w)/nham)       per-token spam ratio
 *   f(w) = (s·x + n·p(w)) / (s + n),  n = spam(w) + ham(w)          shrunk towards x when rare
 *   H = C⁻¹(−2 Σ ln f, 2k),  S = C⁻¹(−2 Σ ln(1−f), 2k),  I = (1 + H − S) / 2
 *
 * over the k tokens with |f − 0.5| ≥ minDev (the maxTokens most extreme ones). I near 1 is spam.
 *
 * Forgetting (the Memory trait) multiplies every count by `forgetting` each `forgetEvery` learns.
 * Doing that to 1M counts would be O(table); instead counts are stored in units of a global
 * `scale` (effective = stored × scale): decaying is `scale *= factor` and a learn adds 1/scale.
 * When scale gets tiny the stored values are renormalised once (O(table), every ~10^6/… learns).
 */
import type { Component, ComponentScore, MailClass, MessageFeatures } from '../types.ts';
import { logChi2Q } from './chi2.ts';
import { dayNumber, TokenTable } from './token-table.ts';

export interface BayesOptions {
  /** Assumed spam probability of a token never seen (Robinson's x). */
  robinsonX: number;
  /** Strength of x against the observed counts (Robinson's s; bogofilter's robs). */
  robinsonS: number;
  /** Tokens with |f − 0.5| < minDev are ignored (bogofilter's min_dev). */
  minDev: number;
  /** Learned spam AND ham messages needed before the filter votes. */
  minLearned: number;
  /** Use only the N most extreme tokens; 0 = all. */
  maxTokens: number;
  /** Optional decay factor in (0,1] applied to all counts every `forgetEvery` learns. */
  forgetting?: number;
  forgetEvery: number;
  /** How many top spam / ham tokens to list in the score details. */
  detailTokens: number;
  /** Today's day number (days since 1970) for the tokens' last-seen stamps. Not serialised. */
  today: () => number;
}

export const BAYES_DEFAULTS: Readonly<BayesOptions> = Object.freeze({
  robinsonX: 0.5,
  robinsonS: 1,
  minDev: 0.1,
  minLearned: 50,
  maxTokens: 150,
  forgetEvery: 1,
  detailTokens: 5,
  today: () => dayNumber(),
});

export interface TokenVote {
  token: string;
  /** f(w), the token's spam probability. */
  p: number;
}

const MAGIC = 0x59414243; // "CBAY"
const VERSION = 1;
const NUMBERS = 12;
const HEADER_BYTES = 8 + NUMBERS * 8;
/** Renormalise the stored counts once the forgetting scale has shrunk this far. */
const MIN_SCALE = 1e-6;
/** f is clamped away from 0 and 1 so ln never sees 0 (possible only with robinsonS = 0). */
const F_EPS = 1e-12;

export class BayesFilter implements Component {
  readonly name = 'bayes';
  readonly options: Readonly<BayesOptions>;
  readonly table: TokenTable;
  private spamMsgs = 0;
  private hamMsgs = 0;
  private scale = 1;
  private sinceDecay = 0;
  // Scratch space reused across score() calls (single-threaded): f values, |f−.5| and token index.
  private fBuf = new Float64Array(512);
  private devBuf = new Float64Array(512);
  private idxBuf = new Int32Array(512);

  constructor(options: Partial<BayesOptions> = {}, table: TokenTable = new TokenTable()) {
    this.options = Object.freeze({ ...BAYES_DEFAULTS, ...options });
    const f = this.options.forgetting;
    if (f !== undefined && !(f > 0 && f <= 1)) throw new RangeError('bayes: forgetting must be in (0, 1]');
    this.table = table;
  }

  /** Learned spam messages (after forgetting). */
  get nspam(): number {
    return this.spamMsgs * this.scale;
  }

  get nham(): number {
    return this.hamMsgs * this.scale;
  }

  /** Robinson's f(w) for one token; `x` for a token never seen. */
  tokenProbability(hi: number, lo: number): number {
    const slot = this.table.find(hi, lo);
    if (slot < 0) return this.options.robinsonX;
    return this.f(this.table.spamAt(slot) * this.scale, this.table.hamAt(slot) * this.scale);
  }

  private f(spam: number, ham: number): number {
    const { robinsonS, robinsonX } = this.options;
    return robinsonF(spam, ham, this.spamMsgs > 0 ? 1 / this.nspam : 0, this.hamMsgs > 0 ? 1 / this.nham : 0, robinsonS, robinsonX);
  }

  score(features: MessageFeatures): ComponentScore {
    const { minLearned, minDev, maxTokens } = this.options;
    const nspam = this.nspam;
    const nham = this.nham;
    if (nspam < minLearned || nham < minLearned) {
      return { name: this.name, probability: 0.5, voted: false, details: { reason: 'learning', nspam, nham } };
    }
    const tokens = features.tokens;
    const n = tokens.length >>> 1;
    if (this.fBuf.length < n) {
      this.fBuf = new Float64Array(n);
      this.devBuf = new Float64Array(n);
      this.idxBuf = new Int32Array(n);
    }
    const { fBuf, devBuf, idxBuf, table, scale } = this;
    const { robinsonS: rs, robinsonX: rx } = this.options;
    const invSpam = nspam > 0 ? 1 / nspam : 0;
    const invHam = nham > 0 ? 1 / nham : 0;
    let k = 0;
    for (let t = 0; t < n; t++) {
      const slot = table.find(tokens[2 * t]!, tokens[2 * t + 1]!);
      const f = slot < 0 ? rx : robinsonF(table.spamAt(slot) * scale, table.hamAt(slot) * scale, invSpam, invHam, rs, rx);
      const dev = Math.abs(f - 0.5);
      if (dev < minDev) continue;
      fBuf[k] = f;
      devBuf[k] = dev;
      idxBuf[k] = t;
      k++;
    }
    if (maxTokens > 0 && k > maxTokens) k = this.keepMostExtreme(k, maxTokens);
    if (k === 0) {
      return { name: this.name, probability: 0.5, voted: false, details: { reason: 'no significant tokens', tokensUsed: 0 } };
    }
    // H → 1 when the f's are collectively near 1 (Σ ln f ≈ 0), S → 1 when they are near 0.
    let sumLnF = 0;
    let sumLn1mF = 0;
    for (let i = 0; i < k; i++) {
      const f = Math.min(1 - F_EPS, Math.max(F_EPS, fBuf[i]!));
      sumLnF += Math.log(f);
      sumLn1mF += Math.log(1 - f);
    }
    const h = Math.exp(logChi2Q(-2 * sumLnF, 2 * k));
    const s = Math.exp(logChi2Q(-2 * sumLn1mF, 2 * k));
    const probability = (1 + h - s) / 2;
    return {
      name: this.name,
      probability,
      voted: true,
      details: { tokensUsed: k, h, s, topSpam: votes(features, this.top(k, true)), topHam: votes(features, this.top(k, false)) },
    };
  }

  /** Keeps the `max` entries with the largest deviation (ties in token order); returns the count. */
  private keepMostExtreme(k: number, max: number): number {
    const { fBuf, devBuf, idxBuf } = this;
    const sorted = devBuf.slice(0, k).sort();
    const threshold = sorted[k - max]!;
    let above = 0;
    for (let i = 0; i < k; i++) if (devBuf[i]! > threshold) above++;
    let ties = max - above;
    let out = 0;
    for (let i = 0; i < k; i++) {
      const d = devBuf[i]!;
      if (d > threshold || (d === threshold && ties-- > 0)) {
        fBuf[out] = fBuf[i]!;
        devBuf[out] = d;
        idxBuf[out] = idxBuf[i]!;
        out++;
      }
    }
    return out;
  }

  /**
   * The most spammy (or hammy) of the k used tokens: one pass with insertion into a short list.
   * Returns flattened [token index, f, …] pairs, most extreme first (earlier tokens win ties).
   */
  private top(k: number, spammy: boolean): number[] {
    const want = this.options.detailTokens;
    const { fBuf, idxBuf } = this;
    const best: number[] = []; // indices into fBuf
    for (let i = 0; i < k && want > 0; i++) {
      const f = fBuf[i]!;
      if (spammy ? f <= 0.5 : f >= 0.5) continue;
      let pos = best.length;
      while (pos > 0 && (spammy ? f > fBuf[best[pos - 1]!]! : f < fBuf[best[pos - 1]!]!)) pos--;
      if (pos >= want) continue;
      best.splice(pos, 0, i);
      if (best.length > want) best.pop();
    }
    const picks: number[] = [];
    for (const i of best) picks.push(idxBuf[i]!, fBuf[i]!);
    return picks;
  }

  learn(features: MessageFeatures, cls: MailClass, weight: 1 | -1 = 1): void {
    const { forgetting, forgetEvery } = this.options;
    if (forgetting !== undefined && forgetting < 1 && weight > 0 && ++this.sinceDecay >= forgetEvery) {
      // Decay before adding, so the message being learned counts fully.
      this.sinceDecay = 0;
      this.scale *= forgetting;
      if (this.scale < MIN_SCALE) this.renormalise();
    }
    // With forgetting, an unlearn removes one full current count (clamped at 0): a little more
    // than what is left of the original learn, which has decayed since.
    const inc = weight / this.scale;
    const spam = cls === 'spam';
    // Unlearning leaves lastSeen alone: it is a recency hint for expiry, not part of the counts.
    const day = weight > 0 ? this.options.today() : -1;
    const tokens = features.tokens;
    for (let i = 0; i + 1 < tokens.length; i += 2) {
      this.table.add(tokens[i]!, tokens[i + 1]!, spam ? inc : 0, spam ? 0 : inc, day);
    }
    if (spam) this.spamMsgs = Math.max(0, this.spamMsgs + inc);
    else this.hamMsgs = Math.max(0, this.hamMsgs + inc);
  }

  private renormalise(): void {
    this.table.scaleAll(this.scale);
    this.spamMsgs *= this.scale;
    this.hamMsgs *= this.scale;
    this.scale = 1;
  }

  /** Expiry of stale, rare tokens (see TokenTable.prune; counts compared after forgetting). */
  prune(notSeenSinceDay: number, minCount = Infinity): number {
    return this.table.prune(notSeenSinceDay, minCount / this.scale);
  }

  /**
   * Header (magic "CBAY", version u16, flags u16, then 12 float64: the numeric options, message
   * counts, scale, learns since the last decay), followed by the token table's own format.
   */
  serialize(): Buffer {
    const o = this.options;
    const table = this.table.serialize();
    const buf = Buffer.alloc(HEADER_BYTES + table.length);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    dv.setUint32(0, MAGIC, true);
    dv.setUint16(4, VERSION, true);
    const nums = [o.robinsonX, o.robinsonS, o.minDev, o.minLearned, o.maxTokens, o.forgetting ?? 0, o.forgetEvery, o.detailTokens, this.spamMsgs, this.hamMsgs, this.scale, this.sinceDecay];
    nums.forEach((v, i) => dv.setFloat64(8 + 8 * i, v, true));
    table.copy(buf, HEADER_BYTES);
    return buf;
  }

  /** Restores a filter; `overrides` replace stored options (e.g. a new minDev or the clock). */
  static deserialize(buf: Uint8Array, overrides: Partial<BayesOptions> = {}): BayesFilter {
    if (buf.byteLength < HEADER_BYTES) throw new Error('bayes: truncated header');
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    if (dv.getUint32(0, true) !== MAGIC) throw new Error('bayes: bad magic');
    const version = dv.getUint16(4, true);
    if (version !== VERSION) throw new Error(`bayes: unsupported version ${version}`);
    const v = Array.from({ length: NUMBERS }, (_, i) => dv.getFloat64(8 + 8 * i, true));
    const [robinsonX, robinsonS, minDev, minLearned, maxTokens, forgetting, forgetEvery, detailTokens, spamMsgs, hamMsgs, scale, sinceDecay] = v as [
      number, number, number, number, number, number, number, number, number, number, number, number,
    ];
    const table = TokenTable.deserialize(buf.subarray(HEADER_BYTES));
    const stored: Partial<BayesOptions> = { robinsonX, robinsonS, minDev, minLearned, maxTokens, forgetEvery, detailTokens };
    if (forgetting > 0) stored.forgetting = forgetting;
    const filter = new BayesFilter({ ...stored, ...overrides }, table);
    filter.spamMsgs = spamMsgs;
    filter.hamMsgs = hamMsgs;
    filter.scale = scale;
    filter.sinceDecay = sinceDecay;
    return filter;
  }
}

/** Robinson's f(w) from a token's (effective) counts and 1/nspam, 1/nham (0 when no messages). */
function robinsonF(spam: number, ham: number, invSpam: number, invHam: number, s: number, x: number): number {
  const n = spam + ham;
  if (n <= 0) return x;
  const bad = spam * invSpam;
  const good = ham * invHam;
  const p = bad + good > 0 ? bad / (bad + good) : x;
  return (s * x + n * p) / (s + n);
}

function votes(features: MessageFeatures, picks: number[]): TokenVote[] {
  const out: TokenVote[] = [];
  for (let i = 0; i < picks.length; i += 2) out.push({ token: tokenLabel(features, picks[i]!), p: Math.round(picks[i + 1]! * 1e4) / 1e4 });
  return out;
}

/** The human-readable token when the features carry aligned debug tokens, else the hash in hex. */
function tokenLabel(features: MessageFeatures, t: number): string {
  const dbg = features.debugTokens;
  if (dbg && dbg.length * 2 === features.tokens.length) return dbg[t]!;
  return hex8(features.tokens[2 * t]!) + hex8(features.tokens[2 * t + 1]!);
}

/** Byte → two hex digits; Number#toString(16) of a uint32 takes V8's slow radix path (~1 µs). */
const HEX = Array.from({ length: 256 }, (_, i) => (i + 256).toString(16).slice(1));

function hex8(v: number): string {
  return HEX[v >>> 24]! + HEX[(v >>> 16) & 255]! + HEX[(v >>> 8) & 255]! + HEX[v & 255]!;
}
