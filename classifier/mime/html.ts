/**
 * htmlToText: a single-pass tag stripper, not a DOM. Linear in the input: every search (tag end,
 * comment end, closing </script>) starts where the previous one stopped.
 *
 * - Content of <script>, <style>, <head> (up to </head>, or <body> when </head> is missing),
 *   <title>, <xml>, <template> and comments is dropped.
 * - Block elements (p, div, tr, li, h1–h6, …) end a paragraph (a blank line), <br> a line, cells
 *   and images become spaces, white space runs collapse to one space, and inline elements become
 *   nothing, so "fr<b>ee</b>" reads "free" as a browser shows it.
 * - Character references: the common named ones and all numeric ones.
 * - Hidden text (counted in hiddenTextChars, left out of `text`), best effort: an element with
 *   display:none, visibility:hidden, opacity:0, a font size of 0–1px, max-height:0, the `hidden`
 *   attribute, or a text colour within 24/255 per channel of the background in effect. The
 *   background is white unless an ancestor sets bgcolor / background-color; a background image
 *   makes any colour count as visible. Implied end tags are only handled for p, li, td, th, tr,
 *   option; a stray end tag pops only if its element is among the 16 innermost open ones.
 * - links: href of a/area/link/base, src of img/iframe/frame/embed/script/input, action of form,
 *   background of body/table/td; at most MAX_LINKS, each at most 2,048 characters.
 */
import { A_BACKGROUND, A_BGCOLOR, A_COLOR, A_HIDDEN, A_STYLE, A_TEXT, BLOCK, CELL, isAlpha, isSpace, LINE, LINK_ATTR, PEER, readTag, SKIP, tag, VOID } from './html-tags.ts';
import { ampIn, decodeEntities, parseColor, readStyle, sameColor, type StyleFacts } from './html-util.ts';

export interface HtmlText {
  text: string;
  tags: number;
  hiddenTextChars: number;
  links: string[];
}

export const MAX_LINKS = 256;
const MAX_STACK = 256;
const WHITE = 0xffffff;

/** Characters of s[from, to) other than white space (what hiddenTextChars counts). */
function visibleChars(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c > 32 && c !== 0xa0) n++;
  }
  return n;
}

/**
 * Index of the first '</name' at or after `from`, or -1; case-insensitive. `cache` remembers the
 * last answer per name so a document of a million unclosed <head>s is not searched a million times:
 * an answer at or after `from` is still the first one, and -1 stays -1.
 */
function findClose(s: string, from: number, name: string, cache: Map<string, number>): number {
  const known = cache.get(name);
  if (known !== undefined && (known < 0 || known >= from)) return known;
  const r = searchClose(s, from, name);
  cache.set(name, r);
  return r;
}

function searchClose(s: string, from: number, name: string): number {
  let i = s.indexOf('</', from);
  while (i >= 0) {
    if (s.slice(i + 2, i + 2 + name.length).toLowerCase() === name) {
      const c = s.charCodeAt(i + 2 + name.length);
      if (!isAlpha(c)) return i;
    }
    i = s.indexOf('</', i + 2);
  }
  return -1;
}

/** First "<body" at or after `from`, case-insensitive, or -1 (cached like findClose). */
function findBody(s: string, from: number, cache: Map<string, number>): number {
  const known = cache.get('<body');
  if (known !== undefined && (known < 0 || known >= from)) return known;
  const r = searchBody(s, from);
  cache.set('<body', r);
  return r;
}

function searchBody(s: string, from: number): number {
  let i = s.indexOf('<', from);
  while (i >= 0) {
    if ((s.charCodeAt(i + 1) | 0x20) === 98 && s.slice(i + 1, i + 5).toLowerCase() === 'body') return i;
    i = s.indexOf('<', i + 1);
  }
  return -1;
}

export function htmlToText(html: string, maxChars: number): HtmlText {
  const s = typeof html === 'string' ? html : '';
  const n = s.length;
  const cap = Math.max(0, maxChars);
  // Pieces joined once at the end: a string built with += is a rope, and reading a rope character
  // by character (as the tokenizer does next) is several times slower than reading a flat string.
  const out: string[] = [];
  let textLen = 0;
  let tags = 0;
  let hidden = 0;
  const links: string[] = [];
  // Open elements: name, whether it hides its content, text colour, background (inherited values).
  const stName: string[] = [];
  const stHide: boolean[] = [];
  const stColor: number[] = [];
  const stBg: number[] = [];
  let hideDepth = 0;
  let color = -1;
  let bg = WHITE;
  const facts: StyleFacts = { hidden: false, color: -1, bg: -1 };
  const closeCache = new Map<string, number>();

  // Browsers collapse white space runs to one space; block ends become a blank line, <br> a line
  // break. `trailing` says how the text ends: 0 a character, 2 "\n", 3 "\n\n" (or empty); a space
  // owed after a character is only written before the next one, so nothing is ever taken back.
  let trailing = 3;
  let owedSpace = false;
  const space = () => {
    if (trailing === 0) owedSpace = true;
  };
  const put = (str: string) => {
    if (owedSpace) {
      out.push(' ');
      textLen++;
      owedSpace = false;
    }
    out.push(str);
    textLen += str.length;
    trailing = 0;
  };
  // Copies maximal stretches that need no change (words separated by single spaces) in one slice,
  // so ordinary text costs one string per text node, not one per word.
  const putCollapsed = (t: string, from: number, to: number) => {
    let k = from;
    while (k < to && isSpace(t.charCodeAt(k))) k++;
    if (k > from) space();
    let seg = k;
    while (k < to) {
      const c = t.charCodeAt(k);
      if (!isSpace(c)) {
        k++;
        continue;
      }
      let r = k + 1;
      while (r < to && isSpace(t.charCodeAt(r))) r++;
      if (c === 32 && r === k + 1 && r < to) {
        k = r; // a single space between words stays in the stretch
        continue;
      }
      if (k > seg) put(t.slice(seg, k));
      space();
      seg = k = r;
    }
    if (to > seg) put(t.slice(seg, to));
  };
  const lineBreak = (blank: boolean) => {
    owedSpace = false;
    if (textLen >= cap || trailing === 3 || (trailing === 2 && !blank)) return;
    const br = trailing === 2 || !blank ? '\n' : '\n\n';
    out.push(br);
    textLen += br.length;
    trailing = blank ? 3 : 2;
  };
  const emit = (from: number, to: number) => {
    const hiddenNow = hideDepth > 0 || (color >= 0 && bg >= 0 && sameColor(color, bg));
    if (hiddenNow) {
      hidden += visibleChars(s, from, to);
      return;
    }
    if (textLen >= cap) return;
    const end = Math.min(to, from + (cap - textLen) + 64);
    if (ampIn(s, from, end) < 0) putCollapsed(s, from, end); // the source is flat: read it in place
    else {
      const t = decodeEntities(s, from, end);
      putCollapsed(t, 0, t.length);
    }
  };
  const pop = (to: number) => {
    while (stName.length > to) {
      stName.pop();
      if (stHide.pop()) hideDepth--;
      stColor.pop();
      stBg.pop();
    }
    color = stColor.length > 0 ? stColor[stColor.length - 1]! : -1;
    bg = stBg.length > 0 ? stBg[stBg.length - 1]! : WHITE;
  };

  let i = 0;
  while (i < n) {
    const lt = s.indexOf('<', i);
    const textEnd = lt < 0 ? n : lt;
    if (textEnd > i) emit(i, textEnd);
    if (lt < 0) break;
    const c = s.charCodeAt(lt + 1);
    if (c === 33 /* ! */) {
      if (s.startsWith('!--', lt + 1)) {
        const end = s.indexOf('-->', lt + 4);
        i = end < 0 ? n : end + 3;
      } else {
        const end = s.indexOf('>', lt + 2);
        i = end < 0 ? n : end + 1;
        tags++;
      }
      continue;
    }
    if (c === 63 /* ? */) {
      const end = s.indexOf('>', lt + 2);
      i = end < 0 ? n : end + 1;
      continue;
    }
    if (!isAlpha(c) && !(c === 47 && isAlpha(s.charCodeAt(lt + 2)))) {
      emit(lt, lt + 1); // a literal '<'
      i = lt + 1;
      continue;
    }
    readTag(s, lt);
    i = tag.end;
    tags++;
    const name = tag.name;
    const fl = tag.flags;
    if (tag.closing) {
      for (let k = stName.length - 1; k >= 0 && k >= stName.length - 16; k--) {
        if (stName[k] === name) {
          pop(k);
          break;
        }
      }
      if (fl & BLOCK) lineBreak(true);
      continue;
    }
    const attrs = tag.attrs;
    const hasAttrs = tag.hasAttrs;
    if (hasAttrs && links.length < MAX_LINKS) {
      const which = LINK_ATTR.get(name);
      const url = which === undefined ? undefined : attrs[which];
      if (url !== undefined && url.length > 0) links.push(url.length > 2048 ? url.slice(0, 2048) : url);
      const bgUrl = attrs[A_BACKGROUND];
      if (bgUrl !== undefined && bgUrl.length > 0 && links.length < MAX_LINKS) links.push(bgUrl.slice(0, 2048));
    }
    if (fl & SKIP && !tag.selfClosing) {
      let close = findClose(s, i, name, closeCache);
      if (close < 0 && name === 'head') close = findBody(s, i, closeCache);
      if (close >= 0) {
        i = close;
      } else if (name !== 'head') {
        i = n; // an unclosed <script> or <style> runs to the end, as in a browser
      }
      continue;
    }
    if (fl & BLOCK) lineBreak(true);
    else if (fl & LINE) lineBreak(false);
    else if (fl & CELL && textLen < cap) space();
    if (fl & VOID || tag.selfClosing) continue;
    // <p> inside <p> (and li, td, …) closes the first: keeps the stack from growing on sloppy HTML.
    if (fl & PEER && stName.length > 0 && stName[stName.length - 1] === name) pop(stName.length - 1);
    if (stName.length >= MAX_STACK) continue;
    facts.hidden = false;
    facts.color = -1;
    facts.bg = -1;
    if (hasAttrs) {
      if (attrs[A_HIDDEN] !== undefined) facts.hidden = true;
      const col = attrs[A_COLOR] ?? (name === 'body' ? attrs[A_TEXT] : undefined);
      if (col !== undefined) facts.color = parseColor(col);
      const bgc = attrs[A_BGCOLOR];
      if (bgc !== undefined) facts.bg = parseColor(bgc);
      if (attrs[A_BACKGROUND] !== undefined) facts.bg = -2;
      const style = attrs[A_STYLE];
      if (style !== undefined) readStyle(style, facts);
    }
    stName.push(name);
    stHide.push(facts.hidden);
    if (facts.hidden) hideDepth++;
    if (facts.color >= 0) color = facts.color;
    if (facts.bg !== -1) bg = facts.bg;
    stColor.push(color);
    stBg.push(bg);
  }
  // No line breaks at the end.
  if (trailing !== 0) while (out.length > 0 && (out[out.length - 1] === '\n' || out[out.length - 1] === '\n\n')) out.pop();
  let text = out.join('');
  if (text.length > cap) text = text.slice(0, cap);
  return { text, tags, hiddenTextChars: hidden, links };
}
