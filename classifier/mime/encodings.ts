/**
 * Byte-level decoders: base64 and quoted-printable transfer encodings (RFC 2045 §6), charsets
 * (WHATWG labels through TextDecoder) and RFC 2047 encoded-words. All are single pass over their
 * input, never throw, and report problems through a `Ctx` instead.
 */
import { isAscii, isUtf8 } from 'node:buffer';

/** What decoders report back to the parser: defects and the unknown-charset flag. */
export interface Ctx {
  defects: string[];
  badCharset: boolean;
}

const MAX_DEFECTS = 32;

/** Record a defect once (a message with 500 broken parts stays a short list). */
export function defect(ctx: Ctx, what: string): void {
  if (ctx.defects.length < MAX_DEFECTS && !ctx.defects.includes(what)) ctx.defects.push(what);
}

// ───────────────────────────── base64 ─────────────────────────────

/** Byte → 6-bit value; -1 whitespace, -2 '=', -3 anything else (garbage). */
const B64 = new Int8Array(256).fill(-3);
{
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < 64; i++) B64[alphabet.charCodeAt(i)] = i;
  // URL-safe alphabet too: some broken mailers emit it, and accepting it costs nothing.
  B64[45] = 62; // -
  B64[95] = 63; // _
  for (const c of [9, 10, 13, 32]) B64[c] = -1;
  B64[61] = -2;
}

/**
 * Tolerant base64: whitespace is skipped, garbage bytes are skipped (and reported), '=' ends a
 * quantum but decoding resumes after it, since concatenated base64 blocks occur in real mail (Node's
 * own decoder stops at the first '=' and would lose them).
 */
export function decodeBase64(src: Uint8Array, start: number, end: number, ctx: Ctx): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil(((end - start) * 3) / 4) + 3);
  let o = 0;
  let acc = 0;
  let bits = 0;
  let garbage = false;
  for (let i = start; i < end; i++) {
    const v = B64[src[i]!]!;
    if (v >= 0) {
      acc = ((acc << 6) | v) & 0xffffff;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out[o++] = (acc >>> bits) & 0xff;
      }
    } else if (v === -2) {
      bits = 0; // padding: drop the partial quantum, start fresh
    } else if (v === -3) {
      garbage = true;
    }
  }
  if (garbage) defect(ctx, 'bad-base64');
  return out.subarray(0, o);
}

// ───────────────────────── quoted-printable ─────────────────────────

/** Hex digit value, -1 otherwise; lower case accepted (RFC says upper, mailers don't care). */
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[65 + i] = 10 + i;
  HEX[97 + i] = 10 + i;
}

/** Quoted-printable: "=XX" bytes, "=" + line break is a soft break, a lone "=" is kept literally. */
export function decodeQuotedPrintable(src: Uint8Array, start: number, end: number, ctx: Ctx): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  let o = 0;
  let bad = false;
  for (let i = start; i < end; i++) {
    const c = src[i]!;
    if (c !== 61) {
      out[o++] = c;
      continue;
    }
    const h = i + 1 < end ? HEX[src[i + 1]!]! : -1;
    const l = i + 2 < end ? HEX[src[i + 2]!]! : -1;
    if (h >= 0 && l >= 0) {
      out[o++] = (h << 4) | l;
      i += 2;
      continue;
    }
    // Soft line break: "=", optional trailing blanks, then CRLF or LF (or end of input).
    let j = i + 1;
    while (j < end && (src[j] === 32 || src[j] === 9)) j++;
    if (j >= end) {
      i = j;
    } else if (src[j] === 10) {
      i = j;
    } else if (src[j] === 13 && j + 1 < end && src[j + 1] === 10) {
      i = j + 1;
    } else {
      bad = true;
      out[o++] = c;
    }
  }
  if (bad) defect(ctx, 'bad-qp');
  return out.subarray(0, o);
}

// ───────────────────────────── charsets ─────────────────────────────

/** Windows-1252 bytes 0x80–0x9F (WHATWG maps iso-8859-1 and us-ascii labels to windows-1252). */
const CP1252 =
  '\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f' +
  '\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178';
const C1 = /[\x80-\x9f]/g;
const C1_TEST = /[\x80-\x9f]/;

/**
 * windows-1252 by hand: TextDecoder goes through ICU and measured 20× slower than latin1Slice plus
 * a replace of the C1 range (which is usually empty).
 */
function decodeCp1252(buf: Buffer): string {
  const s = buf.toString('latin1');
  return C1_TEST.test(s) ? s.replace(C1, (ch) => CP1252[ch.charCodeAt(0) - 0x80]!) : s;
}

const decoders = new Map<string, TextDecoder | null>();
const MAX_DECODERS = 64;

/** A cached TextDecoder for a label, null when the label is unknown. */
function decoderFor(label: string): TextDecoder | null {
  let d = decoders.get(label);
  if (d !== undefined) return d;
  try {
    d = new TextDecoder(label);
  } catch {
    d = null;
  }
  // Labels come from the input, so the cache is bounded; unknown labels are cheap to retry.
  if (decoders.size < MAX_DECODERS) decoders.set(label, d);
  return d;
}

/** Charsets whose ASCII-range bytes are not ASCII (so the all-ASCII shortcut does not apply). */
function asciiCompatible(label: string): boolean {
  return !(
    label.startsWith('utf-16') ||
    label.startsWith('utf16') ||
    label.startsWith('utf-32') ||
    label.startsWith('ucs') ||
    label.startsWith('unicode') ||
    label.startsWith('iso-2022') ||
    label.startsWith('csiso2022') ||
    label === 'hz-gb-2312' ||
    label === 'utf-7'
  );
}

/** Normalise a charset parameter: lower case, no quotes, no RFC 2231 "*lang" suffix. */
export function normalizeCharset(cs: string | undefined): string {
  if (!cs) return '';
  let s = cs.trim().toLowerCase();
  const star = s.indexOf('*');
  if (star >= 0) s = s.slice(0, star);
  if (s.length > 0 && (s.charCodeAt(0) === 34 || s.charCodeAt(0) === 39)) s = s.replace(/["']/g, '');
  if (s.length > 40) s = s.slice(0, 40);
  // Windows font-charset names leak into mail as MIME charsets ("GB2312_CHARSET", "DEFAULT_CHARSET").
  if (s.endsWith('_charset')) s = s.slice(0, -8);
  return ALIASES.get(s) ?? s;
}

/** Labels seen in real mail that WHATWG does not know under that name. */
const ALIASES = new Map<string, string>([
  ['chinesebig5', 'big5'],
  ['ansi', 'windows-1252'],
  ['x-sjis', 'shift_jis'],
  ['x-euc-jp', 'euc-jp'],
  ['cp936', 'gbk'],
  ['ks_c_5601', 'euc-kr'],
  ['iso-8859-8-e', 'iso-8859-8'],
]);

/**
 * Bytes → string in `charset`. No or ASCII-ish charset: ASCII as is, else UTF-8 if the bytes are
 * valid UTF-8 (undeclared 8-bit mail is mostly UTF-8 today), else windows-1252. Unknown labels
 * decode as latin1 and set ctx.badCharset.
 */
export function decodeCharset(buf: Buffer, charset: string, ctx: Ctx): string {
  if (buf.length === 0) return '';
  const label = normalizeCharset(charset);
  if (label === 'utf-8' || label === 'utf8') return buf.toString('utf8');
  if (asciiCompatible(label) && isAscii(buf)) return buf.toString('latin1');
  switch (label) {
    case '':
    case 'us-ascii':
    case 'ascii':
    case 'ansi_x3.4-1968':
    case 'default':
      return isUtf8(buf) ? buf.toString('utf8') : decodeCp1252(buf);
    case 'iso-8859-1':
    case 'iso8859-1':
    case 'latin1':
    case 'windows-1252':
    case 'cp1252':
      return decodeCp1252(buf);
  }
  const d = decoderFor(label);
  if (d === null) {
    ctx.badCharset = true;
    return buf.toString('latin1');
  }
  return d.decode(buf);
}

// ─────────────────────── RFC 2047 encoded-words ───────────────────────

function hexAt(s: string, i: number): number {
  const c = s.charCodeAt(i); // NaN past the end, which fails the range test
  return c < 256 ? HEX[c]! : -1;
}

/** Decode the text of one encoded-word into bytes appended to `out`. */
function wordBytes(enc: number, text: string, out: number[], ctx: Ctx): void {
  if (enc === 98 /* b */) {
    const b = decodeBase64(Buffer.from(text, 'latin1'), 0, text.length, ctx);
    for (let i = 0; i < b.length; i++) out.push(b[i]!);
    return;
  }
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 95) out.push(32);
    else if (c === 61 && hexAt(text, i + 1) >= 0 && hexAt(text, i + 2) >= 0) {
      out.push((hexAt(text, i + 1) << 4) | hexAt(text, i + 2));
      i += 2;
    } else if (c < 0x80) out.push(c);
    else for (const b of Buffer.from(text[i]!, 'utf8')) out.push(b);
  }
}

function isBlank(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13 && c !== 10) return false;
  }
  return true;
}

/**
 * Replace RFC 2047 encoded-words ("=?charset?B|Q?text?=") in a header value. Adjacent words
 * separated only by whitespace join (the whitespace goes), and words of the same charset are
 * decoded together, so a multi-byte character split across two words survives. Linear: when no
 * "?=" closes a candidate there can be no later word either, so the scan stops.
 */
export function decodeEncodedWords(s: string, ctx: Ctx): string {
  let i = s.indexOf('=?');
  if (i < 0) return s;
  let out = '';
  let last = 0; // s[last..] not yet copied
  let pendingCs = ''; // charset of bytes waiting in `pending`
  const pending: number[] = [];
  let pendingEnd = -1; // where the last decoded word ended, -1 if none pending
  const flush = () => {
    if (pending.length > 0) out += decodeCharset(Buffer.from(pending), pendingCs, ctx);
    pending.length = 0;
    pendingEnd = -1;
  };
  while (i >= 0) {
    const q1 = s.indexOf('?', i + 2);
    if (q1 < 0 || q1 - i > 80) {
      // Not an encoded word (charset names are short); try the next "=?".
      i = q1 < 0 ? -1 : s.indexOf('=?', i + 2);
      continue;
    }
    const enc = s.charCodeAt(q1 + 1) | 0x20;
    if ((enc !== 98 && enc !== 113) || s.charCodeAt(q1 + 2) !== 63) {
      i = s.indexOf('=?', i + 2);
      continue;
    }
    const close = s.indexOf('?=', q1 + 3);
    if (close < 0) break;
    const cs = normalizeCharset(s.slice(i + 2, q1));
    const adjacent = pendingEnd >= 0 && isBlank(s, pendingEnd, i);
    if (!adjacent || cs !== pendingCs) flush();
    if (!adjacent) out += s.slice(last, i);
    pendingCs = cs;
    wordBytes(enc, s.slice(q1 + 3, close), pending, ctx);
    pendingEnd = close + 2;
    last = close + 2;
    i = s.indexOf('=?', last);
  }
  flush();
  return out + s.slice(last);
}
