/**
 * Word scanning for body text and header values. Words are runs of letters (Unicode \p{L} and
 * combining marks) and digits (\p{Nd}), with an apostrophe kept between letters ("don't"); digit
 * runs may hold ',' or '.' between digits ("1,000.50"). Scripts written without spaces (Han,
 * kana, Thai) give overlapping two-character tokens. Everything is hashed lower-cased through the
 * LOWER table as it is scanned, so no per-word strings are built unless debugging.
 *
 * Body tokens (bogofilter / SpamAssassin Bayes style):
 *   word            2–40 characters, lower case ("viagra", "don't", "2002")
 *   "a b", "a b c"  bigrams / trigrams of consecutive words when enabled; the chain restarts at
 *                   a sentence end (. ? ! followed by a space) or a blank line
 *   num:9,999.99    numbers longer than 4 digits or with separators, digits as 9
 *   money:$3        a currency sign before a number, with the number's integer digit count
 *   pct:50, pct:big a number followed by '%'
 *   !!, !!!         runs of exclamation marks (3 or more → "!!!")
 *   sk:abcdefg      words over 40 characters (first 7), as SpamAssassin does
 */
import { begin, finish, finishLanes, lowerSlice, LOWER, MUL_A, MUL_B, resume, SEED_A, SEED_B, update, updateLower, type Prefix } from './hash.ts';
import type { TokenSink } from './sink.ts';

/** 0 other, 1 letter/mark, 2 decimal digit, 3 character of a script written without spaces. */
export const CLASS = new Uint8Array(65536);
{
  const letter = /[\p{L}\p{M}]/u;
  const digit = /\p{Nd}/u;
  const unspaced = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}]/u;
  for (let i = 0; i < 65536; i++) {
    if (i < 128) {
      CLASS[i] = (i >= 97 && i <= 122) || (i >= 65 && i <= 90) ? 1 : i >= 48 && i <= 57 ? 2 : 0;
      continue;
    }
    if (i >= 0xd800 && i < 0xe000) continue; // surrogates: emoji and rare scripts are not words
    const ch = String.fromCharCode(i);
    CLASS[i] = unspaced.test(ch) ? 3 : letter.test(ch) ? 1 : digit.test(ch) ? 2 : 0;
  }
}

export interface BodyCounts {
  /** Characters scanned. */
  chars: number;
  letters: number;
  upper: number;
  digits: number;
  nonAscii: number;
  exclaims: number;
  words: number;
  money: number;
}

export function newCounts(): BodyCounts {
  return { chars: 0, letters: 0, upper: 0, digits: 0, nonAscii: 0, exclaims: 0, words: 0, money: 0 };
}

function isBlankAt(s: string, i: number, end: number): boolean {
  if (i >= end) return true;
  const c = s.charCodeAt(i);
  return c === 32 || c === 10 || c === 13 || c === 9 || c === 0xa0;
}

/** Shape of a number: digits → 9, separators kept, at most 12 characters. */
function numberShape(s: string, from: number, to: number): string {
  let out = '';
  for (let i = from; i < to && out.length < 12; i++) out += CLASS[s.charCodeAt(i)] === 2 ? '9' : s[i];
  return out;
}

/**
 * Body scanner: one instance, reused; fields rather than closures so V8 inlines the hot calls.
 * Hashing happens inside the scanning loop: each character feeds the unigram lanes and, when
 * n-grams are on, the bigram and trigram lanes (which start from the previous words' lanes plus
 * ' '), so every hash equals hashToken() of the token's text without a second pass or a string.
 */
export class BodyScanner {
  sink!: TokenSink;
  counts!: BodyCounts;
  onegrams = true;
  twograms = false;
  threegrams = false;
  maxWords = 0;
  // n-gram chain: lanes of "<prev> " and of "<prev2> <prev> "
  private q1a = 0;
  private q1b = 0;
  private q2a = 0;
  private q2b = 0;
  private have1 = false;
  private have2 = false;
  private d1 = '';
  private d2 = '';

  resetChain(): void {
    this.have1 = false;
    this.have2 = false;
  }

  /** Emit a word whose unigram / bigram / trigram lanes are given; advance the chain. */
  private emit(a: number, b: number, a2: number, b2: number, a3: number, b3: number, text: string): void {
    const sink = this.sink;
    finishLanes(a, b);
    sink.addSeq();
    if (this.onegrams) sink.add(text);
    const dbg = sink.debug !== null;
    if (this.have1) {
      if (this.twograms) {
        finishLanes(a2, b2);
        sink.add(dbg ? this.d1 + ' ' + text : undefined);
      }
      if (this.have2 && this.threegrams) {
        finishLanes(a3, b3);
        sink.add(dbg ? this.d2 + ' ' + text : undefined);
      }
      this.q2a = Math.imul(a2 ^ 32, MUL_A);
      this.q2b = Math.imul(b2 ^ 32, MUL_B);
      this.have2 = true;
    }
    this.q1a = Math.imul(a ^ 32, MUL_A);
    this.q1b = Math.imul(b ^ 32, MUL_B);
    this.have1 = true;
    if (dbg) {
      this.d2 = this.d1 + ' ' + text;
      this.d1 = text;
    }
    this.counts.words++;
  }

  /** Emit s[from, to) lower-cased, or `str` as written, as a word (hashing it here). */
  private word(s: string, from: number, to: number, str: string | null): void {
    const src = str ?? s;
    const f = str === null ? from : 0;
    const t = str === null ? to : str.length;
    let a = SEED_A;
    let b = SEED_B;
    let a2 = this.q1a;
    let b2 = this.q1b;
    let a3 = this.q2a;
    let b3 = this.q2b;
    for (let i = f; i < t; i++) {
      const c = LOWER[src.charCodeAt(i)]!;
      a = Math.imul(a ^ c, MUL_A);
      b = Math.imul(b ^ c, MUL_B);
      a2 = Math.imul(a2 ^ c, MUL_A);
      b2 = Math.imul(b2 ^ c, MUL_B);
      a3 = Math.imul(a3 ^ c, MUL_A);
      b3 = Math.imul(b3 ^ c, MUL_B);
    }
    this.emit(a, b, a2, b2, a3, b3, this.sink.debug !== null ? (str ?? lowerSlice(s, from, to)) : '');
  }

  /** A token for the set only (no sequence, no n-grams). */
  private special(str: string): void {
    begin();
    update(str, 0, str.length);
    finish();
    this.sink.add(str);
  }

  /** Scan s[0, min(len, budget)); returns characters consumed. */
  scan(s: string, budget: number): number {
    const end = Math.min(s.length, Math.max(0, budget));
    const counts = this.counts;
    // Bigram lanes feed the trigram chain too; trigram lanes only when trigrams are wanted.
    const bigrams = this.twograms || this.threegrams;
    const trigrams = this.threegrams;
    let i = 0;
    this.resetChain();
    while (i < end && counts.words < this.maxWords) {
      let c = s.charCodeAt(i);
      let cl = CLASS[c]!;
      if (cl === 0) {
        if (c === 33) {
          let j = i + 1;
          while (j < end && s.charCodeAt(j) === 33) j++;
          counts.exclaims += j - i;
          if (j - i >= 2) this.special(j - i >= 3 ? '!!!' : '!!');
          this.sink.breakStep();
          this.resetChain();
          i = j;
          continue;
        }
        if ((c === 46 || c === 63) && isBlankAt(s, i + 1, end)) {
          this.sink.breakStep();
          this.resetChain();
        } else if (c === 10) {
          let j = i + 1;
          while (j < end && (s.charCodeAt(j) === 32 || s.charCodeAt(j) === 13 || s.charCodeAt(j) === 9)) j++;
          if (j < end && s.charCodeAt(j) === 10) {
            this.sink.breakStep();
            this.resetChain();
          }
        }
        i++;
        continue;
      }
      const start = i;
      if (cl === 3) {
        let j = i + 1;
        while (j < end && CLASS[s.charCodeAt(j)] === 3) j++;
        counts.letters += j - i;
        counts.nonAscii += j - i;
        if (j - i === 1) this.word(s, i, j, null);
        for (let k = i; k + 1 < j && counts.words < this.maxWords; k++) this.word(s, k, k + 2, null);
        i = j;
        continue;
      }
      let allDigit = true;
      let seps = false;
      let upper = 0;
      let letters = 0;
      let nonAscii = 0;
      let a = SEED_A;
      let b = SEED_B;
      let a2 = this.q1a;
      let b2 = this.q1b;
      let a3 = this.q2a;
      let b3 = this.q2b;
      while (i < end) {
        c = s.charCodeAt(i);
        cl = CLASS[c]!;
        if (cl === 1) {
          allDigit = false;
          letters++;
          if (c >= 128) nonAscii++;
        } else if (cl === 2) {
          // digit
        } else if ((c === 39 || c === 0x2019) && !allDigit && i + 1 < end && CLASS[s.charCodeAt(i + 1)] === 1) {
          // apostrophe inside a word
        } else if ((c === 44 || c === 46) && allDigit && i + 1 < end && CLASS[s.charCodeAt(i + 1)] === 2) {
          seps = true;
        } else break;
        const lc = LOWER[c]!;
        if (lc !== c) upper++;
        a = Math.imul(a ^ lc, MUL_A);
        b = Math.imul(b ^ lc, MUL_B);
        if (bigrams) {
          a2 = Math.imul(a2 ^ lc, MUL_A);
          b2 = Math.imul(b2 ^ lc, MUL_B);
          if (trigrams) {
            a3 = Math.imul(a3 ^ lc, MUL_A);
            b3 = Math.imul(b3 ^ lc, MUL_B);
          }
        }
        i++;
      }
      const len = i - start;
      counts.letters += letters;
      counts.upper += upper;
      counts.digits += len - letters;
      counts.nonAscii += nonAscii;
      if (allDigit) {
        const prev = start > 0 ? s.charCodeAt(start - 1) : 0;
        if (prev === 36 || prev === 0x20ac || prev === 0xa3) {
          counts.money++;
          let intDigits = 0;
          for (let k = start; k < i && s.charCodeAt(k) !== 46; k++) if (CLASS[s.charCodeAt(k)] === 2) intDigits++;
          this.special('money:' + String.fromCharCode(prev) + Math.min(intDigits, 9));
        }
        if (i < end && s.charCodeAt(i) === 37) this.special(len <= 3 && !seps ? 'pct:' + s.slice(start, i) : 'pct:big');
        if (!seps && len <= 4) {
          if (len >= 2) this.emit(a, b, a2, b2, a3, b3, this.sink.debug !== null ? s.slice(start, i) : '');
        } else this.word(s, start, i, 'num:' + numberShape(s, start, i));
      } else if (len > 40) {
        this.special('sk:' + lowerSlice(s, start, start + 7));
      } else if (len >= 2) {
        this.emit(a, b, a2, b2, a3, b3, this.sink.debug !== null ? lowerSlice(s, start, i) : '');
      }
    }
    counts.chars += i;
    return i;
  }
}

/**
 * Prefixed words of a header value ("subject:free"): at most `max` of them, no n-grams. Returns the
 * number of words emitted.
 */
export function headerWords(sink: TokenSink, p: Prefix, s: string, max: number): number {
  const end = Math.min(s.length, 4096);
  let n = 0;
  let i = 0;
  while (i < end && n < max) {
    const cl = CLASS[s.charCodeAt(i)]!;
    if (cl === 0) {
      i++;
      continue;
    }
    const start = i;
    if (cl === 3) {
      while (i < end && CLASS[s.charCodeAt(i)] === 3) i++;
      for (let k = start; (k + 1 < i || k === start) && n < max; k++, n++) emitPrefixed(sink, p, s, k, Math.min(k + 2, i));
      continue;
    }
    while (i < end) {
      const c = s.charCodeAt(i);
      const k = CLASS[c]!;
      if (k === 1 || k === 2 || ((c === 39 || c === 0x2019) && i + 1 < end && CLASS[s.charCodeAt(i + 1)] === 1)) i++;
      else break;
    }
    const len = i - start;
    if (len >= 2 && len <= 40) {
      emitPrefixed(sink, p, s, start, i);
      n++;
    }
  }
  return n;
}

export function emitPrefixed(sink: TokenSink, p: Prefix, s: string, from: number, to: number): void {
  resume(p);
  updateLower(s, from, to);
  finish();
  sink.add(sink.debug !== null ? p.text + lowerSlice(s, from, to) : undefined);
}
