/**
 * Header blocks (RFC 5322 §2.2, §3.2.2 unfolding) and structured parameters (RFC 2045 §5.1
 * Content-Type, RFC 2183 Content-Disposition, RFC 2231 parameter continuations and charsets).
 */
import { isAscii, isUtf8 } from 'node:buffer';
import { decodeCharset, decodeEncodedWords, defect, type Ctx } from './encodings.ts';

/** One field as read: lower-case name, unfolded value, encoded-words NOT yet decoded. */
export interface RawField {
  name: string;
  raw: string;
}

export interface HeaderBlock {
  fields: RawField[];
  /** Offset of the first body byte (== end when there is no body). */
  bodyStart: number;
  /** How the block's bytes became strings: 'utf8' when they were valid UTF-8 (RFC 6532), else latin1. */
  encoding: 'utf8' | 'latin1';
}

/** Fields kept per block: a cap on top of maxHeaderBytes so a block of "a:\n" lines stays small. */
const MAX_FIELDS = 1000;
/** Longest field name we accept; a longer run of name characters is body text, not a header. */
const MAX_NAME = 128;

function isNameByte(c: number): boolean {
  return c > 32 && c < 127 && c !== 58;
}

/** Index of the end of the header block's blank line search when the cap was hit: body start or end. */
function skipToBody(buf: Buffer, from: number, end: number): number {
  // A view, so a part's search stops at the part's end instead of running through the message.
  const view = buf.subarray(from, end);
  const a = view.indexOf('\n\n');
  const b = view.indexOf('\n\r\n');
  const best = Math.min(a < 0 ? Infinity : a + 2, b < 0 ? Infinity : b + 3);
  return best === Infinity ? end : from + best;
}

/**
 * Read the header block of the entity buf[start, end). Lines end in LF or CRLF. A line that is
 * neither a field nor a continuation ends the block (defect "no-header-separator") and belongs to
 * the body, so a message without a blank line still yields its text. An mbox "From " line at the
 * very start is skipped. Past maxHeaderBytes the rest of the block is skipped with indexOf.
 */
export function readHeaderBlock(buf: Buffer, start: number, end: number, maxHeaderBytes: number, ctx: Ctx): HeaderBlock {
  const spans: number[] = []; // per field: nameStart, nameEnd, valueStart, valueEnd, folded(0/1)
  let pos = start;
  let bodyStart = end;
  const capEnd = start + Math.max(0, maxHeaderBytes);
  while (pos < end) {
    if (pos >= capEnd || spans.length >= MAX_FIELDS * 5) {
      defect(ctx, 'header-too-long');
      bodyStart = skipToBody(buf, pos > start ? pos - 1 : pos, end);
      break;
    }
    let nl = buf.indexOf(10, pos);
    if (nl < 0 || nl >= end) nl = end;
    const next = nl < end ? nl + 1 : end;
    let lineEnd = nl > pos && buf[nl - 1] === 13 ? nl - 1 : nl;
    if (lineEnd === pos) {
      bodyStart = next; // the blank line
      break;
    }
    // A field may not run past the cap: a single 10 MB header line is cut here.
    if (lineEnd > capEnd) lineEnd = capEnd;
    const c0 = buf[pos]!;
    if (c0 === 32 || c0 === 9) {
      if (spans.length > 0) {
        spans[spans.length - 2] = lineEnd;
        spans[spans.length - 1] = 1;
      } else defect(ctx, 'leading-continuation');
      pos = next;
      continue;
    }
    let j = pos;
    const nameLimit = Math.min(lineEnd, pos + MAX_NAME);
    while (j < nameLimit && isNameByte(buf[j]!)) j++;
    const nameEnd = j;
    while (j < nameLimit && (buf[j] === 32 || buf[j] === 9)) j++; // obsolete "Name : value"
    if (nameEnd > pos && j < lineEnd && buf[j] === 58) {
      spans.push(pos, nameEnd, j + 1, lineEnd, 0);
      pos = next;
      continue;
    }
    if (pos === start && lineEnd - pos > 5 && buf.toString('latin1', pos, pos + 5) === 'From ') {
      pos = next; // mbox separator
      continue;
    }
    defect(ctx, 'no-header-separator');
    bodyStart = pos;
    break;
  }
  const hdrEnd = Math.min(pos, end);
  const block = buf.subarray(start, hdrEnd);
  const encoding = isAscii(block) || !isUtf8(block) ? 'latin1' : 'utf8';
  const fields: RawField[] = [];
  for (let k = 0; k < spans.length; k += 5) {
    const name = buf.toString('latin1', spans[k]!, spans[k + 1]!).toLowerCase();
    let raw = buf.toString(encoding, spans[k + 2]!, spans[k + 3]!);
    if (spans[k + 4] === 1) raw = raw.replace(/\r?\n/g, '');
    fields.push({ name, raw: raw.trim() });
  }
  return { fields, bodyStart, encoding };
}

/** The raw value of the first field named `name` (lower case). */
export function firstField(fields: RawField[], name: string): string | undefined {
  for (const f of fields) if (f.name === name) return f.raw;
  return undefined;
}

// ───────────────────────── parameters ─────────────────────────

export interface StructuredValue {
  /** Lower-case value before the first ';' ("text/plain", "attachment"). */
  value: string;
  /** Lower-case parameter names → decoded values. */
  params: Map<string, string>;
}

const MAX_PARAMS = 32;
const MAX_SECTIONS = 64;

interface Section {
  n: number;
  encoded: boolean;
  text: string;
}

function pctDecode(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 37 && i + 2 < s.length) {
      const v = parseInt(s.slice(i + 1, i + 3), 16);
      if (!Number.isNaN(v)) {
        out.push(v);
        i += 2;
        continue;
      }
    }
    if (c < 0x80) out.push(c);
    else for (const b of Buffer.from(s[i]!, 'utf8')) out.push(b);
  }
  return Buffer.from(out);
}

/**
 * Parse `value; a=b; c="d; e"; f*=utf-8''%E2%82%AC; g*0=x; g*1=y`. Quoted strings honour
 * backslash escapes; RFC 2231 sections are joined in order and percent-decoded in the charset the
 * first section names. Plain values may hold RFC 2047 encoded-words (Outlook does this for
 * filenames), which are decoded too. Single pass; at most MAX_PARAMS parameters.
 */
export function parseStructured(raw: string, ctx: Ctx): StructuredValue {
  const len = raw.length;
  let i = raw.indexOf(';');
  if (i < 0) i = len;
  const value = raw.slice(0, i).trim().toLowerCase();
  const params = new Map<string, string>();
  const sections = new Map<string, Section[]>();
  let count = 0;
  while (i < len && count < MAX_PARAMS) {
    while (i < len && (raw.charCodeAt(i) === 59 || raw.charCodeAt(i) <= 32)) i++;
    const nameStart = i;
    while (i < len && raw.charCodeAt(i) !== 61 && raw.charCodeAt(i) !== 59) i++;
    const name = raw.slice(nameStart, i).trim().toLowerCase();
    if (i >= len || raw.charCodeAt(i) !== 61) continue; // "name" without "=": skip it
    i++;
    while (i < len && (raw.charCodeAt(i) === 32 || raw.charCodeAt(i) === 9)) i++;
    let text: string;
    let quoted = false;
    if (raw.charCodeAt(i) === 34) {
      quoted = true;
      i++;
      let s = '';
      let from = i;
      while (i < len && raw.charCodeAt(i) !== 34) {
        if (raw.charCodeAt(i) === 92 && i + 1 < len) {
          s += raw.slice(from, i);
          i++;
          from = i;
        }
        i++;
      }
      text = s + raw.slice(from, i);
      i++; // closing quote
      while (i < len && raw.charCodeAt(i) !== 59) i++;
    } else {
      const from = i;
      while (i < len && raw.charCodeAt(i) !== 59) i++;
      text = raw.slice(from, i).trim();
    }
    if (name.length === 0) continue;
    count++;
    const star = name.indexOf('*');
    if (star < 0) {
      if (!params.has(name)) params.set(name, quoted || text.includes('=?') ? decodeEncodedWords(text, ctx) : text);
      continue;
    }
    // RFC 2231: name*=…, name*0=…, name*1*=…
    const base = name.slice(0, star);
    const rest = name.slice(star + 1);
    const encoded = rest === '' || rest.endsWith('*');
    const n = rest === '' || rest === '*' ? 0 : parseInt(rest, 10);
    if (Number.isNaN(n)) continue;
    let list = sections.get(base);
    if (!list) sections.set(base, (list = []));
    if (list.length < MAX_SECTIONS) list.push({ n, encoded, text });
  }
  for (const [base, list] of sections) {
    list.sort((a, b) => a.n - b.n);
    let charset = '';
    const bytes: Buffer[] = [];
    let plain = '';
    for (let k = 0; k < list.length; k++) {
      const sec = list[k]!;
      let t = sec.text;
      if (sec.encoded && k === 0) {
        const q1 = t.indexOf("'");
        const q2 = q1 >= 0 ? t.indexOf("'", q1 + 1) : -1;
        if (q2 >= 0) {
          charset = t.slice(0, q1);
          t = t.slice(q2 + 1);
        }
      }
      if (sec.encoded) bytes.push(pctDecode(t));
      else bytes.push(Buffer.from(t, 'utf8'));
      plain += t;
    }
    // The RFC 2231 form wins over a plain one (mailers send both for old readers).
    params.set(base, charset || list.some((s) => s.encoded) ? decodeCharset(Buffer.concat(bytes), charset || 'utf-8', ctx) : plain);
  }
  return { value, params };
}

/** A media type is "type/subtype" of token characters; anything else is invalid. */
export function validMediaType(t: string): boolean {
  const slash = t.indexOf('/');
  if (slash <= 0 || slash === t.length - 1 || t.length > 128) return false;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (i !== slash && (c <= 32 || c >= 127 || c === 47 || c === 34 || c === 40 || c === 41 || c === 44 || c === 58 || c === 59 || c === 60 || c === 62 || c === 64 || c === 91 || c === 92 || c === 93 || c === 61 || c === 63)) return false;
  }
  return true;
}

/** Decode a top-level field for ParsedMessage.headers (encoded-words only when present). */
export function decodedValue(raw: string, ctx: Ctx): string {
  return raw.includes('=?') ? decodeEncodedWords(raw, ctx) : raw;
}
