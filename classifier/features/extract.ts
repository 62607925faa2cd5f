/**
 * extractFeatures: ParsedMessage → MessageFeatures. Token families (see words.ts, urls.ts and
 * header-tokens.ts for each one's spelling):
 *   - header tokens, prefixed by field ("subject:free", "from:rd:example.com", "H*r:with:esmtp")
 *   - body words, bigrams, trigrams and special tokens from text/plain parts and the visible text
 *     of text/html parts, lower case, at most opts.maxBodyTokens words
 *   - URL tokens from the text and the HTML links ("url:rd:example.com", "url:ip", …)
 *   - MIME and HTML facts: mime:html-only, mime:text+html, mime:parts:B, mime:defect:X,
 *     mime:badcharset, html:tags:B (per 100 visible characters), html:hidden, html:hidden:B
 *   - attachments: attach:TYPE, attach:ext:EXT, attach:count:B, attach:double-ext, attach:risky
 *
 * `sequence` is the reservoir's reading order: the subject's words first (one step), then the body
 * words; unprefixed, so "free" in the subject and in the body is one input. Steps end at sentence
 * ends and blank lines or after 16 tokens, at most 128 steps.
 *
 * Cost is bounded by the caps whatever the input: body scanning stops after maxBodyTokens words or
 * CHARS_PER_TOKEN × maxBodyTokens characters, URL work after MAX_URLS URLs, header work is bounded
 * per field. HTML is converted in one linear pass over at most the parser's maxBytes.
 */
import { htmlToText } from '../mime/html.ts';
import type { FeatureOptions, MessageFeatures, ParsedMessage } from '../types.ts';
import { headerTokens, type HeaderFacts } from './header-tokens.ts';
import { TokenSink } from './sink.ts';
import { countBucket, findUrls, MAX_URLS, urlTokens } from './urls.ts';
import { BodyScanner, newCounts } from './words.ts';

/** Body characters scanned per allowed word: generous for real text, a hard stop for junk. */
export const CHARS_PER_TOKEN = 48;
const MAX_ATTACHMENTS = 32;
const RISKY_EXT = new Set(['exe', 'scr', 'pif', 'com', 'bat', 'cmd', 'vbs', 'vbe', 'js', 'jse', 'wsf', 'wsh', 'hta', 'lnk', 'jar', 'msi', 'ps1', 'reg', 'cpl', 'iso', 'img']);

const sink = new TokenSink();
const scanner = new BodyScanner();

/** log(1 + x) / log(1 + max), clamped to [0, 1]. */
function logScale(x: number, max: number): number {
  return Math.min(1, Math.log1p(Math.max(0, x)) / Math.log1p(max));
}

function ratio(a: number, b: number): number {
  return b > 0 ? Math.min(1, a / b) : 0;
}

export function extractFeatures(msg: ParsedMessage, opts: FeatureOptions & { debug?: boolean }): MessageFeatures {
  const maxWords = Math.max(0, Math.floor(opts.maxBodyTokens) || 0);
  const maxText = Math.max(0, Math.floor(opts.maxTextChars) || 0);
  sink.reset(opts.debug === true, maxWords);

  // ── headers ──
  const hf: HeaderFacts = {
    subject: '', fromDomain: undefined, replyToDomain: undefined, auth: {}, receivedHops: 0, replyToDiffers: false,
    dateAnomaly: false, missingMessageId: false, listHeaders: false, toCount: 0, headerCount: 0,
  };
  headerTokens(msg.headers, sink, hf);

  // ── body text: plain parts, then the visible text of HTML parts ──
  const counts = newCounts();
  scanner.sink = sink;
  scanner.counts = counts;
  scanner.onegrams = opts.onegrams;
  scanner.twograms = opts.twograms;
  scanner.threegrams = opts.threegrams;
  // The subject opens the sequence as its own step (its n-grams stay inside it).
  scanner.maxWords = Math.min(maxWords, 32);
  if (hf.subject.length > 0) scanner.scan(hf.subject, 1024);
  sink.breakStep();
  // Subject words are in the token set and the sequence, but the body statistics start here.
  counts.words = 0;
  counts.chars = counts.letters = counts.upper = counts.digits = counts.nonAscii = counts.exclaims = counts.money = 0;
  scanner.maxWords = maxWords;
  let budget = maxWords * CHARS_PER_TOKEN;
  const bodies: string[] = [];
  let textLen = 0;
  const pieces: string[] = [];
  const keepText = (s: string) => {
    if (textLen >= maxText || s.length === 0) return;
    const t = s.length > maxText - textLen ? s.slice(0, maxText - textLen) : s;
    pieces.push(t);
    textLen += t.length + 1;
  };
  for (const t of msg.textParts) {
    bodies.push(t);
    keepText(t);
  }
  const links: string[] = [];
  let tags = 0;
  let hidden = 0;
  let htmlChars = 0;
  for (const h of msg.htmlParts) {
    const r = htmlToText(h, Math.max(budget, maxText));
    tags += r.tags;
    hidden += r.hiddenTextChars;
    htmlChars += r.text.length;
    for (const l of r.links) if (links.length < MAX_URLS * 4) links.push(l);
    bodies.push(r.text);
    keepText(r.text);
  }
  for (const b of bodies) {
    if (budget <= 0 || counts.words >= maxWords) break;
    budget -= scanner.scan(b, budget);
    sink.breakStep();
  }

  // ── URLs ──
  const found: string[] = [];
  let urlBudget = maxWords * CHARS_PER_TOKEN;
  for (const b of bodies) {
    if (found.length >= MAX_URLS || urlBudget <= 0) break;
    findUrls(b, found, MAX_URLS, urlBudget);
    urlBudget -= b.length;
  }
  // `urls` lists absolute web URLs (with a host); mailto:, javascript: and relative links only
  // give tokens. Candidates are capped too, so a page of 10,000 distinct relative links stays cheap.
  const urls: string[] = [];
  const seenUrl = new Set<string>();
  const domains = new Set<string>();
  let ipUrls = 0;
  let tried = 0;
  for (const u of links.concat(found)) {
    if (urls.length >= MAX_URLS || tried >= MAX_URLS * 4) break;
    if (seenUrl.has(u)) continue;
    seenUrl.add(u);
    tried++;
    const r = urlTokens(u, sink);
    if (r === null) continue;
    urls.push(u);
    if (r.ip) ipUrls++;
    domains.add(r.host);
  }
  sink.tok('url:count:', countBucket(urls.length));

  // ── MIME structure, HTML, attachments ──
  const nText = msg.textParts.length;
  const nHtml = msg.htmlParts.length;
  if (nHtml > 0 && nText === 0) sink.tok('mime:html-only');
  else if (nHtml > 0) sink.tok('mime:text+html');
  else if (nText > 0) sink.tok('mime:text-only');
  else sink.tok('mime:no-text');
  sink.tok('mime:parts:', countBucket(msg.stats.parts));
  for (const d of msg.stats.defects) sink.tok('mime:defect:', (d.startsWith('internal-error') ? 'internal' : d));
  if (msg.stats.badCharset) sink.tok('mime:badcharset');
  if (msg.stats.truncated) sink.tok('mime:truncated');
  if (nHtml > 0) {
    const density = tags / (1 + htmlChars / 100);
    sink.tok('html:tags:', (density < 1 ? '0' : density < 3 ? '1-3' : density < 10 ? '3-10' : density < 30 ? '10-30' : '30+'));
    if (hidden > 0) {
      sink.tok('html:hidden');
      sink.tok('html:hidden:', (hidden < 50 ? 's' : hidden < 500 ? 'm' : 'l'));
    }
  }
  const attachmentTypes: string[] = [];
  const atts = msg.attachments;
  for (let k = 0; k < atts.length && k < MAX_ATTACHMENTS; k++) {
    const a = atts[k]!;
    const type = a.contentType.slice(0, 80);
    attachmentTypes.push(type);
    sink.tok('attach:', type);
    const fn = (a.filename ?? '').toLowerCase().trim();
    const dot = fn.lastIndexOf('.');
    if (dot >= 0 && fn.length - dot <= 6) {
      const ext = fn.slice(dot + 1);
      sink.tok('attach:ext:', ext);
      if (RISKY_EXT.has(ext)) sink.tok('attach:risky');
      const dot2 = fn.lastIndexOf('.', dot - 1);
      if (dot2 >= 0 && dot - dot2 <= 5 && dot - dot2 >= 2) sink.tok('attach:double-ext');
    }
  }
  if (atts.length > 0) sink.tok('attach:count:', countBucket(atts.length));

  // ── numbers ──
  const hasAuth = hf.auth.spf !== undefined || hf.auth.dkim !== undefined || hf.auth.dmarc !== undefined;
  const authVals = [hf.auth.spf, hf.auth.dkim, hf.auth.dmarc].filter((v): v is string => v !== undefined);
  let sLetters = 0;
  let sUpper = 0;
  let sExcl = 0;
  for (let i = 0; i < hf.subject.length && i < 512; i++) {
    const c = hf.subject.charCodeAt(i);
    if ((c | 0x20) >= 97 && (c | 0x20) <= 122) {
      sLetters++;
      if (c <= 90) sUpper++;
    } else if (c === 33) sExcl++;
  }
  const numeric: Record<string, number> = {
    bodyLength: logScale(counts.chars, 100_000),
    wordCount: logScale(counts.words, Math.max(1, maxWords)),
    capsRatio: ratio(counts.upper, counts.letters),
    exclamationRatio: ratio(counts.exclaims, counts.words + 1),
    digitRatio: ratio(counts.digits, counts.letters + counts.digits),
    nonAsciiRatio: ratio(counts.nonAscii, counts.letters),
    moneyCount: Math.min(1, counts.money / 5),
    urlCount: logScale(urls.length, MAX_URLS),
    urlDomainCount: logScale(domains.size, 32),
    ipUrl: ipUrls > 0 ? 1 : 0,
    hasHtml: nHtml > 0 ? 1 : 0,
    htmlOnly: nHtml > 0 && nText === 0 ? 1 : 0,
    hiddenTextRatio: ratio(hidden, hidden + htmlChars),
    htmlTagDensity: nHtml > 0 ? Math.min(1, tags / (1 + htmlChars / 100) / 30) : 0,
    attachmentCount: Math.min(1, atts.length / 5),
    receivedHops: Math.min(1, hf.receivedHops / 12),
    subjectLength: Math.min(1, hf.subject.length / 100),
    subjectCapsRatio: ratio(sUpper, sLetters),
    subjectExclamations: Math.min(1, sExcl / 3),
    replyToDiffers: hf.replyToDiffers ? 1 : 0,
    dateAnomaly: hf.dateAnomaly ? 1 : 0,
    missingMessageId: hf.missingMessageId ? 1 : 0,
    authPass: hasAuth ? authVals.filter((v) => v === 'pass').length / authVals.length : 0,
    authFail: authVals.some((v) => v === 'fail' || v === 'softfail' || v === 'permerror') ? 1 : 0,
    mimeDefects: Math.min(1, (msg.stats.defects.length + (msg.stats.badCharset ? 1 : 0)) / 5),
    listHeaders: hf.listHeaders ? 1 : 0,
    recipientCount: Math.min(1, hf.toCount / 10),
  };

  // One allocation for the three arrays (views into one buffer; each has its own byteOffset):
  // typed-array backing stores are allocated outside the JS heap and cost about a microsecond each.
  const nTok = sink.tokens.count * 2;
  const nSeq = sink.seq.count * 2;
  const all = new Uint32Array(nTok + nSeq + sink.steps.length);
  all.set(sink.tokens.data.subarray(0, nTok));
  all.set(sink.seq.data.subarray(0, nSeq), nTok);
  for (let k = 0; k < sink.steps.length; k++) all[nTok + nSeq + k] = sink.steps[k]!;
  const out: MessageFeatures = {
    tokens: all.subarray(0, nTok),
    sequence: all.subarray(nTok, nTok + nSeq),
    steps: all.subarray(nTok + nSeq),
    text: pieces.join('\n'),
    subject: hf.subject,
    urls,
    urlDomains: [...domains],
    auth: hf.auth,
    html: { tags, hiddenTextChars: hidden, textChars: htmlChars },
    attachmentTypes,
    numeric,
  };
  if (hf.fromDomain !== undefined) out.fromDomain = hf.fromDomain;
  if (hf.replyToDomain !== undefined) out.replyToDomain = hf.replyToDomain;
  out.debugTokens = sink.debug ?? [];
  return out;
}
