/**
 * Header tokens, in the spirit of SpamAssassin's Bayes header tokens (prefix = field):
 *   subject:WORD, subject:none, subject:len:B, subject:allcaps, subject:!, subject:$
 *   from:d:DOMAIN, from:rd:REG, from:tld:TLD, from:lp:SHAPE, from:name:WORD, from:noname,
 *     from:name-has-@, from:invalid            (SHAPE: a=lower A=upper 9=digit, runs collapsed)
 *   replyto:rd:REG, replyto:differs, rpath:rd:REG, rpath:null, rpath:differs, sender:rd:REG
 *   to:n:B, cc:n:B, to:none, to:undisclosed, to:eqfrom
 *   mid:missing, mid:d:REG, mid:lp:SHAPE, mid:nodomain, mid:eqfrom
 *   xmailer:WORD, ua:WORD, mailer:none, prio:N, msprio:WORD, precedence:WORD
 *   ct:TYPE, ct:charset:CS, cte:X, ct:boundary:SHAPE
 *   list:yes, list:unsub, list:id:ID
 *   H*r:hops:B, H*r:helo:REG|ip|nodot, H*r:rdns:REG, H*r:nordns, H*r:helomismatch,
 *     H*r:ip:A.B, H*r:ipclass:private|loopback|public, H*r:with:PROTO, H*r:by:REG
 *   date:missing, date:invalid, date:future, date:past, date:badtz
 *   auth:METHOD=RESULT, auth:absent           (first Authentication-Results: ours)
 *   hdr:NAME for a fixed list of telling fields, hdr:missing:NAME for expected ones
 * Corpus-collection artefacts (Delivered-To, X-Spam-*, X-Keywords, Delivery-Date, …) are
 * deliberately not tokenised: a filter that learns them learns the collector, not the mail.
 */
import type { HeaderLine } from '../types.ts';
import { prefix } from './hash.ts';
import type { TokenSink } from './sink.ts';
import { countBucket, registeredDomain, tldOf } from './urls.ts';
import { authTokens, dateTokens, receivedTokens } from './received.ts';
import { CLASS, headerWords } from './words.ts';

const P_SUBJECT = prefix('subject:');
const P_FROM_NAME = prefix('from:name:');
const P_XMAILER = prefix('xmailer:');
const P_UA = prefix('ua:');

/** Fields whose mere presence says something about the sender's software or habits. */
const TELLING = new Set([
  'x-mailer', 'user-agent', 'x-priority', 'x-msmail-priority', 'x-mimeole', 'importance', 'organization',
  'in-reply-to', 'references', 'mime-version', 'content-class', 'thread-index', 'x-originating-ip',
  'list-id', 'list-unsubscribe', 'precedence', 'mail-followup-to', 'x-authentication-warning', 'reply-to',
  'sender', 'errors-to', 'x-sender', 'cc', 'disposition-notification-to', 'x-confirm-reading-to',
  'return-receipt-to', 'x-library', 'x-mailing-list', 'x-msmail-priority', 'x-originalarrivaltime',
  'x-antiabuse', 'x-abuse-info', 'x-ms-has-attach', 'x-ms-tnef-correlator', 'x-unsent', 'comments',
]);
const EXPECTED = ['date', 'message-id', 'to', 'mime-version'];

export interface HeaderFacts {
  subject: string;
  fromDomain: string | undefined;
  replyToDomain: string | undefined;
  auth: { spf?: string; dkim?: string; dmarc?: string; arc?: string };
  receivedHops: number;
  replyToDiffers: boolean;
  dateAnomaly: boolean;
  missingMessageId: boolean;
  listHeaders: boolean;
  toCount: number;
  headerCount: number;
}

function bucket(n: number): string {
  return countBucket(n);
}

/** a=lower, A=upper, 9=digit, other characters kept; runs collapsed; at most `max` characters. */
export function shape(s: string, max = 10): string {
  let out = '';
  let last = -1;
  for (let i = 0; i < s.length && out.length < max; i++) {
    const c = s.charCodeAt(i);
    const cl = CLASS[c]!;
    const ch = cl === 2 ? 57 : cl === 1 || cl === 3 ? (c >= 65 && c <= 90 ? 65 : 97) : c;
    if (ch !== last) out += String.fromCharCode(ch);
    last = ch;
  }
  return out;
}

export interface Address {
  name: string;
  local: string;
  domain: string;
}

/** Characters that end a bare address: white space , ; : ( ) < > " */
function addrStop(c: number): boolean {
  return c <= 32 || c === 44 || c === 59 || c === 58 || c === 40 || c === 41 || c === 60 || c === 62 || c === 34;
}

/** First address of a field: "Name <local@domain>", "local@domain (Name)", or "<>". */
export function parseAddress(v: string): Address | null {
  const s = v.length > 1024 ? v.slice(0, 1024) : v;
  let name = '';
  let addr: string;
  const lt = s.lastIndexOf('<');
  const gt = lt >= 0 ? s.indexOf('>', lt) : -1;
  if (lt >= 0) {
    addr = s.slice(lt + 1, gt < 0 ? s.length : gt).trim();
    name = s.slice(0, lt).trim();
  } else {
    const at = s.indexOf('@');
    if (at < 0) return s.trim().length > 0 ? { name: s.trim(), local: '', domain: '' } : null;
    let a = at;
    while (a > 0 && !addrStop(s.charCodeAt(a - 1))) a--;
    let b = at;
    while (b < s.length && !addrStop(s.charCodeAt(b))) b++;
    addr = s.slice(a, b);
    const p1 = s.indexOf('(');
    const p2 = p1 >= 0 ? s.indexOf(')', p1) : -1;
    if (p1 >= 0 && p2 > p1) name = s.slice(p1 + 1, p2).trim();
  }
  if (name.length > 1 && name.charCodeAt(0) === 34 && name.charCodeAt(name.length - 1) === 34) name = name.slice(1, -1);
  const at = addr.lastIndexOf('@');
  const local = at < 0 ? addr : addr.slice(0, at);
  let domain = at < 0 ? '' : addr.slice(at + 1).toLowerCase().trim();
  while (domain.endsWith('.')) domain = domain.slice(0, -1);
  return { name, local, domain };
}

function domainTokens(sink: TokenSink, p: string, domain: string): string {
  const rd = registeredDomain(domain);
  sink.tok(p + 'rd:', rd);
  return rd;
}

/** Tokens for the top-level header fields; fills `f`. */
export function headerTokens(headers: HeaderLine[], sink: TokenSink, f: HeaderFacts): void {
  let subject: string | undefined;
  let from: string | undefined;
  let replyTo: string | undefined;
  let rpath: string | undefined;
  let sender: string | undefined;
  let to: string | undefined;
  let cc: string | undefined;
  let mid: string | undefined;
  let date: string | undefined;
  let ar: string | undefined;
  let ct: string | undefined;
  let firstReceived: string | undefined;
  let hops = 0;
  let hasMailer = false;
  const n = Math.min(headers.length, 500);
  f.headerCount = n;
  const seen = new Set<string>();
  for (let k = 0; k < n; k++) {
    const { name, value } = headers[k]!;
    if (TELLING.has(name) && !seen.has(name)) sink.tok('hdr:', name);
    seen.add(name);
    switch (name) {
      case 'subject': subject ??= value; break;
      case 'from': from ??= value; break;
      case 'reply-to': replyTo ??= value; break;
      case 'return-path': rpath ??= value; break;
      case 'sender': sender ??= value; break;
      case 'to': to ??= value; break;
      case 'cc': cc ??= value; break;
      case 'message-id': mid ??= value; break;
      case 'date': date ??= value; break;
      case 'authentication-results': ar ??= value; break;
      case 'content-type': ct ??= value; break;
      case 'received':
        if (hops === 0) firstReceived = value;
        if (hops < 10) receivedTokens(sink, value);
        hops++;
        break;
      case 'x-mailer':
        hasMailer = true;
        headerWords(sink, P_XMAILER, value, 6);
        break;
      case 'user-agent':
        hasMailer = true;
        headerWords(sink, P_UA, value, 6);
        break;
      case 'x-priority': sink.tok('prio:', value.trim().slice(0, 1)); break;
      case 'x-msmail-priority': sink.tok('msprio:', value.trim().toLowerCase().slice(0, 12)); break;
      case 'precedence': sink.tok('precedence:', value.trim().toLowerCase().slice(0, 12)); break;
      case 'list-id': sink.tok('list:id:', value.slice(0, 200).replace(/^.*</, '').replace(/>.*$/, '').trim().toLowerCase().slice(0, 80)); break;
    }
  }
  for (const e of EXPECTED) if (!seen.has(e)) sink.tok('hdr:missing:', e);
  if (!hasMailer) sink.tok('mailer:none');
  f.listHeaders = seen.has('list-id') || seen.has('list-unsubscribe') || seen.has('list-post') || seen.has('mailing-list');
  if (f.listHeaders) sink.tok('list:yes');
  if (seen.has('list-unsubscribe')) sink.tok('list:unsub');

  // Subject
  const subj = (subject ?? '').trim();
  f.subject = subj;
  if (subj.length === 0) sink.tok('subject:none');
  else {
    headerWords(sink, P_SUBJECT, subj, 30);
    sink.tok('subject:len:', (subj.length < 10 ? 's' : subj.length < 40 ? 'm' : subj.length < 80 ? 'l' : 'xl'));
    if (subj.includes('!')) sink.tok('subject:!');
    if (subj.includes('$')) sink.tok('subject:$');
    let letters = 0;
    let upper = 0;
    for (let i = 0; i < subj.length && i < 512; i++) {
      const c = subj.charCodeAt(i);
      if (CLASS[c] === 1) {
        letters++;
        if (c >= 65 && c <= 90) upper++;
      }
    }
    if (letters >= 5 && upper / letters > 0.8) sink.tok('subject:allcaps');
  }

  // From and friends
  const fa = from === undefined ? null : parseAddress(from);
  let fromRd = '';
  if (!fa || fa.domain === '') sink.tok('from:invalid');
  else {
    f.fromDomain = fa.domain;
    sink.tok('from:d:', fa.domain.slice(0, 100));
    fromRd = domainTokens(sink, 'from:', fa.domain);
    sink.tok('from:tld:', tldOf(fa.domain));
    sink.tok('from:lp:', shape(fa.local));
  }
  if (fa) {
    if (fa.name === '') sink.tok('from:noname');
    else {
      headerWords(sink, P_FROM_NAME, fa.name, 4);
      if (fa.name.includes('@')) sink.tok('from:name-has-@');
    }
  }
  const ra = replyTo === undefined ? null : parseAddress(replyTo);
  if (ra && ra.domain) {
    f.replyToDomain = ra.domain;
    const rd = domainTokens(sink, 'replyto:', ra.domain);
    if (fromRd && rd !== fromRd) {
      f.replyToDiffers = true;
      sink.tok('replyto:differs');
    }
  }
  if (rpath !== undefined) {
    const pa = parseAddress(rpath);
    if (!pa || pa.domain === '') sink.tok('rpath:null');
    else if (domainTokens(sink, 'rpath:', pa.domain) !== fromRd) sink.tok('rpath:differs');
  }
  if (sender !== undefined) {
    const sa = parseAddress(sender);
    if (sa && sa.domain) domainTokens(sink, 'sender:', sa.domain);
  }

  // Recipients
  const count = (v: string | undefined) => {
    if (v === undefined) return 0;
    let c = 0;
    for (let i = v.indexOf('@'); i >= 0 && c < 1000; i = v.indexOf('@', i + 1)) c++;
    return c;
  };
  f.toCount = count(to) + count(cc);
  if (to === undefined) sink.tok('to:none');
  else {
    sink.tok('to:n:', bucket(count(to)));
    if (/undisclosed/i.test(to.slice(0, 200))) sink.tok('to:undisclosed');
    const ta = parseAddress(to);
    if (ta && fa && ta.domain && ta.domain === fa.domain && ta.local.toLowerCase() === fa.local.toLowerCase()) sink.tok('to:eqfrom');
  }
  if (cc !== undefined) sink.tok('cc:n:', bucket(count(cc)));

  // Message-ID
  if (mid === undefined || mid.trim() === '') {
    f.missingMessageId = true;
    sink.tok('mid:missing');
  } else {
    const m = mid.trim().slice(0, 500).replace(/^</, '').replace(/>.*$/, '');
    const at = m.lastIndexOf('@');
    if (at < 0) sink.tok('mid:nodomain');
    else {
      const d = m.slice(at + 1).toLowerCase();
      const rd = registeredDomain(d);
      sink.tok('mid:d:', rd.slice(0, 100));
      if (fromRd && rd === fromRd) sink.tok('mid:eqfrom');
    }
    sink.tok('mid:lp:', shape(at < 0 ? m : m.slice(0, at), 12));
  }

  // Content type of the message itself
  if (ct !== undefined) {
    const semi = ct.indexOf(';');
    sink.tok('ct:', (semi < 0 ? ct : ct.slice(0, semi)).trim().toLowerCase().slice(0, 60));
    const cs = /charset\s*=\s*"?([^";\s]+)/i.exec(ct.slice(0, 1000));
    if (cs) sink.tok('ct:charset:', cs[1]!.toLowerCase().slice(0, 40));
    const bd = /boundary\s*=\s*"?([^";]+)/i.exec(ct.slice(0, 1000));
    if (bd) sink.tok('ct:boundary:', shape(bd[1]!, 16));
  }
  const cte = headers.find((h) => h.name === 'content-transfer-encoding');
  if (cte) sink.tok('cte:', cte.value.trim().toLowerCase().slice(0, 20));

  // Received chain and date
  f.receivedHops = hops;
  sink.tok('H*r:hops:', bucket(hops));
  if (dateTokens(sink, date, firstReceived)) f.dateAnomaly = true;

  if (ar === undefined) sink.tok('auth:absent');
  else authTokens(sink, ar, f.auth);
}
