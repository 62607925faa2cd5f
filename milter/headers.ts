/**
 * Header modification semantics, exactly as Postfix implements them (cleanup_milter.c):
 * - CHGHEADER's index counts headers *of that name* in the message as received, from 1;
 *   an empty value deletes the header. Deleting several from the lowest index would shift the
 *   later ones, so we delete from the highest index down.
 * - INSHEADER index 0 puts a header at the very top: where trace headers (Received,
 *   Authentication-Results, our X-Ceerion-Milter) belong.
 * - Folded values use "\n" followed by whitespace; Postfix adds the "\r".
 */
import type { Modification } from './protocol/responses.ts';

export interface HeaderField {
  name: string;
  /** The value as received, without the single space after the colon. */
  value: string;
  /** Everything after the colon exactly as received (leading space included), for byte-exact DKIM. */
  raw?: string;
}

/**
 * The header block as it was on the wire: `Name:raw\r\n` per field, folded lines with CRLF.
 * Postfix hands folded values to milters with bare LF line breaks; the message had CRLF.
 */
export function rawHeaderBlock(headers: readonly HeaderField[]): Buffer {
  let out = '';
  for (const h of headers) out += `${h.name}:${(h.raw ?? ` ${h.value}`).replace(/\r?\n/g, '\r\n')}\r\n`;
  return Buffer.from(out + '\r\n', 'utf8');
}

const sameName = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/** 1-based per-name indexes of every header called `name`. */
export function headerIndexes(headers: readonly HeaderField[], name: string): number[] {
  let n = 0;
  const out: number[] = [];
  for (const h of headers) if (sameName(h.name, name)) out.push(++n);
  return out;
}

/** CHGHEADER deletions for the headers called `name` that `match`, highest index first. */
export function deleteHeaders(
  headers: readonly HeaderField[],
  name: string,
  match: (h: HeaderField) => boolean = () => true,
): Modification[] {
  const mods: Modification[] = [];
  let n = 0;
  for (const h of headers) {
    if (!sameName(h.name, name)) continue;
    n++;
    if (match(h)) mods.push({ kind: 'chgheader', index: n, name, value: '' });
  }
  return mods.reverse();
}

/** Insert a trace header at the top of the message. */
export function prependHeader(name: string, value: string): Modification {
  return { kind: 'insheader', index: 0, name, value: foldHeader(name, value) };
}

/** Fold at "; " boundaries so no line exceeds ~78 characters; continuation is "\n\t". */
export function foldHeader(name: string, value: string, width = 78): string {
  const parts = value.split(/(?<=;) /);
  let line = name.length + 2;
  let out = '';
  for (const [i, part] of parts.entries()) {
    if (i > 0) {
      if (line + 1 + part.length > width) {
        out += '\n\t';
        line = 8;
      } else {
        out += ' ';
        line += 1;
      }
    }
    out += part;
    line += part.length;
  }
  return out;
}
