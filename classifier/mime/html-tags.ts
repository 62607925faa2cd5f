/**
 * Tags for html.ts: element behaviour flags, the attributes we read, and readTag, which parses one
 * tag into a reused object without building strings for anything but known-needed values.
 */
import { decodeEntities } from './html-util.ts';

// Per-element behaviour as bit flags in one table: one Map lookup per tag instead of six Set lookups.
export const SKIP = 1; // content dropped
export const VOID = 2; // never has content or an end tag
export const BLOCK = 4; // ends a paragraph
export const LINE = 8; // ends a line
export const CELL = 16; // separates words
export const PEER = 32; // an open one of the same name closes first (<p><p>, <li><li>)
const FLAGS = new Map<string, number>();
function flag(names: string, f: number): void {
  for (const n of names.split(' ')) FLAGS.set(n, (FLAGS.get(n) ?? 0) | f);
}
flag('script style head title xml template', SKIP);
flag('area base br col embed hr img input link meta param source track wbr frame basefont keygen', VOID);
flag('p div tr li ul ol dl dt dd table h1 h2 h3 h4 h5 h6 blockquote pre hr center form address section article header footer body html', BLOCK);
flag('br', LINE);
flag('td th img input button select option textarea', CELL);
flag('p li td th tr option', PEER);
flag('a b i u s em strong font span small big sup sub strike tt code nobr abbr label iframe object noscript o:p', 0);

/**
 * Known element names by a hash of their lower-case letters, so readTag can name a tag without
 * building a string (the common case), and stack comparisons are identity comparisons.
 */
const KNOWN = new Map<number, { name: string; flags: number }>();
function nameHash(h: number, c: number): number {
  return (Math.imul(h, 31) + (c | 0x20)) | 0;
}
for (const [name, flags] of FLAGS) {
  let h = 0;
  for (let k = 0; k < name.length; k++) h = nameHash(h, name.charCodeAt(k));
  if (!KNOWN.has(h)) KNOWN.set(h, { name, flags });
}

export function isAlpha(c: number): boolean {
  return (c | 0x20) >= 97 && (c | 0x20) <= 122;
}

export function isSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9 || c === 12;
}

/** The attributes we read, by index into Tag.attrs. */
export const A_HREF = 0;
export const A_SRC = 1;
export const A_ACTION = 2;
export const A_STYLE = 3;
export const A_COLOR = 4;
export const A_BGCOLOR = 5;
export const A_BACKGROUND = 6;
export const A_HIDDEN = 7;
export const A_TEXT = 8;
const ATTR_NAMES = ['href', 'src', 'action', 'style', 'color', 'bgcolor', 'background', 'hidden', 'text'];
/** Which attribute of an element is its link. */
export const LINK_ATTR = new Map<string, number>([
  ...['a', 'area', 'link', 'base'].map((t) => [t, A_HREF] as const),
  ...['img', 'iframe', 'frame', 'embed', 'script', 'input'].map((t) => [t, A_SRC] as const),
  ['form', A_ACTION],
]);

/** The tag just read. One object, reused: readTag runs for every tag, so it allocates nothing but strings it must. */
export const tag = {
  name: '',
  /** FLAGS of the element. */
  flags: 0,
  closing: false,
  selfClosing: false,
  /** Index just past '>'. */
  end: 0,
  /** Values of the ATTR_NAMES attributes (entities decoded), undefined when absent. */
  attrs: new Array<string | undefined>(ATTR_NAMES.length).fill(undefined),
  hasAttrs: false,
};

/** s[from, to) equals `word` ignoring ASCII case. */
function eqLower(s: string, from: number, to: number, word: string): boolean {
  if (to - from !== word.length) return false;
  for (let k = 0; k < word.length; k++) if ((s.charCodeAt(from + k) | 0x20) !== word.charCodeAt(k)) return false;
  return true;
}

/** Index of the attribute named s[from, to) in ATTR_NAMES, or -1; compares without slicing. */
function attrIndex(s: string, from: number, to: number): number {
  const c = s.charCodeAt(from) | 0x20;
  for (let k = 0; k < ATTR_NAMES.length; k++) {
    const w = ATTR_NAMES[k]!;
    if (w.charCodeAt(0) === c && eqLower(s, from, to, w)) return k;
  }
  return -1;
}

/** Read the tag starting at s[lt] === '<' into `tag`. Attribute values may be quoted and contain '>'. */
export function readTag(s: string, lt: number): void {
  const n = s.length;
  let i = lt + 1;
  tag.closing = s.charCodeAt(i) === 47;
  if (tag.closing) i++;
  const nameStart = i;
  let h = 0;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (isSpace(c) || c === 62 || c === 47) break;
    h = nameHash(h, c);
    i++;
  }
  const known = KNOWN.get(h);
  if (known !== undefined && eqLower(s, nameStart, i, known.name)) {
    tag.name = known.name;
    tag.flags = known.flags;
  } else {
    tag.name = s.slice(nameStart, Math.min(i, nameStart + 16)).toLowerCase();
    tag.flags = FLAGS.get(tag.name) ?? 0;
  }
  if (tag.hasAttrs) tag.attrs.fill(undefined);
  tag.hasAttrs = false;
  let selfClosing = false;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c === 62) break;
    if (isSpace(c) || c === 47) {
      selfClosing = c === 47;
      i++;
      continue;
    }
    selfClosing = false;
    const an = i;
    while (i < n && !isSpace(s.charCodeAt(i)) && s.charCodeAt(i) !== 61 && s.charCodeAt(i) !== 62) i++;
    const ae = i;
    const which = ae - an <= 10 ? attrIndex(s, an, ae) : -1;
    while (i < n && isSpace(s.charCodeAt(i))) i++;
    let vs = i;
    let ve = i;
    if (s.charCodeAt(i) === 61) {
      i++;
      while (i < n && isSpace(s.charCodeAt(i))) i++;
      const q = s.charCodeAt(i);
      if (q === 34 || q === 39) {
        let close = s.indexOf(q === 34 ? '"' : "'", i + 1);
        // An unclosed quote would swallow the document; browsers differ here, we end at the next '>'.
        if (close < 0) {
          close = s.indexOf('>', i + 1);
          if (close < 0) close = n;
          vs = i + 1;
          ve = i = close;
        } else {
          vs = i + 1;
          ve = close;
          i = close + 1;
        }
      } else {
        vs = i;
        while (i < n && !isSpace(s.charCodeAt(i)) && s.charCodeAt(i) !== 62) i++;
        ve = i;
      }
    }
    if (which >= 0 && tag.attrs[which] === undefined) {
      tag.attrs[which] = decodeEntities(s, vs, ve);
      tag.hasAttrs = true;
    }
  }
  tag.selfClosing = selfClosing;
  tag.end = i < n ? i + 1 : n;
}
