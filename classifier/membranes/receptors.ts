/**
 * Receptors: MessageFeatures → the initial multiset of each membrane. Every receptor is a cheap
 * test compiled ahead of time; the text is scanned once and all word lists share one Map, so the
 * cost grows with the message length, not with the number of word receptors.
 */
import type { MessageFeatures } from '../types.ts';
import type { CompiledReceptor, CompiledRules } from './compile.ts';
import { computeFacts, type MessageFacts, type TextStats } from './facts.ts';

/** An object of the P-system: interned type and value, a signed charge, and the signal that made it. */
export interface Obj {
  t: number;
  v: number;
  c: number;
  o: number;
}

/** Most specific reputation entry for a domain: "a.b.example.com" tries itself, "b.example.com", … */
export function lookupReputation(map: ReadonlyMap<string, number>, domain: string): number | undefined {
  if (map.size === 0 || domain === '') return undefined;
  let d = domain.toLowerCase();
  for (;;) {
    const r = map.get(d);
    if (r !== undefined) return r;
    const dot = d.indexOf('.');
    if (dot < 0) return undefined;
    d = d.slice(dot + 1);
  }
}

function domainMatches(r: Extract<CompiledReceptor, { kind: 'domains' }>, domain: string): boolean {
  let d = domain.toLowerCase();
  if (r.exact.has(d)) return true;
  for (let dot = d.indexOf('.'); dot >= 0; dot = d.indexOf('.')) {
    if (r.suffixes.has(d.slice(dot))) return true;
    d = d.slice(dot + 1);
    if (r.exact.has(d)) return true;
  }
  return false;
}

/** Reused token buffer: texts are capped upstream, and words past this many are not read. */
const tokens = new Int32Array(4096);

function countWords(rules: CompiledRules, toks: Int32Array, n: number, bit: number, counts: Int32Array): void {
  const index = rules.wordEntries;
  for (let i = 0; i < n; i++) {
    const id = toks[i]!;
    if (id < 0) continue;
    for (const e of index[id]!) {
      if ((e.mask & bit) === 0) continue;
      if (e.rest !== null) {
        let ok = i + e.rest.length < n;
        for (let k = 0; ok && k < e.rest.length; k++) ok = toks[i + 1 + k] === e.rest[k];
        if (!ok) continue;
      }
      counts[e.receptor]!++;
    }
  }
}

function countRegex(re: RegExp, s: string, max: number): number {
  if (s === '') return 0;
  re.lastIndex = 0;
  let n = 0;
  while (n < max) {
    const m = re.exec(s);
    if (m === null) break;
    n++;
    if (m[0] === '') re.lastIndex++; // a pattern that can match empty must still advance
  }
  return n;
}

const pass = (x: number, r: { gt: number; gte: number; lt: number; lte: number }) => x > r.gt && x >= r.gte && x < r.lt && x <= r.lte;

/**
 * Fills `state` (one new array per membrane) and `hits` (objects emitted per signal).
 * Returns the facts, which the caller may show in details.
 */
export function sense(rules: CompiledRules, f: MessageFeatures, reputation: ReadonlyMap<string, number>, state: Obj[][], hits: Float64Array): MessageFacts {
  // Fresh arrays: cheaper than truncating (Array length writes go through the runtime).
  for (let m = 0; m < state.length; m++) state[m] = [];
  const counts = new Int32Array(rules.receptors.length);
  // The body is read exactly once: word ids for the lists, letter counts for the facts.
  const stats: TextStats = { upper: 0, letters: 0, exclamations: 0 };
  countWords(rules, tokens, rules.vocabulary.scan(f.text ?? '', tokens, stats), 1, counts);
  if (rules.vocabulary.size > 0) countWords(rules, tokens, rules.vocabulary.scan(f.subject ?? '', tokens), 2, counts);
  const facts = computeFacts(f, stats);
  for (let i = 0; i < rules.receptors.length; i++) {
    const r = rules.receptors[i]!;
    const into = state[r.membrane]!;
    let n = 0;
    switch (r.kind) {
      case 'words':
        n = counts[i]!;
        break;
      case 'regex':
        if (r.mask & 1) n += countRegex(r.re, f.text ?? '', r.max);
        if (r.mask & 2 && n < r.max) n += countRegex(r.re, f.subject ?? '', r.max - n);
        break;
      case 'auth': {
        const res = f.auth?.[r.method];
        n = res !== undefined && r.results.has(res.toLowerCase()) ? 1 : 0;
        break;
      }
      case 'fact': {
        const x = r.fact >= 0 ? facts.values[r.fact]! : f.numeric?.[r.numericKey];
        n = x !== undefined && pass(x, r) ? 1 : 0; // NaN fails every comparison: no fire
        break;
      }
      case 'domains': {
        const list = r.of === 'urlDomains' ? (f.urlDomains ?? []) : [f[r.of] ?? ''];
        for (const d of list) if (d && domainMatches(r, d)) n++;
        break;
      }
      case 'attachment':
        for (const a of f.attachmentTypes ?? []) {
          const t = a.toLowerCase();
          if (r.types.has(t) || r.extensions.some((e) => t.endsWith(e) || t === e.slice(1))) n++;
        }
        break;
      case 'reputation': {
        // Each known domain emits one object whose charge is its reputation × scale.
        const list = r.of === 'urlDomains' ? (f.urlDomains ?? []) : r.of === 'urlIpHosts' ? facts.ipHosts : [f[r.of] ?? ''];
        for (const d of list) {
          if (n >= r.max) break;
          const rep = r.of === 'urlIpHosts' ? reputation.get(d) : lookupReputation(reputation, d);
          const c = rep === undefined ? 0 : rep * r.scale;
          if (c === 0 || !Number.isFinite(c)) continue;
          into.push({ t: r.t, v: r.v, c, o: r.signal });
          n++;
        }
        hits[r.signal] = n;
        continue;
      }
    }
    n = Math.min(n, r.max);
    hits[r.signal] = n;
    for (let k = 0; k < n; k++) into.push({ t: r.t, v: r.v, c: r.charge, o: r.signal });
  }
  return facts;
}
