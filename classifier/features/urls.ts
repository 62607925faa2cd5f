/**
 * URLs: found in text (http://, https://, ftp://, www.) and taken from HTML links, then turned
 * into tokens:
 *   url:d:HOST      host, lower case           url:rd:DOMAIN   registered domain (approximate)
 *   url:tld:TLD     top-level domain           url:ip          numeric host (dotted, hex, IPv6)
 *   url:port        explicit port              url:userinfo    "user@" before the host
 *   url:pcthost     %-escapes in the host      url:query       has a query string
 *   url:ext:php     extension of the last path segment
 *   url:redir       another URL inside it      url:long        longer than 120 characters
 *   url:p:WORD      up to 4 path words (3–20 letters)
 *   url:js          javascript: link           mailto:d:DOMAIN mailto: link domain
 * The registered domain uses a short list of second-level labels under two-letter country TLDs
 * (co.uk, com.au, …) instead of the Public Suffix List: wrong for some hosts, never slow.
 */
import type { TokenSink } from './sink.ts';

export const MAX_URLS = 64;
const MAX_URL_CHARS = 2048;

const SECOND_LEVEL = new Set(['co', 'com', 'net', 'org', 'gov', 'ac', 'edu', 'ne', 'or', 'go', 'ltd', 'plc', 'mil', 'nic', 'gob', 'sch', 'nom', 'gen', 'biz', 'info', 'firm', 'ind']);

/** Registered domain, approximately: the last two labels, three under co.uk-style suffixes. */
export function registeredDomain(host: string): string {
  const last = host.lastIndexOf('.');
  if (last <= 0) return host;
  const second = host.lastIndexOf('.', last - 1);
  if (second < 0) return host;
  if (host.length - last - 1 === 2 && SECOND_LEVEL.has(host.slice(second + 1, last))) {
    const third = host.lastIndexOf('.', second - 1);
    return third < 0 ? host : host.slice(third + 1);
  }
  return host.slice(second + 1);
}

export function tldOf(host: string): string {
  const last = host.lastIndexOf('.');
  return last < 0 ? '' : host.slice(last + 1);
}

function urlEndChar(c: number): boolean {
  // white space, controls, quotes, angle brackets and a few that never end a real URL unescaped
  return c <= 32 || c === 34 || c === 39 || c === 60 || c === 62 || c === 96 || c === 123 || c === 125 || c === 124 || c === 94 || c === 0xa0 || c === 0x3000;
}

function isAlnum(c: number): boolean {
  return (c >= 48 && c <= 57) || ((c | 0x20) >= 97 && (c | 0x20) <= 122);
}

/** The URL starting at `start`, its end found by scanning; trailing punctuation dropped. */
function takeUrl(text: string, start: number, from: number): { url: string; end: number } {
  let j = from;
  const limit = Math.min(text.length, start + MAX_URL_CHARS);
  while (j < limit && !urlEndChar(text.charCodeAt(j))) j++;
  let e = j;
  while (e > from) {
    const c = text.charCodeAt(e - 1);
    if (c === 46 || c === 44 || c === 59 || c === 58 || c === 33 || c === 63 || c === 41 || c === 93) e--;
    else break;
  }
  return { url: text.slice(start, e), end: j };
}

/**
 * Append URLs found in text[0, budget) to `out` (at most `max` in all). Linear: each of the two
 * searches ("://" and "www.") only moves forward.
 */
export function findUrls(text: string, out: string[], max: number, budget: number): void {
  const end = Math.min(text.length, budget);
  let i = 0;
  let nextScheme = text.indexOf('://');
  let nextWww = text.indexOf('www.');
  while (out.length < max) {
    if (nextScheme >= 0 && nextScheme < i) nextScheme = text.indexOf('://', i);
    if (nextWww >= 0 && nextWww < i) nextWww = text.indexOf('www.', i);
    const s = nextScheme < 0 || nextScheme >= end ? Infinity : nextScheme;
    const w = nextWww < 0 || nextWww >= end ? Infinity : nextWww;
    if (s === Infinity && w === Infinity) return;
    if (s <= w) {
      let b = s;
      while (b > 0 && s - b < 10 && (text.charCodeAt(b - 1) | 0x20) >= 97 && (text.charCodeAt(b - 1) | 0x20) <= 122) b--;
      const scheme = text.slice(b, s).toLowerCase();
      if (scheme === 'http' || scheme === 'https' || scheme === 'ftp') {
        const r = takeUrl(text, b, s + 3);
        if (r.url.length > scheme.length + 3) out.push(r.url);
        i = Math.max(r.end, s + 3);
      } else i = s + 3;
    } else {
      const prev = w > 0 ? text.charCodeAt(w - 1) : 32;
      if (!isAlnum(prev) && prev !== 46 && prev !== 47 && prev !== 64) {
        const r = takeUrl(text, w, w + 4);
        if (r.url.length > 4) out.push(r.url);
        i = Math.max(r.end, w + 4);
      } else i = w + 4;
    }
  }
}

const NUMERIC_HOST = /^(?:(?:0x[0-9a-f]*|\d+)\.){0,3}(?:0x[0-9a-f]*|\d+)$/;

/** Dotted quad, one decimal or hex number (http://3232235777/), hex octets, or [IPv6]. */
function isNumericHost(h: string): boolean {
  return h.charCodeAt(0) === 91 || NUMERIC_HOST.test(h);
}

export interface UrlFacts {
  host: string;
  ip: boolean;
}

/** Tokens for one URL; returns its host (and whether it is numeric), or null when it has none. */
export function urlTokens(url: string, sink: TokenSink): UrlFacts | null {
  const lower = url.length > 256 ? url.slice(0, 256).toLowerCase() : url.toLowerCase();
  if (lower.startsWith('mailto:')) {
    const at = lower.indexOf('@');
    if (at > 0) {
      let e = at + 1;
      while (e < lower.length && !urlEndChar(lower.charCodeAt(e)) && lower.charCodeAt(e) !== 63 && lower.charCodeAt(e) !== 38) e++;
      const d = lower.slice(at + 1, e);
      if (d.length > 0) sink.tok('mailto:d:', registeredDomain(d));
    }
    return null;
  }
  if (lower.startsWith('javascript:')) {
    sink.tok('url:js');
    return null;
  }
  const sep = lower.indexOf('://');
  let a: number;
  if (sep > 0 && sep < 12) a = sep + 3;
  else if (lower.startsWith('www.')) a = 0;
  else return null; // relative link or an unknown scheme
  let b = a;
  while (b < lower.length) {
    const c = lower.charCodeAt(b);
    if (c === 47 || c === 63 || c === 35 || c === 92) break;
    b++;
  }
  let host = lower.slice(a, b);
  const at = host.lastIndexOf('@');
  if (at >= 0) {
    sink.tok('url:userinfo');
    host = host.slice(at + 1);
  }
  if (host.charCodeAt(0) !== 91) {
    const colon = host.indexOf(':');
    if (colon >= 0) {
      sink.tok('url:port');
      host = host.slice(0, colon);
    }
  }
  if (host.includes('%')) {
    sink.tok('url:pcthost');
    try {
      host = decodeURIComponent(host);
    } catch {
      /* keep it escaped */
    }
  }
  while (host.endsWith('.')) host = host.slice(0, -1);
  if (host.length === 0) return null;
  if (host.length > 100) host = host.slice(0, 100);
  const ip = isNumericHost(host);
  if (ip) sink.tok('url:ip');
  else {
    sink.tok('url:d:', host);
    const rd = registeredDomain(host);
    if (rd !== host) sink.tok('url:rd:', rd);
    const tld = tldOf(host);
    if (tld.length > 0) sink.tok('url:tld:', tld);
  }
  const rest = lower.slice(b);
  if (rest.length > 0) {
    const q = rest.indexOf('?');
    if (q >= 0) sink.tok('url:query');
    const pathEnd = q >= 0 ? q : rest.indexOf('#') >= 0 ? rest.indexOf('#') : rest.length;
    const path = rest.slice(0, pathEnd);
    const dot = path.lastIndexOf('.');
    if (dot > path.lastIndexOf('/') && path.length - dot - 1 >= 1 && path.length - dot - 1 <= 5) sink.tok('url:ext:', path.slice(dot + 1));
    if (rest.includes('http%3a') || rest.includes('://') || rest.includes('http:')) sink.tok('url:redir');
    // Path words: runs of 3–20 letters (longer runs are cut into 20s, as a regex /[a-z]{3,20}/g would).
    let words = 0;
    for (let k = 0; k < path.length && words < 4; ) {
      const c = path.charCodeAt(k);
      if (c < 97 || c > 122) {
        k++;
        continue;
      }
      const w = k;
      while (k < path.length && k - w < 20 && path.charCodeAt(k) >= 97 && path.charCodeAt(k) <= 122) k++;
      if (k - w >= 3) {
        sink.tok('url:p:', path.slice(w, k));
        words++;
      }
    }
  }
  if (url.length > 120) sink.tok('url:long');
  return { host, ip };
}

/** "url:count:N" bucket for the number of distinct URLs. */
export function countBucket(n: number): string {
  return n === 0 ? '0' : n === 1 ? '1' : n === 2 ? '2' : n <= 5 ? '3-5' : n <= 10 ? '6-10' : n <= 20 ? '11-20' : '21+';
}
