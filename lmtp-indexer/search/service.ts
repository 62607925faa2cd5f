/**
 * Search over the index for one account: parse (query.ts), build the SQL (sql.ts), run it, shape
 * the page. The HTTP route and `ceerion search` both call searchMessages.
 *
 * Both statements run in one read-only transaction with a server-side statement_timeout, so a
 * pathological query is cancelled by PostgreSQL itself instead of running on after we gave up,
 * and without parallel workers: starting them costs more than a search of a few milliseconds
 * saves, and on a busy server the other cores are serving other searches.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { normaliseAddress } from '../../accounts/repository.ts';
import { parseQuery, type SearchQuery } from './query.ts';
import { compiledQuery, compileStatement, searchStatement, type Cursor } from './sql.ts';

export interface SearchDeps {
  pool: pg.Pool;
  /**
   * Text search configuration for an account with no mail yet (lmtp.index.language; default
   * `simple`). Otherwise queries use the one the account's newest row was indexed with.
   */
  language?: string;
  /** lmtp.http.maxPageSize. */
  maxPageSize: number;
  /** Newest matches a ranked query scores (see SearchOptions.rankWindow); default DEFAULT_RANK_WINDOW. */
  rankWindow?: number;
  /** Newest candidates a phrase is checked on (SearchOptions.phraseCandidates); default DEFAULT_PHRASE_CANDIDATES. */
  phraseCandidates?: number;
  /** Server-side limit per statement; default DEFAULT_TIMEOUT_MS. */
  timeoutMs?: number;
}

export const DEFAULT_PAGE_SIZE = 20;
export const DEFAULT_RANK_WINDOW = 2_000;
export const DEFAULT_PHRASE_CANDIDATES = 5_000;
export const DEFAULT_TIMEOUT_MS = 5_000;

/** A bad limit or cursor: the caller's fault, like a QueryError (HTTP 400). */
export class SearchInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SearchInputError';
  }
}

/** PostgreSQL cancelled the search at the deadline (HTTP 503). */
export class SearchTimeoutError extends Error {
  constructor(ms: number) {
    super(`the search took longer than ${ms} ms and was cancelled`);
    this.name = 'SearchTimeoutError';
  }
}

export interface SearchHit {
  id: number;
  subject: string | null;
  from: { address: string | null; name: string | null };
  to: string[];
  cc: string[];
  /** When we received it (ISO 8601, UTC): what results are ordered and date-filtered by. */
  date: string;
  /** The Date header, as the sender claims. */
  sentAt: string | null;
  size: number;
  snippet: string;
  hasAttachment: boolean;
  /** null until Dovecot's push notifications report where it is. */
  mailbox: string | null;
  uid: number | null;
  flags: string[];
  /** ts_rank_cd relevance when the query has words; null when newest first. */
  score: number | null;
}

export interface SearchPage {
  hits: SearchHit[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
  /** `rank` (relevance, then newest) or `date` (newest first). */
  order: 'rank' | 'date';
}

export interface SearchRequest {
  account: string;
  query: string;
  limit?: number | undefined;
  cursor?: string | undefined;
}

interface CompileRow {
  q: string | null;
  lexemes: string[] | null;
}

interface Row {
  id: string;
  subject: string | null;
  from_address: string | null;
  from_name: string | null;
  to_addresses: string[];
  cc_addresses: string[];
  sent_at: Date | null;
  size_bytes: string;
  snippet: string;
  has_attachment: boolean;
  mailbox: string | null;
  imap_uid: string | null;
  flags: string[];
  received_key: string;
  score: string | null;
  max_id: string | null;
}

/** Ties a cursor to the query it came from: reusing it with another query is an error, not a wrong page. */
const queryTag = (q: SearchQuery): string => createHash('sha256').update(JSON.stringify(q.terms)).digest('base64url').slice(0, 12);

export function encodeCursor(cursor: Cursor, query: SearchQuery): string {
  return Buffer.from(JSON.stringify({ ...cursor, q: queryTag(query) })).toString('base64url');
}

const ISO_MICROS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const isId = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) > 0;

export function decodeCursor(text: string, query: SearchQuery): Cursor {
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new SearchInputError('the cursor is not one this server issued');
  }
  if (c?.q !== queryTag(query)) throw new SearchInputError('the cursor belongs to another query; start again without it');
  if (c.order === 'date' && typeof c.receivedAt === 'string' && ISO_MICROS.test(c.receivedAt) && isId(c.id)) {
    return { order: 'date', receivedAt: c.receivedAt, id: c.id };
  }
  if (c.order === 'rank' && typeof c.score === 'string' && /^[0-9.e+-]{1,32}$/.test(c.score) && isId(c.id) && isId(c.maxId)) {
    return { order: 'rank', score: c.score, id: c.id, maxId: c.maxId };
  }
  throw new SearchInputError('the cursor is not one this server issued');
}

function hit(r: Row): SearchHit {
  return {
    id: Number(r.id),
    subject: r.subject,
    from: { address: r.from_address, name: r.from_name },
    to: r.to_addresses,
    cc: r.cc_addresses,
    date: r.received_key,
    sentAt: r.sent_at?.toISOString() ?? null,
    size: Number(r.size_bytes),
    snippet: r.snippet,
    hasAttachment: r.has_attachment,
    mailbox: r.mailbox,
    uid: r.imap_uid === null ? null : Number(r.imap_uid),
    flags: r.flags,
    score: r.score === null ? null : Number(r.score),
  };
}

/** The page size asked for, within 1..maxPageSize; undefined is DEFAULT_PAGE_SIZE (or the cap). */
export function pageSize(limit: number | undefined, max: number): number {
  if (limit === undefined) return Math.min(DEFAULT_PAGE_SIZE, max);
  if (!Number.isInteger(limit) || limit < 1) throw new SearchInputError(`limit must be a whole number from 1 to ${max}`);
  return Math.min(limit, max);
}

/** Throws QueryError (bad query), SearchInputError (bad limit or cursor), SearchTimeoutError. */
export async function searchMessages(deps: SearchDeps, req: SearchRequest): Promise<SearchPage> {
  const query = parseQuery(req.query);
  const limit = pageSize(req.limit, deps.maxPageSize);
  const cursor = req.cursor ? decodeCursor(req.cursor, query) : undefined;
  const timeoutMs = deps.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const client = await deps.pool.connect();
  // A connection whose ROLLBACK failed is in an unknown state: the pool must drop it.
  let broken: Error | undefined;
  let rows: Row[];
  let ranked: boolean;
  try {
    await client.query(`BEGIN READ ONLY; SET LOCAL statement_timeout = ${Math.max(1, Math.floor(timeoutMs))}; SET LOCAL max_parallel_workers_per_gather = 0`);
    const account = normaliseAddress(req.account);
    const step1 = compileStatement(query, account, deps.language ?? 'simple');
    const compiled = compiledQuery(query, step1 ? (await client.query<CompileRow>(step1)).rows : []);
    const opts = { account, limit, cursor, rankWindow: deps.rankWindow ?? DEFAULT_RANK_WINDOW, phraseCandidates: deps.phraseCandidates ?? DEFAULT_PHRASE_CANDIDATES };
    const statement = searchStatement(query, compiled, opts);
    ranked = statement.ranked;
    if (cursor && (cursor.order === 'rank') !== ranked) throw new SearchInputError('the cursor belongs to another query; start again without it');
    rows = (await client.query<Row>({ text: statement.text, values: statement.values })).rows;
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch((e: Error) => {
      broken = e;
    });
    if ((err as { code?: string }).code === '57014') throw new SearchTimeoutError(timeoutMs);
    throw err;
  } finally {
    client.release(broken);
  }
  const page = rows.slice(0, limit);
  const last = rows.length > limit ? page[page.length - 1] : undefined;
  let next: Cursor | undefined;
  if (last && ranked) next = { order: 'rank', score: last.score!, id: Number(last.id), maxId: Number(last.max_id) };
  else if (last) next = { order: 'date', receivedAt: last.received_key, id: Number(last.id) };
  return { hits: page.map(hit), nextCursor: next ? encodeCursor(next, query) : null, order: ranked ? 'rank' : 'date' };
}
