/**
 * Loader for the openspf RFC 7208 SPF test suite (./rfc7208-tests.yml): each YAML document is a
 * scenario with `tests` (cases) and `zonedata`; the zone data becomes a zone map for our
 * zoneResolver, and a case runs through mailauth's `spf` (the SPF our authentication check runs),
 * every lookup going through that resolver.
 *
 * The zone translation follows the reference driver (pyspf's testspf.py, which the suite's authors
 * wrote alongside it):
 * - `SPF` records are copied to `TXT` for names that list no TXT at all (the suite's "auto-magic
 *   duplication": RFC 7208 dropped the SPF RR type, and mailauth only queries TXT). They also stay
 *   under `SPF`, which nothing queries.
 * - `TXT: NONE` / `SPF: NONE` list no record but still count as "TXT was given" (no copying).
 * - A string TXT is one chunk, a list is the record's chunks (mailauth joins them without spaces).
 * - `MX: [priority, host]` → { exchange, priority }; PTR, MX and CNAME targets lose a trailing dot
 *   (as Node's resolver answers them).
 * - A bare `TIMEOUT` entry: every query for a type the name has no record of times out (ETIMEOUT);
 *   types with records answer normally. A `TYPE: TIMEOUT` value times out that type only.
 * - A name missing from the zone is NXDOMAIN (ENOTFOUND); a name without the type is ENODATA.
 * - CNAMEs are chased as a recursive resolver (and Node's `resolve`) does: the alias answers with the
 *   end of the chain's records, or ENOTFOUND when the chain ends nowhere; a loop is a server failure
 *   (ESERVFAIL). A CNAME query answers the first hop.
 * - Names DNS cannot carry (a label over 63 bytes, an empty label, over 253 bytes) are ENOTFOUND
 *   before any lookup, exactly as our UDP resolver does (core/dns/response.ts normalizeName).
 *   pyspf's driver raised a temporary error there instead, emulating its old DNS library.
 * (testspf.py's "unknown name starting with error. times out" rule is not needed: no scenario uses
 * such a name.)
 *
 * YAML is read with the failsafe schema, so every scalar stays the string it was written as (no
 * 1.1/1.2 type guessing); double-quoted escapes such as "\x96" still apply.
 */
import { readFileSync } from 'node:fs';
import { spf } from 'mailauth';
import { parseAllDocuments } from 'yaml';
import { normalizeName } from '../../../../core/dns/response.ts';
import type { DnsResolver } from '../../../../core/dns/types.ts';
import { zoneResolver, type RecordingResolver, type Zone } from '../../../../core/dns/zone-resolver.ts';

export const SUITE_FILE = new URL('./rfc7208-tests.yml', import.meta.url);

export interface SuiteCase {
  /** The case's id (unique across the suite). */
  name: string;
  scenario: string;
  description?: string;
  spec?: string;
  helo: string;
  /** The client IP address. */
  host: string;
  /** MAIL FROM; empty means the HELO identity is checked (postmaster@helo). */
  mailfrom: string;
  /** Acceptable results (the suite sometimes lists several). */
  results: string[];
  /** The expected explanation for a fail, when the case gives one. */
  explanation?: string;
  receiver?: string;
}

export interface Scenario {
  description: string;
  cases: SuiteCase[];
  zone: Zone;
}

type Node = Partial<Record<string, unknown[] | 'ETIMEOUT' | 'ENOTFOUND' | 'ENODATA' | 'ESERVFAIL'>>;

/** The record types SPF evaluation can ask for (filled in for timeouts and CNAME aliases). */
const QUERY_TYPES = ['A', 'AAAA', 'MX', 'TXT', 'SPF', 'PTR'] as const;

const stripDot = (s: string) => s.replace(/\.$/, '');

function fail(where: string, what: string): never {
  throw new Error(`rfc7208-tests.yml: ${where}: ${what}`);
}

function str(v: unknown, where: string): string {
  if (typeof v !== 'string') fail(where, `expected a string, got ${JSON.stringify(v)}`);
  return v;
}

/** One name's list of entries → its answers per type (CNAMEs not chased yet). */
function translateName(name: string, entries: unknown): Node {
  if (!Array.isArray(entries)) fail(name, 'zone entry is not a list');
  const records = new Map<string, unknown[]>();
  const given = new Set<string>();
  const timeoutTypes = new Set<string>();
  let bareTimeout = false;
  const add = (type: string, rdata: unknown) => {
    const list = records.get(type) ?? [];
    list.push(rdata);
    records.set(type, list);
  };

  for (const entry of entries) {
    if (entry === 'TIMEOUT') {
      bareTimeout = true;
      continue;
    }
    if (!entry || typeof entry !== 'object' || Array.isArray(entry) || Object.keys(entry).length !== 1) {
      fail(name, `unexpected zone entry ${JSON.stringify(entry)}`);
    }
    const [type, value] = Object.entries(entry as Record<string, unknown>)[0] as [string, unknown];
    given.add(type);
    if (value === 'TIMEOUT') {
      timeoutTypes.add(type);
      continue;
    }
    const where = `${name} ${type}`;
    switch (type) {
      case 'TXT':
      case 'SPF':
        if (value === 'NONE') break;
        add(type, Array.isArray(value) ? value.map((c) => str(c, where)) : [str(value, where)]);
        break;
      case 'A':
        add(type, str(value, where));
        break;
      case 'AAAA':
        add(type, str(value, where).toLowerCase());
        break;
      case 'MX': {
        if (!Array.isArray(value) || value.length !== 2) fail(where, `expected [priority, host], got ${JSON.stringify(value)}`);
        const priority = Number(str(value[0], where));
        if (!Number.isInteger(priority)) fail(where, `bad priority ${JSON.stringify(value[0])}`);
        add(type, { exchange: stripDot(str(value[1], where)), priority });
        break;
      }
      case 'PTR':
      case 'CNAME':
        add(type, stripDot(str(value, where)));
        break;
      default:
        fail(where, 'unknown record type');
    }
  }

  // The drivers' SPF → TXT duplication, only where the name lists no TXT (not even TXT: NONE).
  if (!given.has('TXT') && records.has('SPF')) records.set('TXT', [...(records.get('SPF') ?? [])]);

  const node: Node = {};
  for (const [type, list] of records) node[type] = list;
  for (const type of timeoutTypes) if (!records.has(type)) node[type] = 'ETIMEOUT';
  if (bareTimeout) for (const type of QUERY_TYPES) if (!records.has(type)) node[type] = 'ETIMEOUT';
  return node;
}

/** A scenario's `zonedata` → a zone map for zoneResolver. */
export function zoneFromSuite(zonedata: unknown): Zone {
  if (!zonedata || typeof zonedata !== 'object') return {};
  const raw = new Map<string, Node>();
  for (const [name, entries] of Object.entries(zonedata as Record<string, unknown>)) {
    const key = stripDot(name.toLowerCase());
    if (raw.has(key)) fail(name, 'name listed twice');
    raw.set(key, translateName(name, entries));
  }

  const zone: Zone = {};
  for (const [name, node] of raw) {
    const first = node.CNAME;
    if (!Array.isArray(first)) {
      zone[name] = node;
      continue;
    }
    // Chase the chain; the alias answers with the end's records (Node's resolve does the same).
    const seen = new Set([name]);
    let target = String(first[0]).toLowerCase();
    let end: Node | 'ENOTFOUND' | 'ESERVFAIL';
    for (;;) {
      if (seen.has(target)) {
        end = 'ESERVFAIL';
        break;
      }
      seen.add(target);
      const next = raw.get(target);
      if (!next) {
        end = 'ENOTFOUND';
        break;
      }
      const cname = next.CNAME;
      if (!Array.isArray(cname)) {
        end = next;
        break;
      }
      target = String(cname[0]).toLowerCase();
    }
    const alias: Node = { CNAME: first };
    for (const type of QUERY_TYPES) {
      const answer = typeof end === 'string' ? end : end[type];
      if (answer !== undefined) alias[type] = answer;
    }
    zone[name] = alias;
  }
  return zone;
}

/** The scenario's resolver: names DNS cannot carry fail as in our UDP resolver, the rest from the zone. */
export function suiteResolver(zone: Zone): { resolve: DnsResolver; calls: RecordingResolver['calls'] } {
  const z = zoneResolver(zone);
  const resolve: DnsResolver = async (name, rrtype) => {
    normalizeName(name, rrtype);
    return z(name, rrtype);
  };
  return { resolve, calls: z.calls };
}

function optionalString(v: unknown, where: string): string | undefined {
  return v === undefined ? undefined : str(v, where).trim();
}

/** Every scenario of the suite, in file order. */
export function loadSuite(file: URL = SUITE_FILE): Scenario[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { schema: 'failsafe' });
  if (!Array.isArray(docs)) fail('file', 'no YAML documents');
  const names = new Set<string>();
  const scenarios: Scenario[] = [];
  for (const doc of docs) {
    if (doc.errors.length) fail('file', doc.errors.map((e) => e.message).join('; '));
    const data = doc.toJS() as { description?: unknown; tests?: Record<string, Record<string, unknown>>; zonedata?: unknown } | null;
    if (!data) continue;
    const description = str(data.description, 'scenario description').trim();
    const cases: SuiteCase[] = [];
    for (const [name, c] of Object.entries(data.tests ?? {})) {
      if (names.has(name)) fail(name, 'case name used twice');
      names.add(name);
      const result = c.result;
      const results = Array.isArray(result) ? result.map((r) => str(r, `${name} result`)) : [str(result, `${name} result`)];
      cases.push({
        name,
        scenario: description,
        description: optionalString(c.description, `${name} description`),
        spec: optionalString(c.spec, `${name} spec`),
        helo: str(c.helo, `${name} helo`),
        host: str(c.host, `${name} host`),
        mailfrom: str(c.mailfrom, `${name} mailfrom`),
        results,
        explanation: optionalString(c.explanation, `${name} explanation`),
        receiver: optionalString(c.receiver, `${name} receiver`),
      });
    }
    scenarios.push({ description, cases, zone: zoneFromSuite(data.zonedata) });
  }
  return scenarios;
}

export interface CaseOutcome {
  result: string;
  comment?: string;
  calls: RecordingResolver['calls'];
}

/**
 * One case through mailauth's SPF with the scenario's resolver. mailauth checks one identity: MAIL
 * FROM, or postmaster@HELO when MAIL FROM is empty, which is what each case asks for. (Our
 * authentication check reaches the same function through mailauth's `authenticate`, whose only
 * change to these options is bracketing a HELO that is a bare IP address: no case has one.)
 */
export async function runCase(c: SuiteCase, zone: Zone): Promise<CaseOutcome> {
  const { resolve, calls } = suiteResolver(zone);
  const res = await spf({
    sender: c.mailfrom,
    ip: c.host,
    helo: c.helo,
    mta: c.receiver ?? 'receiver.example.org',
    resolver: resolve as never,
  });
  const out: CaseOutcome = { result: res.status.result, calls };
  if (res.status.comment) out.comment = res.status.comment;
  return out;
}
