/**
 * From the query AST (query.ts) to parameterised SQL over indexed_messages. User text only ever
 * travels as a bind parameter; the SQL text is built from fixed fragments and `$n` placeholders.
 *
 * Two statements per search:
 * 1. compileStatement: PostgreSQL turns each word, phrase and from:/to:/subject: value into a
 *    tsquery or lexemes with the text search configuration the account's mail was indexed with
 *    (so stemming and tokenising match the tsvector exactly). A term that yields nothing (stop
 *    words, punctuation) is dropped. Skipped when the query has no such term.
 * 2. searchStatement: the rows, with the tsqueries inlined as constants so the planner estimates
 *    them from the column statistics and picks the GIN index (rare terms) or a newest-first walk
 *    of the (account, received_at) index (common terms, plain filters) accordingly.
 *
 * How each term is matched:
 * - words: plainto_tsquery over the whole tsvector, ANDed; phrases: their words through the
 *   index, then phraseto_tsquery on the newest candidates (SearchOptions.phraseCandidates);
 * - from:/to:: the value's lexemes (the indexer puts names, addresses and each address's local
 *   part and domain in the tsvector), then the columns themselves with ILIKE, since the tsvector
 *   mixes sender and recipients. So from:alice matches the name "Alice Smith" and alice@…,
 *   from:example.com and from:@example.com a sender at that domain; whole words, as in the body;
 * - subject:: the lexemes through the GIN index, then the phrase against to_tsvector(subject);
 * - the rest: plain column predicates.
 * Index conditions never carry weights or phrases: GIN keeps neither, so such a condition
 * re-reads the tsvector of every row that has the words.
 * Free text ranks by ts_rank_cd (normalised by document length), newest first otherwise.
 */
import type { FieldKey, SearchQuery, Term } from './query.ts';

export interface Statement {
  text: string;
  values: unknown[];
}

/** What PostgreSQL computes for a term in step 1. */
type CompileInput = { fn: 'plain' | 'phrase' | 'lexemes' | 'subject'; input: string };

/** Step 1's result for one term: a tsquery (as text) and/or the value's lexemes. */
export interface CompiledTerm {
  q?: string;
  lexemes?: string[];
}

export interface CompiledQuery {
  /** Aligned with the query's terms; undefined when the term needs nothing or yielded nothing. */
  terms: Array<CompiledTerm | undefined>;
}

/** Quotes a lexeme for tsquery input: inside '…', a quote is doubled and a backslash escaped. */
export const tsqueryQuote = (text: string): string => `'${text.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;

function compileInput(term: Term): CompileInput | undefined {
  if (term.kind === 'text') return { fn: term.phrase ? 'phrase' : 'plain', input: term.text };
  if (term.kind !== 'field') return undefined;
  if (term.field === 'subject') return { fn: 'subject', input: term.value };
  // `@example.com` is the domain, which the indexer keeps as a lexeme of its own.
  return { fn: 'lexemes', input: term.value.replace(/(^|\s)@/g, '$1') };
}

/**
 * Step 1, or undefined when no term needs PostgreSQL. One row per such term, in term order:
 * `q` (tsquery text, '' when it has no lexeme) and `lexemes`. The configuration is the
 * one the account's newest row was indexed with (lmtp.index.language at the time), `fallback` for
 * an account with no mail.
 */
export function compileStatement(query: SearchQuery, account: string, fallback: string): Statement | undefined {
  const inputs = query.terms.map(compileInput).filter((x): x is CompileInput => x !== undefined);
  if (!inputs.length) return undefined;
  return {
    text: `WITH cfg AS (
        SELECT coalesce((SELECT language FROM indexed_messages WHERE account = $1 ORDER BY received_at DESC, id DESC LIMIT 1), $2::regconfig) AS lang
      )
      SELECT (CASE t.fn WHEN 'plain' THEN plainto_tsquery(cfg.lang, t.input)
          WHEN 'phrase' THEN phraseto_tsquery(cfg.lang, t.input)
          WHEN 'subject' THEN phraseto_tsquery(cfg.lang, t.input) END)::text AS q,
        CASE WHEN t.fn IN ('lexemes', 'subject', 'phrase') THEN tsvector_to_array(to_tsvector(cfg.lang, t.input)) END AS lexemes
      FROM cfg, unnest($3::text[], $4::text[]) WITH ORDINALITY AS t(fn, input, n) ORDER BY t.n`,
    values: [account, fallback, inputs.map((i) => i.fn), inputs.map((i) => i.input)],
  };
}

/** Step 1's rows, aligned with the query's terms. */
export function compiledQuery(query: SearchQuery, rows: Array<{ q: string | null; lexemes: string[] | null }>): CompiledQuery {
  let i = 0;
  const terms = query.terms.map((t): CompiledTerm | undefined => {
    if (!compileInput(t)) return undefined;
    const row = rows[i++];
    const out: CompiledTerm = {};
    if (row?.q) out.q = row.q;
    if (row?.lexemes?.length) out.lexemes = row.lexemes;
    return out.q || out.lexemes ? out : undefined;
  });
  return { terms };
}

/** Where the next page starts: after this row in the page's order. */
export type Cursor =
  | { order: 'date'; receivedAt: string; id: number }
  /** `score` is PostgreSQL's own text for the real, so it compares equal when sent back. */
  | { order: 'rank'; score: string; id: number; maxId: number };

export interface SearchOptions {
  account: string;
  limit: number;
  cursor?: Cursor | undefined;
  /**
   * Ranked queries score at most this many of the newest matches: ranking every match of a word in
   * most messages would read every one of its tsvectors. Older matches beyond it are not returned.
   */
  rankWindow: number;
  /**
   * A phrase is found through its words (all the GIN index can tell), then checked on each
   * candidate's tsvector: at most this many of the newest candidates are checked. Without a cap,
   * a phrase of two common words checks every message that has both.
   */
  phraseCandidates: number;
}

/** Collects bind parameters; `p(v)` returns the placeholder for a new one. */
class Params {
  readonly values: unknown[] = [];
  p(value: unknown, cast = ''): string {
    this.values.push(value);
    return `$${this.values.length}${cast}`;
  }
}

/** `%`, `_` and the escape character itself are literal in the user's value. */
export const likeEscape = (value: string): string => value.replace(/[\\%_]/g, (c) => `\\${c}`);

const FLAG_NAMES = { read: '\\Seen', flagged: '\\Flagged' } as const;

/** The column check for from:/to:, ILIKE against a pattern param. */
function fieldPredicate(field: Exclude<FieldKey, 'subject'>, pattern: string): string {
  if (field === 'from') return `(coalesce(from_address, '') ILIKE ${pattern} OR coalesce(from_name, '') ILIKE ${pattern})`;
  return `EXISTS (SELECT 1 FROM unnest(to_addresses || cc_addresses) AS a(address) WHERE a.address ILIKE ${pattern})`;
}

interface Conditions {
  where: string[];
  /** Positive tsqueries for the GIN index: free text (phrases as their words) and field prefilters. */
  gin: string[];
  /** Positive phrases, checked on the candidates the GIN conditions find. */
  phrases: string[];
  /** Positive free text only: what the score ranks. */
  rank: string[];
}

/** Lexemes ANDed as tsquery text. */
const lexemeQuery = (lexemes: string[]): string => lexemes.map(tsqueryQuote).join(' & ');

function termConditions(terms: Term[], compiled: CompiledQuery, params: Params): Conditions {
  const out: Conditions = { where: [], gin: [], phrases: [], rank: [] };
  terms.forEach((term, i) => {
    const c = compiled.terms[i];
    let cond: string | undefined;
    switch (term.kind) {
      case 'text':
        if (!c?.q) return; // only stop words or punctuation: ignored, as PostgreSQL does
        if (!term.negated) {
          out.rank.push(c.q);
          if (term.phrase && c.lexemes && c.lexemes.length > 1) {
            out.gin.push(lexemeQuery(c.lexemes));
            out.phrases.push(c.q);
          } else out.gin.push(c.q);
          return;
        }
        cond = `tsv @@ ${params.p(c.q, '::tsquery')}`;
        break;
      case 'field': {
        // Every placeholder made must appear in the SQL: PostgreSQL can't type an unused one.
        const pattern = () => params.p(`%${likeEscape(term.value)}%`);
        if (term.field === 'subject') {
          // The phrase against the subject alone, in the row's own configuration: the expression of
          // the proposed (account, to_tsvector(language, subject)) index; the weighted tsvector
          // would be re-read for every row that has the words anywhere.
          cond = c?.q ? `to_tsvector(language, coalesce(subject, '')) @@ ${params.p(c.q, '::tsquery')}` : `coalesce(subject, '') ILIKE ${pattern()}`;
          if (c?.lexemes && !term.negated) out.gin.push(lexemeQuery(c.lexemes));
        } else {
          cond = fieldPredicate(term.field, pattern());
          // Whole lexemes, not prefixes: a prefix such as alice:* expands to every address that
          // starts with it, in every account (measured: 50 ms of GIN work against 0.4 ms).
          if (c?.lexemes && !term.negated) out.gin.push(lexemeQuery(c.lexemes));
        }
        break;
      }
      case 'attachment':
        cond = 'has_attachment';
        break;
      case 'mailbox':
        // Mail not yet reported by Dovecot's push notifications was delivered to INBOX.
        cond = term.mailbox.toLowerCase() === 'inbox' ? `coalesce(lower(mailbox), 'inbox') = 'inbox'` : `lower(mailbox) = lower(${params.p(term.mailbox)})`;
        // A NULL mailbox is in no named mailbox: the negation must say true, not NULL.
        if (term.negated) cond = `(${cond}) IS NOT TRUE`;
        out.where.push(cond);
        return;
      case 'flag': {
        const name = term.flag === 'read' || term.flag === 'unread' ? FLAG_NAMES.read : FLAG_NAMES.flagged;
        const has = `${params.p(name)}::text = ANY (flags)`;
        out.where.push(term.flag === 'read' || term.flag === 'flagged' ? has : `NOT (${has})`);
        return;
      }
      case 'date':
        out.where.push(`received_at ${term.op === 'before' ? '<' : '>='} ${params.p(`${term.date}T00:00:00Z`, '::timestamptz')}`);
        return;
    }
    out.where.push(term.negated ? `NOT (${cond})` : cond);
  });
  return out;
}

/** Columns every result has; `received_key` is exact to the microsecond for the cursor. */
const COLUMNS = `m.id, m.subject, m.from_address, m.from_name, m.to_addresses, m.cc_addresses, m.sent_at, m.size_bytes,
  m.snippet, m.has_attachment, m.mailbox, m.imap_uid, m.flags,
  to_char(m.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS received_key`;

/** `(a) & (b)`: tsquery texts from step 1 are valid tsquery input. */
const andAll = (tsqs: string[]): string => tsqs.map((q) => `(${q})`).join(' & ');

/**
 * Step 2: the page, `limit + 1` rows (the extra one tells whether there is a next page). Ranked
 * rows carry `score` (text) and `max_id` (the snapshot bound for later pages).
 */
export function searchStatement(query: SearchQuery, compiled: CompiledQuery, opts: SearchOptions): Statement & { ranked: boolean } {
  const params = new Params();
  const c = termConditions(query.terms, compiled, params);
  const where = [`account = ${params.p(opts.account)}`, 'expunged_at IS NULL', ...c.where];
  if (c.gin.length) where.push(`tsv @@ ${params.p(andAll(c.gin), '::tsquery')}`);
  const cursor = opts.cursor;
  const limit = params.p(opts.limit + 1, '::int');
  if (!c.rank.length) {
    if (cursor?.order === 'date') where.push(`(received_at, id) < (${params.p(cursor.receivedAt, '::timestamptz')}, ${params.p(cursor.id, '::bigint')})`);
    return {
      text: `SELECT ${COLUMNS}, NULL::text AS score, NULL::bigint AS max_id FROM indexed_messages m
        WHERE ${where.join(' AND ')} ORDER BY m.received_at DESC, m.id DESC LIMIT ${limit}`,
      values: params.values,
      ranked: false,
    };
  }
  const rankQuery = params.p(andAll(c.rank), '::tsquery');
  let maxId = '(SELECT max(id) FROM indexed_messages)';
  let after = '';
  if (cursor?.order === 'rank') {
    // Later pages rank the same window as the first: mail that arrived since is left out.
    maxId = params.p(cursor.maxId, '::bigint');
    where.push(`id <= ${maxId}`);
    after = `WHERE (s.score, s.id) < (${params.p(cursor.score, '::real')}, ${params.p(cursor.id, '::bigint')})`;
  }
  // The window carries row addresses, not tsvectors (a sort of 2,000 tsvectors spills to disk);
  // each tsvector is then read by ctid from the heap page the window scan just fetched, and only
  // the page's rows are fetched whole. A ctid is stable within the statement's snapshot.
  const scan = `SELECT ctid AS tid, id, received_at FROM indexed_messages WHERE ${where.join(' AND ')} ORDER BY received_at DESC, id DESC`;
  const window = params.p(opts.rankWindow, '::int');
  const matches = c.phrases.length
    ? `SELECT c.tid, c.id FROM (${scan} LIMIT ${params.p(opts.phraseCandidates, '::int')}) c
        JOIN indexed_messages p ON p.ctid = c.tid WHERE p.tsv @@ ${params.p(andAll(c.phrases), '::tsquery')}
        ORDER BY c.received_at DESC, c.id DESC LIMIT ${window}`
    : `${scan} LIMIT ${window}`;
  return {
    text: `WITH scored AS MATERIALIZED (
        SELECT w.tid, w.id, ts_rank_cd(r.tsv, ${rankQuery}, 1) AS score
        FROM (${matches}) w JOIN indexed_messages r ON r.ctid = w.tid
      )
      SELECT ${COLUMNS}, t.score::text AS score, ${maxId}::bigint AS max_id
      FROM (SELECT s.tid, s.id, s.score FROM scored s ${after} ORDER BY s.score DESC, s.id DESC LIMIT ${limit}) t
      JOIN indexed_messages m ON m.ctid = t.tid
      ORDER BY t.score DESC, t.id DESC`,
    values: params.values,
    ranked: true,
  };
}
