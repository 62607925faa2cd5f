/**
 * What receptors read besides words: a fixed set of named, derived numbers computed once per
 * message (fact receptors compare them with thresholds), the word scanner, and URL host parsing.
 * Facts are computed from MessageFeatures only, so the membranes need nothing the feature
 * extractor does not already provide; `numeric.<key>` facts read features.numeric directly.
 */
import type { MessageFeatures } from '../types.ts';

export const FACTS = [
  'subjectCapsRatio',
  'subjectExclamations',
  'subjectLength',
  'noSubject',
  'textLength',
  'textCapsRatio',
  'textExclamations',
  'urlCount',
  'urlDomainCount',
  'ipUrlCount',
  'htmlTags',
  'htmlHiddenChars',
  'htmlTextChars',
  'hiddenRatio',
  'attachmentCount',
  'replyToMismatch',
  'noFromDomain',
] as const;
export type FactName = (typeof FACTS)[number];
export const FACT_INDEX: ReadonlyMap<string, number> = new Map(FACTS.map((name, i) => [name, i]));

/**
 * Word characters: letters, digits, and code points from U+00C0 up except punctuation blocks.
 * Apostrophes count only between word characters ("don't", not "'quoted'").
 */
export function isWordCode(c: number): boolean {
  if (c < 128) return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57);
  if (c < 0xc0 || c === 0xd7 || c === 0xf7) return false;
  if (c >= 0x2000 && c <= 0x2bff) return false; // general punctuation, symbols, arrows, dingbats
  if (c >= 0x3000 && c <= 0x303f) return false; // CJK punctuation
  if (c >= 0xd800 && c <= 0xdfff) return false; // surrogates: emoji and friends are not words
  return c !== 0xfeff;
}

/** The lower-cased words of `s` (the reference tokenizer; WordTable.scan is the fast equivalent). */
export function scanWords(s: string, out: string[], limit = 4096): void {
  const n = s.length;
  let i = 0;
  while (i < n && out.length < limit) {
    while (i < n && !isWordCode(s.charCodeAt(i))) i++;
    const start = i;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (isWordCode(c) || (c === 39 && i > start && i + 1 < n && isWordCode(s.charCodeAt(i + 1)))) i++;
      else break;
    }
    if (i > start) out.push(s.slice(start, i).toLowerCase());
  }
}

const lowerAscii = (c: number) => (c >= 65 && c <= 90 ? c | 32 : c);

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 16777619;

/** Character counts gathered while scanning, for the caps and exclamation facts. */
export interface TextStats {
  upper: number;
  letters: number;
  exclamations: number;
}

/**
 * A fixed vocabulary with an allocation-free scanner: words are hashed (FNV-1a over lower-cased
 * char codes) while the text is read, and only a hash hit is compared character by character, so
 * the common case (a word in no list) costs a probe and no string. Words with non-ASCII letters
 * take the slow path (slice, toLowerCase, Map) since their case mapping is not a bit flip.
 */
export class WordTable {
  private readonly keys: string[] = [];
  private readonly keyHash: number[] = [];
  private readonly byString = new Map<string, number>();
  private slots = new Int32Array(0);
  /** keyHash as int32s, built with the table (a number[] of int32 hashes would hold heap doubles). */
  private hashes = new Int32Array(0);
  private mask = 0;

  get size(): number {
    return this.keys.length;
  }

  /** Id of a lower-case word, adding it if new. Call before scanning; rebuilds the table lazily. */
  add(word: string): number {
    let id = this.byString.get(word);
    if (id !== undefined) return id;
    id = this.keys.length;
    this.keys.push(word);
    let h = FNV_OFFSET;
    for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), FNV_PRIME);
    this.keyHash.push(h);
    this.byString.set(word, id);
    this.slots = new Int32Array(0);
    return id;
  }

  private build(): void {
    let size = 16;
    while (size < this.keys.length * 4) size *= 2;
    this.slots = new Int32Array(size);
    this.hashes = Int32Array.from(this.keyHash);
    this.mask = size - 1;
    this.keyHash.forEach((h, id) => {
      let slot = h & this.mask;
      while (this.slots[slot] !== 0) slot = (slot + 1) & this.mask;
      this.slots[slot] = id + 1;
    });
  }

  /** Id of the ASCII word s[start, end) whose lower-cased FNV hash is h, or -1. */
  private find(s: string, start: number, end: number, h: number): number {
    const slots = this.slots;
    const hashes = this.hashes;
    const mask = this.mask;
    for (let slot = h & mask; ; slot = (slot + 1) & mask) {
      const id = slots[slot]! - 1;
      if (id < 0) return -1;
      if (hashes[id] !== h) continue;
      const key = this.keys[id]!;
      if (key.length !== end - start) continue;
      let k = 0;
      while (k < key.length && key.charCodeAt(k) === lowerAscii(s.charCodeAt(start + k))) k++;
      if (k === key.length) return id;
    }
  }

  /**
   * Writes the vocabulary id (or -1) of each word of `s` to `out` and returns the word count
   * (at most out.length). `stats`, when given, gains the text's letter/capital/"!" counts.
   */
  scan(s: string, out: Int32Array, stats?: TextStats): number {
    if (this.slots.length === 0) this.build();
    const n = s.length;
    let count = 0;
    let upper = 0;
    let letters = 0;
    let excl = 0;
    let i = 0;
    while (i < n) {
      let c = s.charCodeAt(i);
      if (!isWordCode(c)) {
        if (c === 33) excl++;
        i++;
        continue;
      }
      const start = i;
      let h = FNV_OFFSET;
      let ascii = true;
      // One classification per character (this loop is most of the membranes' time).
      for (;;) {
        if (c >= 97 && c <= 122) letters++;
        else if (c >= 65 && c <= 90) {
          upper++;
          letters++;
          c |= 32;
        } else if ((c >= 48 && c <= 57) || (c === 39 && i > start)) {
          // digit, or an apostrophe already known to sit between word characters
        } else if (c >= 128 && isWordCode(c)) ascii = false;
        else break;
        h = Math.imul(h ^ c, FNV_PRIME);
        if (++i >= n) break;
        c = s.charCodeAt(i);
        if (c === 39 && !(i + 1 < n && isWordCode(s.charCodeAt(i + 1)))) break;
      }
      if (count < out.length) {
        out[count++] = ascii ? this.find(s, start, i, h) : (this.byString.get(s.slice(start, i).toLowerCase()) ?? -1);
      }
    }
    if (stats) {
      stats.upper += upper;
      stats.letters += letters;
      stats.exclamations += excl;
    }
    return count;
  }
}

/** Lower-case host of a URL ("" when there is none); strips userinfo, port and IPv6 brackets. */
export function urlHost(url: string): string {
  const scheme = url.indexOf('://');
  let start = scheme < 0 ? 0 : scheme + 3;
  let end = url.length;
  for (let j = start; j < url.length; j++) {
    const c = url.charCodeAt(j);
    if (c === 47 || c === 63 || c === 35 || c === 92) {
      end = j; // / ? # and the backslash browsers treat as a slash
      break;
    }
  }
  const at = url.lastIndexOf('@', end - 1);
  if (at >= start) start = at + 1;
  let host = url.slice(start, end);
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    host = close < 0 ? host.slice(1) : host.slice(1, close);
  } else {
    const colon = host.lastIndexOf(':');
    if (colon >= 0) host = host.slice(0, colon);
  }
  return host.toLowerCase();
}

const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;
/** Dotted quads, IPv6 literals, and the all-decimal / hex forms (http://3232235777/) phishers use. */
export function isIpHost(host: string): boolean {
  if (host === '') return false;
  return IPV4.test(host) || host.includes(':') || /^(?:0x[0-9a-f]+|\d{6,})$/.test(host);
}

/** "mail.example.co.uk" vs "example.co.uk": compare the last two labels only (no public-suffix list). */
function baseDomain(d: string): string {
  const parts = d.toLowerCase().replace(/\.$/, '').split('.');
  return parts.slice(-2).join('.');
}

function capsRatio(s: string, minLetters: number): number {
  let upper = 0;
  let letters = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) {
      upper++;
      letters++;
    } else if (c >= 97 && c <= 122) letters++;
  }
  return letters >= minLetters ? upper / letters : 0;
}

function countChar(s: string, code: number): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) === code) n++;
  return n;
}

export interface MessageFacts {
  /** Indexed like FACTS. */
  values: Float64Array;
  /** Hosts of URLs that are IP literals (for IP reputation). */
  ipHosts: string[];
}

/** `text`: the body's scan statistics (WordTable.scan), so the body is read once. */
export function computeFacts(f: MessageFeatures, text: TextStats): MessageFacts {
  const v = new Float64Array(FACTS.length);
  const subject = f.subject ?? '';
  const urls = f.urls ?? [];
  const ipHosts: string[] = [];
  for (const u of urls) {
    const h = urlHost(u);
    if (isIpHost(h) && !ipHosts.includes(h)) ipHosts.push(h);
  }
  for (const d of f.urlDomains ?? []) {
    const h = d.toLowerCase();
    if (isIpHost(h) && !ipHosts.includes(h)) ipHosts.push(h);
  }
  const html = f.html ?? { tags: 0, hiddenTextChars: 0, textChars: 0 };
  const hidden = Math.max(0, html.hiddenTextChars || 0);
  const visible = Math.max(0, html.textChars || 0);
  v[0] = capsRatio(subject, 8); // a short "RE: OK" is not shouting
  v[1] = countChar(subject, 33);
  v[2] = subject.length;
  v[3] = subject.trim() === '' ? 1 : 0;
  v[4] = (f.text ?? '').length;
  v[5] = text.letters >= 40 ? text.upper / text.letters : 0;
  v[6] = text.exclamations;
  v[7] = urls.length;
  v[8] = new Set(f.urlDomains ?? []).size;
  v[9] = ipHosts.length;
  v[10] = html.tags || 0;
  v[11] = hidden;
  v[12] = visible;
  v[13] = hidden + visible > 0 ? hidden / (hidden + visible) : 0;
  v[14] = (f.attachmentTypes ?? []).length;
  v[15] = f.fromDomain && f.replyToDomain && baseDomain(f.fromDomain) !== baseDomain(f.replyToDomain) ? 1 : 0;
  v[16] = f.fromDomain ? 0 : 1;
  return { values: v, ipHosts };
}
