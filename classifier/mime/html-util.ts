/**
 * Helpers for html.ts: character references (HTML5 §13.5, common subset), colours, and the inline
 * style properties that hide text.
 */

const NAMED = new Map<string, string>(
  Object.entries({
    amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', shy: '', copy: '©', reg: '®',
    trade: '™', euro: '€', pound: '£', yen: '¥', cent: '¢', sect: '§', deg: '°', plusmn: '±',
    times: '×', divide: '÷', middot: '·', bull: '•', hellip: '…', ndash: '–', mdash: '—',
    lsquo: '‘', rsquo: '’', sbquo: '‚', ldquo: '“', rdquo: '”', bdquo: '„', laquo: '«', raquo: '»',
    iexcl: '¡', iquest: '¿', para: '¶', micro: 'µ', frac12: '½', frac14: '¼', frac34: '¾',
    ensp: ' ', emsp: ' ', thinsp: ' ', zwnj: '', zwj: '', lrm: '', rlm: '', dagger: '†',
    szlig: 'ß', aelig: 'æ', AElig: 'Æ', oslash: 'ø', Oslash: 'Ø', aring: 'å', Aring: 'Å',
    ntilde: 'ñ', Ntilde: 'Ñ', ccedil: 'ç', Ccedil: 'Ç', eth: 'ð', thorn: 'þ', yuml: 'ÿ',
  }),
);
// Accented vowels: &aacute; &Egrave; &ouml; &icirc; &atilde; …
{
  const base: Record<string, string> = { acute: '\u0301', grave: '\u0300', uml: '\u0308', circ: '\u0302', tilde: '\u0303' };
  for (const v of 'aeiouyAEIOUY') {
    for (const [k, mark] of Object.entries(base)) {
      const ch = (v + mark).normalize('NFC');
      if (ch.length === 1) NAMED.set(v + k, ch);
    }
  }
}
/** Legacy names browsers accept without the ';'. */
const NO_SEMI = ['nbsp', 'amp', 'quot', 'copy', 'reg', 'lt', 'gt'];

/** HTML maps numeric references 0x80–0x9F to windows-1252 (&#146; is ’). */
const C1 = '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ';

function numericRef(code: number): string {
  if (code >= 0x80 && code <= 0x9f) return C1[code - 0x80]!;
  if (!(code > 0 && code <= 0x10ffff) || (code >= 0xd800 && code <= 0xdfff)) return '\ufffd';
  return String.fromCodePoint(code);
}

/** Index of the first '&' in s[from, to), or -1. A bounded loop: indexOf would search past `to`. */
export function ampIn(s: string, from: number, to: number): number {
  for (let i = from; i < to; i++) if (s.charCodeAt(i) === 38) return i;
  return -1;
}

/** Decode character references in s[from, to). Unknown ones stay as written. Linear in to − from. */
export function decodeEntities(s: string, from: number, to: number): string {
  let amp = ampIn(s, from, to);
  if (amp < 0) return s.slice(from, to);
  let out = '';
  let last = from;
  while (amp >= 0) {
    out += s.slice(last, amp);
    let i = amp + 1;
    let rep: string | undefined;
    if (s.charCodeAt(i) === 35 /* # */) {
      i++;
      const hex = (s.charCodeAt(i) | 0x20) === 120;
      if (hex) i++;
      const numStart = i;
      let code = 0;
      while (i < to && i - numStart < 8) {
        const c = s.charCodeAt(i);
        const d = c >= 48 && c <= 57 ? c - 48 : hex && (c | 0x20) >= 97 && (c | 0x20) <= 102 ? (c | 0x20) - 87 : -1;
        if (d < 0) break;
        code = code * (hex ? 16 : 10) + d;
        i++;
      }
      if (i > numStart) {
        rep = numericRef(code);
        if (i < to && s.charCodeAt(i) === 59) i++;
      } else i = amp + 1;
    } else {
      // Names are short: look for the ';' within 9 characters only.
      let semi = -1;
      for (let k = i; k < to && k <= i + 8; k++) {
        if (s.charCodeAt(k) === 59) {
          semi = k;
          break;
        }
      }
      if (semi > i) {
        const name = s.slice(i, semi);
        rep = NAMED.get(name) ?? NAMED.get(name.toLowerCase());
        if (rep !== undefined) i = semi + 1;
      }
      if (rep === undefined) {
        for (const n of NO_SEMI) {
          if (i + n.length <= to && s.startsWith(n, i)) {
            rep = NAMED.get(n)!;
            i += n.length;
            break;
          }
        }
      }
    }
    if (rep === undefined) {
      out += '&';
      last = amp + 1;
    } else {
      out += rep;
      last = i;
    }
    amp = ampIn(s, last, to);
  }
  return out + s.slice(last, to);
}

// ───────────────────────────── colours ─────────────────────────────

const NAMED_COLORS = new Map<string, number>([
  ['white', 0xffffff], ['black', 0x000000], ['red', 0xff0000], ['green', 0x008000], ['blue', 0x0000ff],
  ['yellow', 0xffff00], ['gray', 0x808080], ['grey', 0x808080], ['silver', 0xc0c0c0], ['navy', 0x000080],
  ['maroon', 0x800000], ['purple', 0x800080], ['orange', 0xffa500], ['snow', 0xfffafa], ['ivory', 0xfffff0],
  ['whitesmoke', 0xf5f5f5], ['ghostwhite', 0xf8f8ff], ['lime', 0x00ff00], ['aqua', 0x00ffff], ['teal', 0x008080],
]);

/** Colour → 0xRRGGBB, -1 when not understood. Accepts #rgb, #rrggbb, rrggbb, rgb(r,g,b), names. */
export function parseColor(v: string): number {
  let s = v.trim().toLowerCase();
  if (s.length === 0 || s.length > 40) return -1;
  const named = NAMED_COLORS.get(s);
  if (named !== undefined) return named;
  if (s.startsWith('rgb')) {
    const m = /^rgba?\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})/.exec(s);
    return m ? (Math.min(255, +m[1]!) << 16) | (Math.min(255, +m[2]!) << 8) | Math.min(255, +m[3]!) : -1;
  }
  if (s.charCodeAt(0) === 35) s = s.slice(1);
  if (!/^[0-9a-f]+$/.test(s)) return -1;
  if (s.length === 3) return parseInt(s[0]! + s[0] + s[1] + s[1] + s[2] + s[2], 16);
  if (s.length === 6) return parseInt(s, 16);
  return -1;
}

/** Two colours a reader cannot tell apart (every channel within 24 of the other). */
export function sameColor(a: number, b: number): boolean {
  if (a < 0 || b < 0) return false;
  return (
    Math.abs((a >> 16) - (b >> 16)) <= 24 &&
    Math.abs(((a >> 8) & 0xff) - ((b >> 8) & 0xff)) <= 24 &&
    Math.abs((a & 0xff) - (b & 0xff)) <= 24
  );
}

// ───────────────────────────── styles ─────────────────────────────

export interface StyleFacts {
  hidden: boolean;
  /** Text colour, -1 when not set. */
  color: number;
  /** Background colour, -1 when not set, -2 when an image (so any text colour may be visible). */
  bg: number;
}

/** A font size too small to read: 0–1 px/pt, ≤ 0.1 em/rem, ≤ 10%. */
function tinyFont(v: string): boolean {
  const n = parseFloat(v);
  if (Number.isNaN(n)) return false;
  if (v.includes('em')) return n <= 0.1;
  if (v.includes('%')) return n <= 10;
  return n <= 1;
}

/**
 * Read the properties of an inline style that matter for hidden text: display:none,
 * visibility:hidden, opacity:0, tiny font-size, max-height:0 (or height:0 with overflow:hidden),
 * color and background colour. Declarations are split on ';' (no CSS parser: best effort).
 */
export function readStyle(style: string, out: StyleFacts): void {
  const decls = style.toLowerCase().split(';');
  let zeroHeight = false;
  let overflowHidden = false;
  for (let k = 0; k < decls.length && k < 64; k++) {
    const d = decls[k]!;
    const colon = d.indexOf(':');
    if (colon < 0) continue;
    const prop = d.slice(0, colon).trim();
    const val = d.slice(colon + 1).replace('!important', '').trim();
    switch (prop) {
      case 'display':
        if (val === 'none') out.hidden = true;
        break;
      case 'visibility':
        if (val === 'hidden' || val === 'collapse') out.hidden = true;
        break;
      case 'opacity':
        if (parseFloat(val) <= 0.05) out.hidden = true;
        break;
      case 'font-size':
        if (tinyFont(val)) out.hidden = true;
        break;
      case 'max-height':
        if (parseFloat(val) === 0) out.hidden = true;
        break;
      case 'height':
        zeroHeight = parseFloat(val) === 0;
        break;
      case 'overflow':
        overflowHidden = val === 'hidden';
        break;
      case 'color':
        out.color = parseColor(val);
        break;
      case 'background-color':
        out.bg = parseColor(val);
        break;
      case 'background':
        out.bg = val.includes('url(') ? -2 : parseColor(val.split(/\s+/, 1)[0] ?? '');
        break;
      case 'background-image':
        if (val.includes('url(')) out.bg = -2;
        break;
    }
  }
  if (zeroHeight && overflowHidden) out.hidden = true;
}
