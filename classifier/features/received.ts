/**
 * Trace and authentication header tokens: Received hops, the Date field against the newest hop,
 * and our Authentication-Results. Spellings are listed in header-tokens.ts.
 */
import type { HeaderFacts } from './header-tokens.ts';
import type { TokenSink } from './sink.ts';
import { registeredDomain } from './urls.ts';

function ipClass(a: number, b: number): string {
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'private';
  if (a === 127) return 'loopback';
  return 'public';
}

const IPV4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})/;

/** Index of `word` in s standing alone (white space or the ends around it), from `from`; or -1. */
function keyword(s: string, word: string, from = 0): number {
  let i = s.indexOf(word, from);
  while (i >= 0) {
    const before = i === 0 ? 32 : s.charCodeAt(i - 1);
    const after = i + word.length < s.length ? s.charCodeAt(i + word.length) : 32;
    if (before <= 32 && after <= 32) return i;
    i = s.indexOf(word, i + 1);
  }
  return -1;
}

/** The word starting at or after s[i] (white space skipped; at most 64 characters), or ''. */
function wordAt(s: string, i: number): string {
  let j = i;
  while (j < s.length && s.charCodeAt(j) <= 32) j++;
  let k = j;
  while (k < s.length && k - j < 64) {
    const c = s.charCodeAt(k);
    if (c <= 32 || c === 40 || c === 41 || c === 59 || c === 91 || c === 93) break; // space ( ) ; [ ]
    k++;
  }
  return s.slice(j, k);
}

function hostToken(h: string): string {
  if (h.length === 0) return '';
  if (h.charCodeAt(0) === 91 || IPV4.test(h)) return 'ip';
  if (!h.includes('.')) return 'nodot';
  return registeredDomain(h.endsWith('.') ? h.slice(0, -1) : h);
}

/**
 * Tokens of one Received field: "from HELO (RDNS [IP]) by HOST with PROTO …" in its Postfix,
 * Sendmail, qmail ("from unknown (HELO x) (1.2.3.4)") and Exchange shapes.
 */
export function receivedTokens(sink: TokenSink, raw: string): void {
  const low = (raw.length > 1000 ? raw.slice(0, 1000) : raw).toLowerCase();
  const fromAt = keyword(low, 'from');
  let helo = fromAt === 0 ? wordAt(low, 4) : '';
  // Only the from-clause's comment ("from helo (rdns [ip])"), not "by host (8.9.3/8.9.3)".
  const byAt = keyword(low, 'by');
  const paren = low.indexOf('(');
  let rdns = '';
  if (paren >= 0 && (byAt < 0 || paren < byAt)) {
    const close = low.indexOf(')', paren);
    const inner = low.slice(paren + 1, close < 0 ? low.length : close);
    if (inner.startsWith('helo')) helo = wordAt(inner, 4);
    else {
      const w = wordAt(inner, 0);
      if (w === 'unknown' || w === '') sink.tok(w === 'unknown' ? 'H*r:nordns' : 'H*r:rdns:none');
      else if (!IPV4.test(w) && w.includes('.')) rdns = w;
    }
  }
  const ht = hostToken(helo);
  if (ht) sink.tok('H*r:helo:', ht);
  if (rdns) {
    const rd = registeredDomain(rdns);
    sink.tok('H*r:rdns:', rd);
    if (ht && ht !== 'ip' && ht !== 'nodot' && ht !== rd) sink.tok('H*r:helomismatch');
  }
  const m = IPV4.exec(low);
  if (m) {
    const a = +m[1]!;
    const b = +m[2]!;
    const cls = ipClass(a, b);
    sink.tok('H*r:ipclass:', cls);
    if (cls === 'public') sink.tok('H*r:ip:', a + '.' + b);
  }
  const withAt = keyword(low, 'with');
  const proto = withAt < 0 ? '' : wordAt(low, withAt + 4);
  if (proto) sink.tok('H*r:with:', proto.slice(0, 16));
  const by = byAt < 0 ? '' : wordAt(low, byAt + 2);
  if (by) sink.tok('H*r:by:', hostToken(by));
}

/** The first Authentication-Results: "authserv-id; spf=pass …; dkim=fail …". */
export function authTokens(sink: TokenSink, v: string, auth: HeaderFacts['auth']): void {
  const parts = (v.length > 4096 ? v.slice(0, 4096) : v).replace(/\([^()]*\)/g, ' ').split(';');
  for (let k = 1; k < parts.length && k < 32; k++) {
    const m = /^\s*([a-z0-9_.-]+)\s*=\s*([a-z0-9_-]+)/i.exec(parts[k]!);
    if (!m) continue;
    const method = m[1]!.toLowerCase();
    const result = m[2]!.toLowerCase();
    sink.tok('auth:', method + '=' + result);
    if (method === 'spf' || method === 'dmarc' || method === 'arc') auth[method] ??= result;
    else if (method === 'dkim' && (auth.dkim === undefined || result === 'pass')) auth.dkim = result;
  }
}

/** Comments out ("(EDT)"); [^()] keeps the regex linear on "((((((…". */
function uncomment(s: string): string {
  return s.slice(0, 200).replace(/\([^()]*\)/g, '').trim();
}

/**
 * date:missing, date:invalid, date:badtz (offset beyond ±14:59), and date:future / date:past
 * against the newest Received hop's timestamp (more than a day ahead, more than a week behind).
 * Comparing with the hop, not the clock, keeps features a pure function of the message. Returns
 * whether anything was odd.
 */
export function dateTokens(sink: TokenSink, date: string | undefined, firstReceived: string | undefined): boolean {
  if (date === undefined) {
    sink.tok('date:missing');
    return true;
  }
  let odd = false;
  const clean = uncomment(date);
  const t = Date.parse(clean);
  const tz = /([+-])(\d\d)(\d\d)$/.exec(clean);
  if (tz && (+tz[2]! > 14 || +tz[3]! >= 60)) {
    odd = true;
    sink.tok('date:badtz');
  }
  if (Number.isNaN(t)) {
    sink.tok('date:invalid');
    return true;
  }
  const semi = firstReceived === undefined ? -1 : firstReceived.lastIndexOf(';');
  const rt = semi < 0 ? NaN : Date.parse(uncomment(firstReceived!.slice(semi + 1)));
  if (Number.isNaN(rt)) return odd;
  if (t - rt > 24 * 3600e3) {
    sink.tok('date:future');
    return true;
  }
  if (rt - t > 7 * 24 * 3600e3) {
    sink.tok('date:past');
    return true;
  }
  return odd;
}
