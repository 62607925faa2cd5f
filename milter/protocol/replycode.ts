/**
 * SMFIR_REPLYCODE texts: 'ddd x.y.z text'. The MTA runs the text through a printf-like expander,
 * so a literal '%' must be doubled; the enhanced code's class must match the reply's first digit.
 */
import { MilterProtocolError } from './errors.ts';

const REPLY = /^([45])\d\d (?:([245])\.\d{1,3}\.\d{1,3} )?[^\r\n]*$/;

/** Build a validated reply; `text` is plain text, '%' is doubled here. */
export function buildReplyCode(code: number, enhanced: string | undefined, text: string): string {
  if (!Number.isInteger(code) || code < 400 || code > 599) {
    throw new RangeError(`reply code must be 4xx or 5xx, got ${code}`);
  }
  if (/[\r\n\0]/.test(text)) throw new RangeError('reply text must be a single line without NUL');
  const klass = String(code)[0];
  if (enhanced !== undefined) {
    if (!/^[45]\.\d{1,3}\.\d{1,3}$/.test(enhanced)) throw new RangeError(`bad enhanced status code ${enhanced}`);
    if (enhanced[0] !== klass) throw new RangeError(`enhanced code ${enhanced} does not match reply class ${code}`);
  } else if (/^[245]\.\d{1,3}\.\d{1,3} /.test(text) && text[0] !== klass) {
    // The MTA (and validateReplyCode) would read the start of the text as the enhanced code.
    throw new RangeError(`reply text starts with an enhanced code that does not match reply class ${code}`);
  }
  const escaped = text.replace(/%/g, '%%');
  return enhanced ? `${code} ${enhanced} ${escaped}` : `${code} ${escaped}`;
}

/** Validate a reply as it appears on the wire; throws MilterProtocolError if it is not usable. */
export function validateReplyCode(reply: string): { code: number; enhanced?: string; text: string } {
  const m = REPLY.exec(reply);
  if (!m) throw new MilterProtocolError('bad reply code', JSON.stringify(reply.slice(0, 80)));
  if (m[2] && m[2] !== m[1]) throw new MilterProtocolError('reply class mismatch', reply.slice(0, 80));
  // A lone '%' (not part of '%%') would be expanded by the MTA.
  if (/(^|[^%])(%%)*%(?!%)/.test(reply)) throw new MilterProtocolError('undoubled % in reply', reply.slice(0, 80));
  const parts = reply.split(' ');
  const enhanced = m[2] ? parts[1] : undefined;
  const text = parts.slice(enhanced ? 2 : 1).join(' ');
  return { code: Number(parts[0]), enhanced, text };
}
