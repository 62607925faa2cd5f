/**
 * extractAffect: text → emotions, PAD, cognitive dimensions, as named fields and as a vector.
 *
 * One pass over the text: a character scanner finds words (one Map lookup each), sentence ends,
 * paragraph breaks, "!" and "?". Words are counted into segments (the subject, then paragraphs or
 * runs of `segmentWords` words), each segment's emotion intensities are smoothed along the
 * message (smoothing.ts) and the smoothed peaks become the emotion features.
 *
 * No licensed arousal/dominance lexicon is available, so arousal and dominance come from
 * documented text proxies (README.md has the formulas and the persona effects):
 *   arousal   ← all-caps words, "!" per sentence, urgency words, hot emotions (anger, fear, surprise)
 *   dominance ← imperative verbs opening a sentence, second-person pronouns, obligation modals
 */
import {
  EMOTIONS,
  FLAG_HEDGE,
  FLAG_IMPERATIVE,
  FLAG_MODAL,
  FLAG_NEGATOR,
  FLAG_POLITE,
  FLAG_URGENCY,
  FLAG_YOU,
  FNV_OFFSET,
  FNV_PRIME,
  LEX_TABLE,
  type Emotion,
} from './lexicon.ts';
import { smoothPath } from './smoothing.ts';

/** Persona traits of the mailbox (seed: Persona.Valence −1…1, Arousal 0…1, Dominance 0…1). */
export interface Persona {
  /** The valence the mailbox's normal mail has; the valence feature is measured from 0.5 × this. */
  valence: number;
  /** Sensitivity to high-arousal text: arousal = 1 − exp(−(0.5 + arousal) · raw). */
  arousal: number;
  /** Decisiveness of the affect model: its log-odds are multiplied by (0.5 + dominance). */
  dominance: number;
}

/** The seed's example values. */
export const DEFAULT_PERSONA: Readonly<Persona> = { valence: 0.2, arousal: 0.6, dominance: 0.5 };

export function normalizePersona(p: Partial<Persona> = {}): Persona {
  const pick = (x: number | undefined, d: number, lo: number) => (typeof x === 'number' && Number.isFinite(x) ? Math.min(1, Math.max(lo, x)) : d);
  return { valence: pick(p.valence, DEFAULT_PERSONA.valence, -1), arousal: pick(p.arousal, DEFAULT_PERSONA.arousal, 0), dominance: pick(p.dominance, DEFAULT_PERSONA.dominance, 0) };
}

export interface AffectOptions {
  persona?: Partial<Persona>;
  /** Read as its own first segment. */
  subject?: string;
  /** A segment ends after this many words (default 60)… */
  segmentWords?: number;
  /** …or at a paragraph break once it has this many (default 8, so a greeting joins its paragraph). */
  minSegmentWords?: number;
  maxSegments?: number;
  smoothingSteps?: number;
  smoothingRate?: number;
  /** Characters of text read at most (default 20,000). */
  maxChars?: number;
  /** Also return the per-segment emotion rows (raw and smoothed). */
  keepSegments?: boolean;
}

export const AFFECT_FEATURES = [
  ...EMOTIONS,
  'valence',
  'arousal',
  'dominance',
  'attention',
  'complexity',
  'uncertainty',
  'capsRatio',
  'exclamation',
  'urgency',
  'imperative',
  'secondPerson',
  'hedging',
  'questions',
  'volatility',
] as const;
export type AffectFeature = (typeof AFFECT_FEATURES)[number];

export interface AffectVector {
  /** Peak of the smoothed per-segment intensities, each in [0, 1]. */
  emotions: Record<Emotion, number>;
  /** −1…1: AFINN mean / 5, negation-aware, minus 0.5 × persona.valence. */
  valence: number;
  arousal: number;
  dominance: number;
  /** 1 − normalised entropy of the emotion profile: 1 = one emotion dominates, 0 = none or all alike. */
  attention: number;
  /** Lexical diversity and word length. */
  complexity: number;
  /** Hedge words, questions, surprise. */
  uncertainty: number;
  /** The proxies behind PAD and the cognitive dimensions, each in [0, 1] except meanWordLength. */
  proxies: { capsRatio: number; exclamation: number; urgency: number; imperative: number; secondPerson: number; modal: number; hedging: number; questions: number; lexicalDiversity: number; meanWordLength: number };
  /** Mean over emotions of the across-segment standard deviation, after smoothing. */
  volatility: number;
  segments: number;
  words: number;
  /** With keepSegments: segments × 7 rows, before and after smoothing. */
  segmentEmotions?: { raw: Float64Array; smoothed: Float64Array };
  /** AFFECT_FEATURES order, for the stacker and the affect model. */
  vector: Float64Array;
}

const K = EMOTIONS.length;
/** Intensity of a segment = 1 − exp(−RATE_GAIN · emotion words / words): one cue in ten words ≈ 0.63. */
const RATE_GAIN = 10;

const sat = (x: number) => 1 - Math.exp(-x);
const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/** Scanner state for one message. */
class Scan {
  readonly counts: Float64Array;
  readonly segWords: Int32Array;
  seg = 0;
  words = 0;
  letterWords = 0;
  capsWords = 0;
  excl = 0;
  questions = 0;
  sentenceEnds = 0;
  wordsSinceEnd = 0;
  sentenceStart = true;
  negate = false;
  imperatives = 0;
  you = 0;
  modal = 0;
  hedge = 0;
  urgency = 0;
  valenceSum = 0;
  valenceN = 0;
  totalLen = 0;
  /** Open-addressing set of word hashes (0 = empty), 512 slots for the 200-word window. */
  readonly typeSet = new Int32Array(512);
  types = 0;
  ttrWords = 0;

  constructor(
    readonly maxSegments: number,
    readonly segmentWords: number,
    readonly minSegmentWords: number,
  ) {
    this.counts = new Float64Array(maxSegments * K);
    this.segWords = new Int32Array(maxSegments);
  }

  nextSegment(): void {
    if (this.segWords[this.seg]! > 0 && this.seg < this.maxSegments - 1) this.seg++;
  }

  endSentence(): void {
    if (this.wordsSinceEnd > 0) this.sentenceEnds++;
    this.wordsSinceEnd = 0;
    this.sentenceStart = true;
    this.negate = false;
  }

  /** One word: its lexicon id (-1 if none), lower-cased hash, length and letter case counts. */
  word(id: number, hash: number, len: number, upper: number, lower: number): void {
    this.words++;
    this.wordsSinceEnd++;
    this.totalLen += len;
    const seg = this.seg;
    this.segWords[seg]!++;
    if (upper + lower >= 2) {
      this.letterWords++;
      if (lower === 0) this.capsWords++;
    }
    // Type-token ratio over the first 200 words: the plain ratio falls with length, this window
    // does not. Types are counted by hash (a 32-bit collision among 200 words is negligible).
    if (this.ttrWords < 200) {
      this.ttrWords++;
      if (addHash(this.typeSet, hash)) this.types++;
    }
    let start = false;
    if (id >= 0) {
      const lex = LEX_TABLE;
      if (lex.hasValence[id] === 1) {
        this.valenceSum += this.negate ? -lex.valence[id]! : lex.valence[id]!;
        this.valenceN++;
      }
      // "not afraid" is not fear: a negated word adds no emotion.
      const em = lex.emotions[id]!;
      if (em !== 0 && !this.negate) {
        for (let k = 0; k < K; k++) if (em & (1 << k)) this.counts[seg * K + k]!++;
      }
      const f = lex.flags[id]!;
      if (f !== 0) {
        if (f & FLAG_URGENCY) this.urgency++;
        if (f & FLAG_YOU) this.you++;
        if (f & FLAG_MODAL) this.modal++;
        if (f & FLAG_HEDGE) this.hedge++;
        if (f & FLAG_IMPERATIVE && this.sentenceStart) this.imperatives++;
        // "Please click…", "Kindly verify…": the command still opens the sentence.
        if (f & FLAG_POLITE) start = this.sentenceStart;
      }
      this.negate = (f & FLAG_NEGATOR) !== 0;
    } else this.negate = false;
    this.sentenceStart = start;
    if (this.segWords[seg]! >= this.segmentWords) this.nextSegment();
  }

  read(s: string): void {
    const n = s.length;
    let i = 0;
    while (i < n) {
      let c = s.charCodeAt(i);
      if (isWordCode(c)) {
        // Hash the lower-cased word while reading it; a string is made only for non-ASCII words.
        const start = i;
        let upper = 0;
        let lower = 0;
        let ascii = true;
        let h = FNV_OFFSET;
        for (;;) {
          if (c >= 65 && c <= 90) {
            upper++;
            c |= 32;
          } else if (c >= 97 && c <= 122) lower++;
          else if (c >= 128) ascii = false;
          h = Math.imul(h ^ c, FNV_PRIME);
          if (++i >= n) break;
          c = s.charCodeAt(i);
          if (isWordCode(c) || (c === 39 && i + 1 < n && isWordCode(s.charCodeAt(i + 1)))) continue;
          break;
        }
        const id = ascii ? LEX_TABLE.find(s, start, i, h) : LEX_TABLE.findString(s.slice(start, i));
        this.word(id, h, i - start, upper, lower);
        continue;
      }
      if (c === 33) {
        this.excl++;
        this.endSentence();
      } else if (c === 63) {
        this.questions++;
        this.endSentence();
      } else if (c === 46) {
        // A full stop ends a sentence unless a word character follows at once ("3.14", "e.g").
        if (i + 1 >= n || !isWordCode(s.charCodeAt(i + 1))) this.endSentence();
      } else if (c === 10) {
        let j = i + 1;
        while (j < n && (s.charCodeAt(j) === 32 || s.charCodeAt(j) === 9 || s.charCodeAt(j) === 13)) j++;
        if (j < n && s.charCodeAt(j) === 10) {
          // A blank line: a new paragraph, hence a new sentence and possibly a new segment.
          this.endSentence();
          if (this.segWords[this.seg]! >= this.minSegmentWords) this.nextSegment();
          i = j;
        }
      }
      i++;
    }
  }
}

/** Adds a hash to the set; true when it was new. Hash 0 is stored as 1 (0 marks an empty slot). */
function addHash(set: Int32Array, hash: number): boolean {
  const h = hash === 0 ? 1 : hash;
  const mask = set.length - 1;
  for (let slot = h & mask; ; slot = (slot + 1) & mask) {
    const v = set[slot]!;
    if (v === h) return false;
    if (v === 0) {
      set[slot] = h;
      return true;
    }
  }
}

/** Same word characters as the membranes' scanner: letters, digits, U+00C0+ minus punctuation blocks. */
function isWordCode(c: number): boolean {
  if (c < 128) return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57);
  if (c < 0xc0 || c === 0xd7 || c === 0xf7) return false;
  if (c >= 0x2000 && c <= 0x2bff) return false;
  if (c >= 0x3000 && c <= 0x303f) return false;
  if (c >= 0xd800 && c <= 0xdfff) return false;
  return c !== 0xfeff;
}

export function extractAffect(text: string, opts: AffectOptions = {}): AffectVector {
  const persona = normalizePersona(opts.persona);
  const maxSegments = Math.max(1, Math.floor(opts.maxSegments ?? 16));
  const scan = new Scan(maxSegments, Math.max(1, opts.segmentWords ?? 60), Math.max(1, opts.minSegmentWords ?? 8));
  const maxChars = opts.maxChars ?? 20_000;
  if (opts.subject) {
    scan.read(opts.subject.length > 1000 ? opts.subject.slice(0, 1000) : opts.subject);
    scan.endSentence();
    scan.nextSegment();
  }
  const body = typeof text === 'string' ? text : '';
  scan.read(body.length > maxChars ? body.slice(0, maxChars) : body);

  // ── per-segment emotion intensities, smoothed along the message ──
  const nSeg = scan.segWords[scan.seg]! > 0 || scan.seg === 0 ? scan.seg + 1 : scan.seg;
  const rows = new Float64Array(nSeg * K);
  for (let i = 0; i < nSeg; i++) {
    const words = scan.segWords[i]!;
    for (let k = 0; k < K; k++) rows[i * K + k] = words > 0 ? sat((RATE_GAIN * scan.counts[i * K + k]!) / words) : 0;
  }
  const raw = opts.keepSegments ? Float64Array.from(rows) : undefined;
  smoothPath(rows, nSeg, K, Math.max(0, Math.floor(opts.smoothingSteps ?? 3)), opts.smoothingRate ?? 0.25);
  const peaks = new Float64Array(K);
  let volatility = 0;
  for (let k = 0; k < K; k++) {
    let max = 0;
    let mean = 0;
    for (let i = 0; i < nSeg; i++) {
      const v = rows[i * K + k]!;
      if (v > max) max = v;
      mean += v;
    }
    mean /= nSeg;
    let variance = 0;
    for (let i = 0; i < nSeg; i++) variance += (rows[i * K + k]! - mean) ** 2;
    volatility += Math.sqrt(variance / nSeg);
    peaks[k] = max;
  }
  volatility /= K;

  // ── attention: how concentrated the emotion profile is ──
  let total = 0;
  for (let k = 0; k < K; k++) total += peaks[k]!;
  let entropy = 0;
  if (total > 0) for (let k = 0; k < K; k++) if (peaks[k]! > 0) entropy -= (peaks[k]! / total) * Math.log(peaks[k]! / total);
  const attention = total > 0 ? 1 - entropy / Math.log(K) : 0;

  // ── proxies ──
  const words = scan.words;
  const perWord = (x: number, gain: number) => (words > 0 ? sat((gain * x) / words) : 0);
  const sentences = Math.max(1, scan.sentenceEnds + (scan.wordsSinceEnd > 0 ? 1 : 0));
  const proxies = {
    capsRatio: scan.letterWords > 0 ? scan.capsWords / scan.letterWords : 0,
    exclamation: sat(scan.excl / sentences),
    urgency: perWord(scan.urgency, 10),
    imperative: Math.min(1, scan.imperatives / sentences),
    secondPerson: perWord(scan.you, 10),
    modal: perWord(scan.modal, 20),
    hedging: perWord(scan.hedge, 20),
    questions: sat(scan.questions / sentences),
    lexicalDiversity: scan.ttrWords > 0 ? scan.types / scan.ttrWords : 0,
    meanWordLength: words > 0 ? scan.totalLen / words : 0,
  };
  const emotions = Object.fromEntries(EMOTIONS.map((e, k) => [e, peaks[k]!])) as Record<Emotion, number>;
  const hot = (emotions.anger + emotions.fear + emotions.surprise) / 3;
  const rawArousal = 1.5 * proxies.capsRatio + proxies.exclamation + proxies.urgency + hot;
  const arousal = sat((0.5 + persona.arousal) * rawArousal);
  const dominance = sat(1.5 * proxies.imperative + proxies.secondPerson + 0.5 * proxies.modal);
  const uncertainty = sat(1.5 * proxies.hedging + proxies.questions + 0.5 * emotions.surprise);
  const complexity = 0.5 * proxies.lexicalDiversity + 0.5 * clamp((proxies.meanWordLength - 2) / 6, 0, 1);
  const rawValence = scan.valenceN > 0 ? scan.valenceSum / scan.valenceN / 5 : 0;
  const valence = clamp(rawValence - 0.5 * persona.valence, -1, 1);

  const vector = new Float64Array(AFFECT_FEATURES.length);
  vector.set(peaks, 0);
  let j = K;
  for (const x of [valence, arousal, dominance, attention, complexity, uncertainty, proxies.capsRatio, proxies.exclamation, proxies.urgency, proxies.imperative, proxies.secondPerson, proxies.hedging, proxies.questions, volatility]) vector[j++] = x;

  const out: AffectVector = { emotions, valence, arousal, dominance, attention, complexity, uncertainty, proxies, volatility, segments: nSeg, words, vector };
  if (raw) out.segmentEmotions = { raw, smoothed: rows };
  return out;
}
