/**
 * Synthetic mail for the search benchmark (bench/lmtp/search.ts): deterministic (seeded), so
 * reruns and other machines load the same corpus.
 *
 * Shape:
 * - Vocabulary: 30,000 pseudo-words (syllables), drawn Zipf (s = 1.07, as measured for English
 *   text), so the top words are in nearly every message and the tail in a handful.
 * - Accounts: 1,000, sized Zipf with the exponent solved so the biggest holds 50,000 messages; the
 *   smallest then holds a few hundred. Arrival is interleaved across accounts (a shuffled stream),
 *   as on a real server, so one account's rows are spread over the whole table.
 * - Senders: 20,000 correspondents at 2,000 domains, drawn Zipf (s = 1.0: a few newsletters and
 *   colleagues dominate). 30% of messages have other To recipients, 15% Cc.
 * - Subjects 2–9 words (20% "Re:"), bodies log-normal around 120 words (capped at 3,000),
 *   12% with 1–3 attachments, 3 years of received dates in id order.
 * - Mailboxes INBOX 75%, Archive 12%, Junk 5%, Sent 3%, not yet reported by Dovecot (NULL) 5%;
 *   70% \Seen, 5% \Flagged, 2% expunged.
 */

/** mulberry32: small, fast, good enough for synthetic data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Vose's alias method: O(1) draws from a fixed discrete distribution. */
export class AliasSampler {
  private readonly prob: Float64Array;
  private readonly alias: Uint32Array;

  constructor(weights: ArrayLike<number>) {
    const n = weights.length;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += weights[i]!;
    this.prob = new Float64Array(n);
    this.alias = new Uint32Array(n);
    const scaled = Float64Array.from({ length: n }, (_, i) => (weights[i]! * n) / sum);
    const small: number[] = [];
    const large: number[] = [];
    scaled.forEach((p, i) => (p < 1 ? small : large).push(i));
    while (small.length && large.length) {
      const s = small.pop()!;
      const l = large.pop()!;
      this.prob[s] = scaled[s]!;
      this.alias[s] = l;
      scaled[l] = scaled[l]! + scaled[s]! - 1;
      (scaled[l]! < 1 ? small : large).push(l);
    }
    for (const i of [...small, ...large]) this.prob[i] = 1;
  }

  draw(random: () => number): number {
    const i = Math.floor(random() * this.prob.length);
    return random() < this.prob[i]! ? i : this.alias[i]!;
  }
}

export const zipfWeights = (n: number, s: number): Float64Array => Float64Array.from({ length: n }, (_, i) => 1 / (i + 1) ** s);

/** Account sizes: Zipf over `accounts` ranks with the exponent that gives the biggest `biggest` of `total`. */
export function accountSizes(total: number, accounts: number, biggest: number): number[] {
  const share = (s: number): number => {
    const w = zipfWeights(accounts, s);
    return w[0]! / w.reduce((a, b) => a + b, 0);
  };
  let lo = 0;
  let hi = 2;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (share(mid) * total < biggest) lo = mid;
    else hi = mid;
  }
  const w = zipfWeights(accounts, lo);
  const sum = w.reduce((a, b) => a + b, 0);
  const sizes = Array.from(w, (x) => Math.max(1, Math.floor((x / sum) * total)));
  // Rounding leaves a few messages over; give them to the smallest accounts.
  let left = total - sizes.reduce((a, b) => a + b, 0);
  for (let i = accounts - 1; left > 0; i = i === 0 ? accounts - 1 : i - 1, left--) sizes[i]!++;
  return sizes;
}

const ONSETS = ['b', 'c', 'd', 'f', 'g', 'h', 'j', 'k', 'l', 'm', 'n', 'p', 'r', 's', 't', 'v', 'w', 'z', 'br', 'ch', 'st', 'tr', 'pl', 'gr'];
const VOWELS = ['a', 'e', 'i', 'o', 'u', 'ai', 'ea', 'ou'];
const CODAS = ['', '', '', 'n', 'r', 's', 't', 'l', 'm', 'ck', 'nd'];

/** `n` distinct pseudo-words; the frequent ones (low ranks) are the short ones, as in real text. */
export function vocabulary(n: number, random: () => number): string[] {
  const seen = new Set<string>();
  const words: string[] = [];
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
  while (words.length < n) {
    const syllables = 1 + Math.min(3, Math.floor(Math.log10(words.length + 10)) - 1 + Math.floor(random() * 2));
    let w = '';
    for (let i = 0; i < syllables; i++) w += pick(ONSETS) + pick(VOWELS) + (i === syllables - 1 ? pick(CODAS) : '');
    if (!seen.has(w)) {
      seen.add(w);
      words.push(w);
    }
  }
  return words;
}

export interface SyntheticMessage {
  id: number;
  account: string;
  subject: string;
  fromAddress: string;
  fromName: string;
  to: string[];
  cc: string[];
  receivedAt: Date;
  sizeBytes: number;
  attachments: Array<{ name: string; contentType: string; size: number }>;
  mailbox: string | null;
  uid: number | null;
  flags: string[];
  expunged: boolean;
  body: string;
}

export interface CorpusShape {
  total: number;
  accounts: number;
  biggest: number;
  seed: number;
}

export const DEFAULT_SHAPE: CorpusShape = { total: 1_000_000, accounts: 1_000, biggest: 50_000, seed: 20240601 };
const VOCABULARY = 30_000;
const CORRESPONDENTS = 20_000;
const DOMAINS = 2_000;
const FIRST = ['Alice', 'Bob', 'Carol', 'Dave', 'Erin', 'Frank', 'Grace', 'Heidi', 'Ivan', 'Judy', 'Mallory', 'Niaj', 'Olivia', 'Peggy', 'Rupert', 'Sybil', 'Trent', 'Victor', 'Walter', 'Yusuf'];
const ATTACHMENT_TYPES: Array<[string, string]> = [['pdf', 'application/pdf'], ['docx', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document'], ['png', 'image/png'], ['jpg', 'image/jpeg'], ['xlsx', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'], ['zip', 'application/zip']];
const START = Date.UTC(2022, 0, 1);
const SPAN_MS = 3 * 365 * 86_400_000;

export const accountName = (rank: number): string => `user${rank}@bench${rank % 10}.example`;

/** The corpus's words, most frequent first (the same list corpus() draws from). */
export const corpusVocabulary = (shape: CorpusShape = DEFAULT_SHAPE): string[] => vocabulary(VOCABULARY, rng(shape.seed));

/** The corpus, one message at a time in id (= arrival) order. */
export function* corpus(shape: CorpusShape = DEFAULT_SHAPE): Generator<SyntheticMessage> {
  const random = rng(shape.seed);
  const words = vocabulary(VOCABULARY, random);
  const wordOf = new AliasSampler(zipfWeights(VOCABULARY, 1.07));
  const domains = Array.from({ length: DOMAINS }, (_, i) => `${words[100 + i]}${i}.${['com', 'org', 'net', 'de', 'io'][i % 5]}`);
  const people = Array.from({ length: CORRESPONDENTS }, (_, i) => {
    const first = FIRST[i % FIRST.length]!;
    const last = words[500 + ((i * 7919) % 20_000)]!;
    const name = `${first} ${last[0]!.toUpperCase()}${last.slice(1)}`;
    return { name, address: `${first.toLowerCase()}.${last}@${domains[(i * 31) % DOMAINS]}` };
  });
  const personOf = new AliasSampler(zipfWeights(CORRESPONDENTS, 1.0));
  // The arrival stream: each account appears as often as its size, shuffled (Fisher–Yates).
  const sizes = accountSizes(shape.total, shape.accounts, shape.biggest);
  const stream = new Uint16Array(shape.total);
  let k = 0;
  sizes.forEach((n, rank) => stream.fill(rank, k, (k += n)));
  for (let i = stream.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [stream[i], stream[j]] = [stream[j]!, stream[i]!];
  }
  const uids = new Map<string, number>();
  const text = (n: number): string => {
    const out: string[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = words[wordOf.draw(random)]!;
    return out.join(' ');
  };
  for (let i = 0; i < shape.total; i++) {
    const account = accountName(stream[i]! + 1);
    const sender = people[personOf.draw(random)]!;
    const others = (p: number): string[] =>
      random() < p ? Array.from({ length: 1 + Math.floor(random() * 3) }, () => people[personOf.draw(random)]!.address) : [];
    const bodyWords = Math.min(3000, Math.max(10, Math.round(Math.exp(Math.log(120) + 0.8 * gaussian(random)))));
    const body = text(bodyWords);
    const attachments = random() < 0.12
      ? Array.from({ length: 1 + Math.floor(random() * 3) }, () => {
          const [ext, contentType] = ATTACHMENT_TYPES[Math.floor(random() * ATTACHMENT_TYPES.length)]!;
          return { name: `${words[wordOf.draw(random)]}-${2022 + Math.floor(random() * 3)}.${ext}`, contentType, size: Math.floor(2_000 + random() * 2_000_000) };
        })
      : [];
    const r = random();
    const mailbox = r < 0.75 ? 'INBOX' : r < 0.87 ? 'Archive' : r < 0.92 ? 'Junk' : r < 0.95 ? 'Sent' : null;
    let uid: number | null = null;
    if (mailbox) {
      const key = `${account}\0${mailbox}`;
      uid = (uids.get(key) ?? 0) + 1;
      uids.set(key, uid);
    }
    const flags = [...(random() < 0.7 ? ['\\Seen'] : []), ...(random() < 0.05 ? ['\\Flagged'] : [])];
    yield {
      id: i + 1,
      account,
      subject: (random() < 0.2 ? 'Re: ' : '') + text(2 + Math.floor(random() * 8)),
      fromAddress: sender.address,
      fromName: sender.name,
      to: [account, ...others(0.3)],
      cc: others(0.15),
      receivedAt: new Date(START + Math.floor((i / shape.total) * SPAN_MS) + Math.floor(random() * 60_000)),
      sizeBytes: 800 + body.length + attachments.reduce((a, b) => a + b.size, 0),
      attachments,
      mailbox,
      uid,
      flags,
      expunged: random() < 0.02,
      body,
    };
  }
}

function gaussian(random: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/** COPY text format: backslash, tab, newline and carriage return escaped; null is \N. */
export function copyField(value: string | null): string {
  if (value === null) return '\\N';
  return value.replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]!);
}

/** A text[] literal, every element quoted. */
export function arrayLiteral(values: string[]): string {
  return `{${values.map((v) => `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`).join(',')}}`;
}

/** The B-weighted text exactly as lmtp-indexer/index/writer.ts builds it: each address also as its local part and domain. */
export function peopleText(m: SyntheticMessage): string {
  return [m.fromName, m.fromAddress, ...m.to, ...m.cc].flatMap((s) => (s.includes('@') ? [s, ...s.split('@')] : [s])).join(' ');
}

export function copyLine(m: SyntheticMessage): string {
  return [
    String(m.id),
    copyField(m.account),
    copyField(m.subject),
    copyField(m.fromAddress),
    copyField(m.fromName),
    copyField(arrayLiteral(m.to)),
    copyField(arrayLiteral(m.cc)),
    m.receivedAt.toISOString(),
    String(m.sizeBytes),
    copyField(JSON.stringify(m.attachments)),
    copyField(m.mailbox),
    m.uid === null ? '\\N' : String(m.uid),
    copyField(arrayLiteral(m.flags)),
    m.expunged ? 't' : 'f',
    copyField(peopleText(m)),
    copyField(m.body),
  ].join('\t') + '\n';
}

export const STAGING_COLUMNS = 'id, account, subject, from_address, from_name, to_addresses, cc_addresses, received_at, size_bytes, attachments, mailbox, imap_uid, flags, expunged, people, body';
