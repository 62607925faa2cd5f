/**
 * The search query language (`GET /search?q=…`, `ceerion search USER QUERY`): a pure parser from
 * the query string to a typed AST. No I/O; sql.ts turns the AST into parameterised SQL.
 *
 * Grammar (terms separated by white space, all ANDed):
 *   word            a word anywhere (subject, names, addresses, body)
 *   "a phrase"      the words next to each other, in order; an unclosed quote runs to the end
 *   from:VALUE      sender name or address, whole words: from:alice (name or local part),
 *                   from:alice@example.com, from:example.com (the domain); quoted: from:"Alice Smith"
 *   to:VALUE        a To or Cc address, likewise
 *   subject:VALUE   words in the subject (quoted: as a phrase)
 *   has:attachment
 *   in:MAILBOX      the mailbox's full name, case-insensitive (in:"Sent Items", in:Archive/2023);
 *                   in:inbox also finds mail Dovecot has not reported a mailbox for yet
 *   is:unread  is:read  is:flagged
 *   before:DATE     received before that day (exclusive), DATE is YYYY-MM-DD (or YYYY/MM/DD), UTC
 *   after:DATE      received on or after that day
 *   -TERM           negation of any of the above: -word, -"a phrase", -from:x, -has:attachment,
 *                   -in:Junk, -is:read (= is:unread), -before:D (= after:D), -after:D (= before:D)
 *
 * Unknown keys are words, not errors: mail text is full of colons (`Re:`, `10:30`, URLs, `ticket:42`)
 * and a pasted subject must still search. The price: a typo like `form:alice` searches the words
 * "form" and "alice". A known key with a bad value (`has:pdf`, `before:2024-13-01`) is an error.
 *
 * Limits, each a QueryError naming it: MAX_QUERY_BYTES of UTF-8, MAX_TERMS terms. Control characters
 * (NUL included, which PostgreSQL text cannot hold) count as white space.
 */

export const MAX_QUERY_BYTES = 1024;
export const MAX_TERMS = 32;

export type QueryErrorCode = 'too_long' | 'too_many_terms' | 'empty_value' | 'bad_value';

/** The only error parseQuery throws; the message is fit to show the user as is. */
export class QueryError extends Error {
  constructor(
    readonly code: QueryErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'QueryError';
  }
}

export type FieldKey = 'from' | 'to' | 'subject';
export type Flag = 'read' | 'unread' | 'flagged' | 'unflagged';

export type Term =
  /** Free text: one word, or a phrase (words adjacent, in order). */
  | { kind: 'text'; text: string; phrase: boolean; negated: boolean }
  /** from:/to:/subject:; `phrase` when the value was quoted. */
  | { kind: 'field'; field: FieldKey; value: string; phrase: boolean; negated: boolean }
  | { kind: 'attachment'; negated: boolean }
  | { kind: 'mailbox'; mailbox: string; negated: boolean }
  /** Negation is folded in: -is:read is is:unread. */
  | { kind: 'flag'; flag: Flag }
  /** before: (exclusive) / after: (inclusive) as UTC days; negation is folded in. */
  | { kind: 'date'; op: 'before' | 'after'; date: string };

export interface SearchQuery {
  terms: Term[];
}

const KEYS = new Set(['from', 'to', 'subject', 'has', 'in', 'is', 'before', 'after']);
const FLAGS: Record<string, Flag> = { read: 'read', unread: 'unread', flagged: 'flagged', unflagged: 'unflagged', starred: 'flagged' };
const NEGATED_FLAG: Record<Flag, Flag> = { read: 'unread', unread: 'read', flagged: 'unflagged', unflagged: 'flagged' };
// White space plus every control character: NUL cannot go into a PostgreSQL text parameter.
const SPACE = /[\s\p{Cc}]/u;

/** YYYY-MM-DD or YYYY/MM/DD, a real calendar day, as YYYY-MM-DD. */
function parseDate(key: string, value: string): string {
  const m = /^(\d{4})[-/](\d{2})[-/](\d{2})$/.exec(value);
  if (m) {
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const date = new Date(Date.UTC(y, mo - 1, d));
    if (y >= 1970 && date.getUTCFullYear() === y && date.getUTCMonth() === mo - 1 && date.getUTCDate() === d) return `${m[1]}-${m[2]}-${m[3]}`;
  }
  throw new QueryError('bad_value', `${key}: expects a date such as 2024-03-31, not ${JSON.stringify(value)}`);
}

/** One term from a key, its value and whether it was negated or quoted. */
function keyedTerm(key: string, value: string, negated: boolean, quoted: boolean): Term {
  switch (key) {
    case 'from':
    case 'to':
    case 'subject':
      return { kind: 'field', field: key, value, phrase: quoted, negated };
    case 'has':
      if (/^attachments?$/i.test(value)) return { kind: 'attachment', negated };
      throw new QueryError('bad_value', `has: expects attachment, not ${JSON.stringify(value)}`);
    case 'in':
      return { kind: 'mailbox', mailbox: value, negated };
    case 'is': {
      const flag = FLAGS[value.toLowerCase()];
      if (!flag) throw new QueryError('bad_value', `is: expects unread, read or flagged, not ${JSON.stringify(value)}`);
      return { kind: 'flag', flag: negated ? NEGATED_FLAG[flag] : flag };
    }
    default: {
      const date = parseDate(key, value);
      // before:D is "< D", after:D is ">= D": each negation is exactly the other.
      const before = (key === 'before') !== negated;
      return { kind: 'date', op: before ? 'before' : 'after', date };
    }
  }
}

/** Scanner state over the query string. */
class Scanner {
  pos = 0;
  constructor(readonly s: string) {}

  get done(): boolean {
    return this.pos >= this.s.length;
  }

  peek(offset = 0): string {
    return this.s[this.pos + offset] ?? '';
  }

  skipSpace(): void {
    while (!this.done && SPACE.test(this.peek())) this.pos++;
  }

  /** After an opening quote: up to the closing one (or the end), which is consumed. */
  quoted(): string {
    const end = this.s.indexOf('"', this.pos);
    const text = this.s.slice(this.pos, end < 0 ? this.s.length : end);
    this.pos = end < 0 ? this.s.length : end + 1;
    return text;
  }

  /** Up to the next white space. */
  bare(): string {
    const start = this.pos;
    while (!this.done && !SPACE.test(this.peek())) this.pos++;
    return this.s.slice(start, this.pos);
  }
}

/** Control characters inside a quoted value become spaces, as between terms. */
const clean = (text: string): string => text.replace(/[\s\p{Cc}]+/gu, ' ').trim();

export function parseQuery(input: string): SearchQuery {
  const bytes = Buffer.byteLength(input, 'utf8');
  if (bytes > MAX_QUERY_BYTES) throw new QueryError('too_long', `the query is ${bytes} bytes long; the limit is ${MAX_QUERY_BYTES}`);
  const sc = new Scanner(input);
  const terms: Term[] = [];
  const add = (term: Term): void => {
    if (terms.length === MAX_TERMS) throw new QueryError('too_many_terms', `the query has more than ${MAX_TERMS} terms`);
    terms.push(term);
  };
  for (sc.skipSpace(); !sc.done; sc.skipSpace()) {
    // A leading '-' negates the term after it; a '-' alone (or before white space) means nothing.
    const negated = sc.peek() === '-';
    if (negated) {
      sc.pos++;
      if (sc.done || SPACE.test(sc.peek())) continue;
    }
    if (sc.peek() === '"') {
      sc.pos++;
      const text = clean(sc.quoted());
      if (text) add({ kind: 'text', text, phrase: true, negated });
      continue;
    }
    const key = /^([A-Za-z]+):/.exec(sc.s.slice(sc.pos, sc.pos + 16))?.[1]?.toLowerCase();
    if (key !== undefined && KEYS.has(key)) {
      sc.pos += key.length + 1;
      const quoted = sc.peek() === '"';
      if (quoted) sc.pos++;
      const value = quoted ? clean(sc.quoted()) : sc.bare();
      if (!value) throw new QueryError('empty_value', `${key}: needs a value, e.g. ${key}:${EXAMPLES[key]}`);
      add(keyedTerm(key, value, negated, quoted));
      continue;
    }
    const word = sc.bare();
    add({ kind: 'text', text: word, phrase: false, negated });
  }
  return { terms };
}

const EXAMPLES: Record<string, string> = {
  from: 'alice@example.com',
  to: 'bob',
  subject: 'invoice',
  has: 'attachment',
  in: 'inbox',
  is: 'unread',
  before: '2024-03-31',
  after: '2024-01-01',
};
