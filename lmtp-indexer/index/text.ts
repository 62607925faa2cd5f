/** Text made safe for PostgreSQL and bounded in bytes: shared by the parser and the writer. */

/** Strips NUL (PostgreSQL text cannot hold it) and replaces lone surrogates (not valid UTF-8). */
export function cleanText(s: string): string {
  return s.replace(/\0/g, '').replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** At most `maxBytes` of UTF-8, never splitting a character. */
export function capUtf8(s: string, maxBytes: number): string {
  if (s.length <= maxBytes / 3 || Buffer.byteLength(s) <= maxBytes) return s;
  const { read } = new TextEncoder().encodeInto(s, new Uint8Array(maxBytes));
  return s.slice(0, read);
}
