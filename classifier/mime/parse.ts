/**
 * parseMessage: raw bytes → ParsedMessage. Pure, synchronous, never throws, linear in the input
 * times the nesting depth (which limits.maxDepth caps). Entities are walked with an explicit stack
 * in document order, so deep nesting costs no JS recursion.
 */
import type { Attachment, HeaderLine, ParseLimits, ParsedMessage } from '../types.ts';
import { decodeBase64, decodeCharset, decodeQuotedPrintable, defect, type Ctx } from './encodings.ts';
import { decodedValue, firstField, parseStructured, readHeaderBlock, validMediaType, type StructuredValue } from './headers.ts';
import { MAX_BOUNDARY, splitMultipart } from './multipart.ts';

export const DEFAULT_LIMITS: ParseLimits = { maxBytes: 10 * 1024 * 1024, maxHeaderBytes: 64 * 1024, maxParts: 100, maxDepth: 10 };

interface Entity {
  buf: Buffer;
  start: number;
  end: number;
  depth: number;
  /** Content type when the entity has none: text/plain, or message/rfc822 inside multipart/digest. */
  defaultType: string;
  /** The message itself: its fields become ParsedMessage.headers. */
  top?: boolean;
}

interface State extends Ctx {
  msg: ParsedMessage;
  truncated: boolean;
}

const EMPTY_PARAMS = new Map<string, string>();

function clampLimit(n: number, fallback: number): number {
  if (typeof n !== 'number' || Number.isNaN(n)) return fallback;
  return n < 0 ? 0 : n;
}

/** Decode the transfer encoding of buf[start, end); identity for 7bit/8bit/binary. */
function transferDecode(buf: Buffer, start: number, end: number, cte: string, st: State): Buffer {
  switch (cte) {
    case 'base64':
      return decodeBase64(buf, start, end, st);
    case 'quoted-printable':
      return decodeQuotedPrintable(buf, start, end, st);
    case '':
    case '7bit':
    case '8bit':
    case 'binary':
      return buf.subarray(start, end);
    default:
      defect(st, 'unknown-cte');
      return buf.subarray(start, end);
  }
}

function contentTypeOf(raw: string | undefined, fallback: string, st: State): StructuredValue {
  if (raw === undefined) return { value: fallback, params: EMPTY_PARAMS };
  const ct = parseStructured(raw, st);
  if (!validMediaType(ct.value)) {
    defect(st, 'bad-content-type');
    // "TEXT/PLAIN charset=US-ASCII" (a missing ';') still names its type in the first word.
    const first = ct.value.split(/[\s,]/, 1)[0] ?? '';
    if (validMediaType(first)) return { value: first, params: ct.params };
    // Keep the parameters (a charset is still useful) but read the body as plain text.
    return { value: 'text/plain', params: ct.params };
  }
  return ct;
}

/** Visit one entity: collect its text, record it as an attachment, or push its children. */
function visit(e: Entity, limits: ParseLimits, st: State, stack: Entity[]): void {
  const { buf, depth } = e;
  const block = readHeaderBlock(buf, e.start, e.end, limits.maxHeaderBytes, st);
  const fields = block.fields;
  let ctRaw: string | undefined;
  let cteRaw: string | undefined;
  let cdRaw: string | undefined;
  for (const f of fields) {
    if (f.name === 'content-type') ctRaw ??= f.raw;
    else if (f.name === 'content-transfer-encoding') cteRaw ??= f.raw;
    else if (f.name === 'content-disposition') cdRaw ??= f.raw;
  }
  if (e.top) {
    const headers: HeaderLine[] = st.msg.headers;
    for (const f of fields) headers.push({ name: f.name, value: decodedValue(f.raw, st) });
  }
  const ct = contentTypeOf(ctRaw, e.defaultType, st);
  let type = ct.value;
  const cte = cteRaw === undefined ? '' : cteRaw.trim().toLowerCase();
  const bodyStart = block.bodyStart;

  if (type.startsWith('multipart/')) {
    const boundary = ct.params.get('boundary');
    if (!boundary || boundary.length > MAX_BOUNDARY) {
      defect(st, 'multipart-no-boundary');
      type = 'text/plain';
    } else if (depth + 1 > limits.maxDepth) {
      defect(st, 'too-deep');
      st.truncated = true;
      return;
    } else {
      const room = Math.max(0, limits.maxParts - st.msg.stats.parts - stack.length);
      const split = splitMultipart(buf, bodyStart, e.end, Buffer.from(boundary, block.encoding), room, st);
      if (split === null) {
        defect(st, 'multipart-boundary-not-found');
        type = 'text/plain';
      } else {
        if (split.capped) {
          defect(st, 'too-many-parts');
          st.truncated = true;
        }
        const childType = type === 'multipart/digest' ? 'message/rfc822' : 'text/plain';
        const p = split.parts;
        for (let k = p.length - 2; k >= 0; k -= 2) stack.push({ buf, start: p[k]!, end: p[k + 1]!, depth: depth + 1, defaultType: childType });
        return;
      }
    }
  }

  const disposition = cdRaw === undefined ? undefined : parseStructured(cdRaw, st);
  const filename = disposition?.params.get('filename') ?? ct.params.get('name');
  const isAttachment = disposition?.value === 'attachment' || filename !== undefined;

  if (type === 'message/rfc822' || type === 'message/global') {
    // Forwarded mail is read even when marked as an attachment (Outlook marks them all so); it is
    // listed as an attachment too then.
    if (isAttachment) st.msg.attachments.push(attachmentOf(type, filename, e.end - bodyStart));
    if (depth + 1 > limits.maxDepth) {
      defect(st, 'too-deep');
      st.truncated = true;
      return;
    }
    const inner = cte === 'base64' || cte === 'quoted-printable' ? transferDecode(buf, bodyStart, e.end, cte, st) : undefined;
    if (inner) stack.push({ buf: inner, start: 0, end: inner.length, depth: depth + 1, defaultType: 'text/plain' });
    else stack.push({ buf, start: bodyStart, end: e.end, depth: depth + 1, defaultType: 'text/plain' });
    return;
  }

  if ((type === 'text/plain' || type === 'text/html') && !isAttachment) {
    const bytes = transferDecode(buf, bodyStart, e.end, cte, st);
    const text = decodeCharset(bytes, ct.params.get('charset') ?? '', st);
    (type === 'text/html' ? st.msg.htmlParts : st.msg.textParts).push(text);
    return;
  }

  st.msg.attachments.push(attachmentOf(type, filename, e.end - bodyStart));
}

/** Attachments are not decoded: size is the encoded size. Filenames are cut at 256 characters. */
function attachmentOf(type: string, filename: string | undefined, size: number): Attachment {
  const att: Attachment = { contentType: type, size: Math.max(0, size) };
  if (filename !== undefined) att.filename = filename.length > 256 ? filename.slice(0, 256) : filename;
  return att;
}

function emptyMessage(bytes: number, defects: string[]): ParsedMessage {
  return {
    headers: [],
    textParts: [],
    htmlParts: [],
    attachments: [],
    stats: { bytes, parts: 0, depth: 0, truncated: false, badCharset: false, defects },
  };
}

/** Buffers pass through; other byte views are wrapped without copying; anything else is empty. */
function asBuffer(raw: unknown): Buffer {
  if (Buffer.isBuffer(raw)) return raw;
  if (raw instanceof Uint8Array) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  return Buffer.alloc(0);
}

/**
 * Parse a raw message (RFC 5322 + MIME). Reads at most limits.maxBytes bytes, visits at most
 * limits.maxParts entities, nests at most limits.maxDepth levels (multipart and message/rfc822
 * both count). Problems become short strings in stats.defects; hitting a limit sets
 * stats.truncated.
 */
export function parseMessage(raw: Buffer, limits: ParseLimits): ParsedMessage {
  const lim: ParseLimits = {
    maxBytes: clampLimit(limits.maxBytes, DEFAULT_LIMITS.maxBytes),
    maxHeaderBytes: clampLimit(limits.maxHeaderBytes, DEFAULT_LIMITS.maxHeaderBytes),
    maxParts: clampLimit(limits.maxParts, DEFAULT_LIMITS.maxParts),
    maxDepth: clampLimit(limits.maxDepth, DEFAULT_LIMITS.maxDepth),
  };
  const defects: string[] = [];
  const st: State = { defects, badCharset: false, msg: emptyMessage(0, defects), truncated: false };
  try {
    let buf = asBuffer(raw);
    if (buf.length > lim.maxBytes) {
      buf = buf.subarray(0, Math.floor(lim.maxBytes));
      st.truncated = true;
      defect(st, 'max-bytes');
    }
    st.msg.stats.bytes = buf.length;
    const stack: Entity[] = [{ buf, start: 0, end: buf.length, depth: 0, defaultType: 'text/plain', top: true }];
    while (stack.length > 0) {
      const e = stack.pop()!;
      if (st.msg.stats.parts >= lim.maxParts) {
        defect(st, 'too-many-parts');
        st.truncated = true;
        break;
      }
      st.msg.stats.parts++;
      if (e.depth > st.msg.stats.depth) st.msg.stats.depth = e.depth;
      visit(e, lim, st, stack);
    }
  } catch (err) {
    // A bug, not an input problem: keep what was parsed and say so (the fuzz tests look for this).
    defect(st, 'internal-error:' + String((err as Error)?.message ?? err).slice(0, 60));
  }
  st.msg.stats.truncated = st.truncated;
  st.msg.stats.badCharset = st.badCharset;
  return st.msg;
}
