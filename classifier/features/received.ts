/**
 * Trace and authentication header tokens: Received hops, the Date field against the newest hop,
 * and our Authentication-Results. Spellings are listed in header-tokens.ts.
 */
import type { HeaderFacts } from './header-tokens.ts';
import type { TokenSink } from './sink.ts';
import { registeredDomain } from './urls.ts';
import { begin, finish, update } from './hash.ts';

function tok(sink: TokenSink, str: string): void {
  begin();
  update(str, 0, str.length);
  finish();
  sink.add(str);
}

function ipClass(a: number, b: number): string {
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'private';
  if (a === 127) return 'loopback';
  return 'public';
}

const IPV4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})/;

/** The first word after `key` in s (lower case, at most 64 characters), or ''. */
function wordAfter(s: string, key: string): string {
  const i = s.indexOf(key);
  if (i < 0) return '';
  let j = i + key.length;
  while (j < s.length && s.charCodeAt(j) === 32) j++;
  let k = j;
  while (k < s.length && k - j < 64) {
    const c = s.charCodeAt(k);
    if (c <= 32 || c === 40 || c === 41 || c === 59 || c === 91 || c === 93) break; // space ( ) ; [ ]
    k++;
  }
  return s.slice(j, k).toLowerCase();
}

function hostToken(h: string): string {
  if (h.length === 0) return '';
  if (h.charCodeAt(0) === 91 || IPV4.test(h)) return 'ip';
  if (!h.includes('.')) return 'nodot';
  return registeredDomain(h.replace(/\.$/, ''));
}

/** Tokens of one Received field. */
export function receivedTokens(sink: TokenSink, raw: string): void {
  // Folding leaves tabs and runs of blanks; one space between words makes the keyword search simple.
  const v = (raw.length > 1000 ? raw.slice(0, 1000) : raw).replace(/\s+/g, ' ');
  const low = v.toLowerCase();
  let helo = low.startsWith('from ') ? wordAfter(low, 'from ') : '';
  // Only the from-clause's comment ("from helo (rdns [ip])"), not "by host (8.9.3/8.9.3)".
  const byAt = low.indexOf(' by ');
  const paren = low.indexOf('(');
  let rdns = '';
  if (paren >= 0 && (byAt < 0 || paren < byAt)) {
    const inner = low.slice(paren + 1, Math.max(paren + 1, low.indexOf(')', paren)));
    if (inner.startsWith('helo ')) helo = wordAfter(inner, 'helo ');
    else {
      const w = inner.split(/[\s\[]/, 1)[0] ?? '';
      if (w === 'unknown' || w === '') tok(sink, w === 'unknown' ? 'H*r:nordns' : 'H*r:rdns:none');
      else if (!IPV4.test(w) && w.includes('.')) rdns = w;
    }
  }
  const ht = hostToken(helo);
  if (ht) tok(sink, 'H*r:helo:' + ht);
  if (rdns) {
    const rd = registeredDomain(rdns);
    tok(sink, 'H*r:rdns:' + rd);
    if (ht && ht !== 'ip' && ht !== 'nodot' && ht !== rd) tok(sink, 'H*r:helomismatch');
  }
  const m = IPV4.exec(v);
  if (m) {
    const a = +m[1]!;
    const b = +m[2]!;
    const cls = ipClass(a, b);
    tok(sink, 'H*r:ipclass:' + cls);
    if (cls === 'public') tok(sink, 'H*r:ip:' + a + '.' + b);
  }
  const proto = wordAfter(low, ' with ');
  if (proto) tok(sink, 'H*r:with:' + proto.slice(0, 16));
  const by = wordAfter(low, ' by ');
  if (by) tok(sink, 'H*r:by:' + hostToken(by));
}

/** The first Authentication-Results: "authserv-id; spf=pass …; dkim=fail …". */
export function authTokens(sink: TokenSink, v: string, auth: HeaderFacts['auth']): void {
  const parts = (v.length > 4096 ? v.slice(0, 4096) : v).replace(/\([^()]*\)/g, ' ').split(';');
  for (let k = 1; k < parts.length && k < 32; k++) {
    const m = /^\s*([a-z0-9_.-]+)\s*=\s*([a-z0-9_-]+)/i.exec(parts[k]!);
    if (!m) continue;
    const method = m[1]!.toLowerCase();
    const result = m[2]!.toLowerCase();
    tok(sink, 'auth:' + method + '=' + result);
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
    tok(sink, 'date:missing');
    return true;
  }
  let odd = false;
  const clean = uncomment(date);
  const t = Date.parse(clean);
  const tz = /([+-])(\d\d)(\d\d)$/.exec(clean);
  if (tz && (+tz[2]! > 14 || +tz[3]! >= 60)) {
    odd = true;
    tok(sink, 'date:badtz');
  }
  if (Number.isNaN(t)) {
    tok(sink, 'date:invalid');
    return true;
  }
  const semi = firstReceived === undefined ? -1 : firstReceived.lastIndexOf(';');
  const rt = semi < 0 ? NaN : Date.parse(uncomment(firstReceived!.slice(semi + 1)));
  if (Number.isNaN(rt)) return odd;
  if (t - rt > 24 * 3600e3) {
    tok(sink, 'date:future');
    return true;
  }
  if (rt - t > 7 * 24 * 3600e3) {
    tok(sink, 'date:past');
    return true;
  }
  return odd;
}
