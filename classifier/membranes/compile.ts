/**
 * Rules file → CompiledRules. Everything that can be done once is done here: object types and
 * values are interned to small integers, word lists become one Map shared by every receptor,
 * regexes are built, permeability becomes a per-type table, and rules are sorted by priority.
 * Beyond the schema, the compiler checks what zod cannot see: the membrane tree (one skin, known
 * parents, no cycles), unique ids, and that every type a rule or permeability names is produced
 * by something (a typo there would otherwise silently never fire).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { FACT_INDEX, scanWords, WordTable } from './facts.ts';
import { RulesError, rulesFileSchema, zodProblems, type ReceptorSpec, type RulesFile } from './schema.ts';

export interface CompiledPattern {
  t: number;
  /** -1 = any value. */
  v: number;
  count: number;
  min: number;
  keep: boolean;
  absent: boolean;
  gt: number;
  gte: number;
  lt: number;
  lte: number;
}

export interface CompiledProduct {
  t: number;
  v: number;
  charge: number;
  /** When set, charge = sumFactor × the consumed objects' summed charge. */
  fromSum: boolean;
  sumFactor: number;
}

export interface CompiledRule {
  id: string;
  /** Index into CompiledRules.signals (objects it produces carry this as their origin). */
  signal: number;
  membrane: number;
  priority: number;
  patterns: CompiledPattern[];
  products: CompiledProduct[];
  /** Applications allowed per message; -1 = unbounded. */
  budget: number;
  dissolve: boolean;
  /** False for catalyst-only rules, which apply at most once per step (nothing to run out of). */
  consumes: boolean;
}

export interface CompiledMembrane {
  id: string;
  /** -1 for the skin. */
  parent: number;
  /** Indexed by type id: the share of an object's charge that passes to the parent per step (0 = stays). */
  permeability: Float64Array;
  /** Priority order. */
  rules: CompiledRule[];
}

interface ReceptorBase {
  id: string;
  signal: number;
  membrane: number;
  t: number;
  v: number;
  charge: number;
  max: number;
}
export type CompiledReceptor = ReceptorBase &
  (
    | { kind: 'words' }
    | { kind: 'regex'; re: RegExp; mask: number }
    | { kind: 'auth'; method: 'spf' | 'dkim' | 'dmarc' | 'arc'; results: Set<string> }
    | { kind: 'fact'; fact: number; numericKey: string; gt: number; gte: number; lt: number; lte: number }
    | { kind: 'domains'; of: 'fromDomain' | 'replyToDomain' | 'urlDomains'; exact: Set<string>; suffixes: Set<string> }
    | { kind: 'attachment'; types: Set<string>; extensions: string[] }
    | { kind: 'reputation'; of: 'fromDomain' | 'replyToDomain' | 'urlDomains' | 'urlIpHosts'; scale: number }
  );

/** One word-list entry: a single word (rest null) or the first word of a phrase. */
export interface WordEntry {
  receptor: number;
  /** Vocabulary ids of the phrase's following words. */
  rest: Int32Array | null;
  /** 1 = text, 2 = subject. */
  mask: number;
}

export interface CompiledRules {
  source: string;
  /** sha256 of the file text, stored with learned weights. */
  digest: string;
  maxSteps: number;
  maxObjects: number;
  gain: number;
  bias: number;
  membranes: CompiledMembrane[];
  skin: number;
  receptors: CompiledReceptor[];
  rules: CompiledRule[];
  /** Receptor ids, then rule ids: the columns of the learned rule-hit vector. */
  signals: string[];
  types: string[];
  values: string[];
  /** Every word of every word list; scanning yields vocabulary ids. */
  vocabulary: WordTable;
  /** By vocabulary id: the entries whose phrase starts with that word (empty for inner phrase words). */
  wordEntries: WordEntry[][];
  reputation: ReadonlyMap<string, number>;
}

type Problem = { path: string; message: string };

function intern(table: string[], index: Map<string, number>, s: string): number {
  let i = index.get(s);
  if (i === undefined) {
    i = table.length;
    table.push(s);
    index.set(s, i);
  }
  return i;
}

const orInf = (x: number | undefined, inf: number) => (x === undefined ? inf : x);

/** Validates and compiles rules given as YAML text; `source` names the file in errors. */
export function parseRules(text: string, source = '<text>'): CompiledRules {
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (err) {
    throw new RulesError(source, [{ path: '', message: `not valid YAML: ${(err as Error).message}` }]);
  }
  const parsed = rulesFileSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new RulesError(source, zodProblems(parsed.error));
  return compile(parsed.data, source, createHash('sha256').update(text).digest('hex'));
}

/** Reads and compiles a rules file (a path or file: URL). */
export function loadRules(file: string | URL): CompiledRules {
  const path = file instanceof URL ? fileURLToPath(file) : file;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new RulesError(path, [{ path: '', message: `cannot read: ${(err as Error).message}` }]);
  }
  return parseRules(text, path);
}

/** The rules shipped next to this file. */
export const DEFAULT_RULES_URL = new URL('./rules.yaml', import.meta.url);

function compile(file: RulesFile, source: string, digest: string): CompiledRules {
  const problems: Problem[] = [];
  const names = Object.keys(file.membranes);
  const mIndex = new Map(names.map((n, i) => [n, i]));

  // ── the tree ──
  const roots = names.filter((n) => file.membranes[n]!.parent === undefined);
  if (roots.length !== 1) {
    problems.push({ path: 'membranes', message: `exactly one membrane (the skin) must have no parent; found ${roots.length}: ${roots.join(', ') || 'none'}` });
  }
  for (const n of names) {
    const p = file.membranes[n]!.parent;
    if (p !== undefined && !mIndex.has(p)) problems.push({ path: `membranes.${n}.parent`, message: `unknown membrane "${p}"` });
    if (p === n) problems.push({ path: `membranes.${n}.parent`, message: 'a membrane cannot be its own parent' });
  }
  if (problems.length === 0) {
    for (const n of names) {
      let cur: string | undefined = n;
      for (let hops = 0; cur !== undefined; hops++) {
        if (hops > names.length) {
          problems.push({ path: `membranes.${n}.parent`, message: 'the parent chain forms a cycle' });
          break;
        }
        cur = file.membranes[cur]!.parent;
      }
    }
  }

  // ── interning, ids ──
  const types: string[] = [];
  const typeIdx = new Map<string, number>();
  const values: string[] = [];
  const valueIdx = new Map<string, number>();
  const produced = new Set<string>(); // "type" and "type\0value" actually produced by something
  const seenIds = new Map<string, string>();
  const claimId = (id: string, path: string) => {
    const prev = seenIds.get(id);
    if (prev) problems.push({ path, message: `duplicate id "${id}" (also at ${prev})` });
    else seenIds.set(id, path);
  };
  for (const n of names) {
    const m = file.membranes[n]!;
    m.receptors.forEach((r, i) => {
      claimId(r.id, `membranes.${n}.receptors.${i}.id`);
      const v = r.emit.value ?? r.id;
      intern(types, typeIdx, r.emit.type);
      intern(values, valueIdx, v);
      produced.add(r.emit.type).add(`${r.emit.type}\0${v}`);
    });
    m.rules.forEach((r, i) => {
      claimId(r.id, `membranes.${n}.rules.${i}.id`);
      for (const p of r.produce) {
        const v = p.value ?? r.id;
        intern(types, typeIdx, p.type);
        intern(values, valueIdx, v);
        produced.add(p.type).add(`${p.type}\0${v}`);
      }
    });
  }
  const typeId = (t: string, path: string): number => {
    if (!produced.has(t)) problems.push({ path, message: `no receptor or rule produces objects of type "${t}"` });
    return typeIdx.get(t) ?? -1;
  };

  // ── receptors ──
  const signals: string[] = [];
  const receptors: CompiledReceptor[] = [];
  const vocabulary = new WordTable();
  const wordEntries: WordEntry[][] = [];
  names.forEach((n, mi) => {
    file.membranes[n]!.receptors.forEach((r, i) => {
      const path = `membranes.${n}.receptors.${i}`;
      const base: ReceptorBase = {
        id: r.id,
        signal: signals.push(r.id) - 1,
        membrane: mi,
        t: typeIdx.get(r.emit.type)!,
        v: valueIdx.get(r.emit.value ?? r.id)!,
        charge: r.emit.charge,
        max: r.max,
      };
      const c = compileReceptor(r, base, receptors.length, path, { vocabulary, wordEntries }, problems);
      if (c) receptors.push(c);
    });
  });

  // ── rules and membranes ──
  const allRules: CompiledRule[] = [];
  const membranes: CompiledMembrane[] = names.map((n, mi) => {
    const m = file.membranes[n]!;
    const perm = new Float64Array(Math.max(1, types.length));
    if (typeof m.permeability === 'number') perm.fill(m.permeability);
    else {
      perm.fill(m.permeability.default);
      for (const [t, p] of Object.entries(m.permeability.types)) {
        const id = typeId(t, `membranes.${n}.permeability.types.${t}`);
        if (id >= 0) perm[id] = p;
      }
    }
    const rules = m.rules.map((r, ri): CompiledRule => {
      const path = `membranes.${n}.rules.${ri}`;
      if (r.dissolve && m.parent === undefined) problems.push({ path: `${path}.dissolve`, message: 'the skin cannot dissolve' });
      const patterns = r.when.map((p, pi): CompiledPattern => {
        const t = typeId(p.type, `${path}.when.${pi}.type`);
        if (p.value !== undefined && !produced.has(`${p.type}\0${p.value}`)) {
          problems.push({ path: `${path}.when.${pi}.value`, message: `nothing produces ${p.type} objects with value "${p.value}"` });
        }
        const ch = p.charge ?? {};
        return {
          t,
          v: p.value === undefined ? -1 : (valueIdx.get(p.value) ?? -2),
          count: p.count,
          min: Math.max(p.min ?? p.count, p.absent ? 1 : p.count),
          keep: p.keep,
          absent: p.absent,
          gt: orInf(ch.gt, -Infinity),
          gte: orInf(ch.gte, -Infinity),
          lt: orInf(ch.lt, Infinity),
          lte: orInf(ch.lte, Infinity),
        };
      });
      return {
        id: r.id,
        signal: -1, // assigned below, after all receptors
        membrane: mi,
        priority: r.priority,
        patterns,
        products: r.produce.map((p) => ({
          t: typeIdx.get(p.type)!,
          v: valueIdx.get(p.value ?? r.id)!,
          charge: typeof p.charge === 'number' ? p.charge : 0,
          fromSum: typeof p.charge !== 'number',
          sumFactor: typeof p.charge === 'number' ? 0 : p.charge.sum,
        })),
        budget: r.maxApplications === 'unbounded' ? -1 : r.maxApplications,
        dissolve: r.dissolve,
        consumes: patterns.some((p) => !p.keep && !p.absent),
      };
    });
    // Stable sort: equal priorities keep file order.
    const ordered = rules
      .map((r, i) => ({ r, i }))
      .sort((a, b) => b.r.priority - a.r.priority || a.i - b.i)
      .map((x) => x.r);
    allRules.push(...ordered);
    return { id: n, parent: m.parent === undefined ? -1 : (mIndex.get(m.parent) ?? -1), permeability: perm, rules: ordered };
  });
  for (const r of allRules) r.signal = signals.push(r.id) - 1;

  const reputation = new Map<string, number>();
  for (const [d, c] of Object.entries(file.reputation)) reputation.set(d.toLowerCase(), c);

  if (problems.length) throw new RulesError(source, problems);
  return {
    source,
    digest,
    maxSteps: file.maxSteps,
    maxObjects: file.maxObjects,
    gain: file.gain,
    bias: file.bias,
    membranes,
    skin: mIndex.get(roots[0]!)!,
    receptors,
    rules: allRules,
    signals,
    types,
    values,
    vocabulary,
    wordEntries,
    reputation,
  };
}

type Words = { vocabulary: WordTable; wordEntries: WordEntry[][] };

function compileReceptor(r: ReceptorSpec, base: ReceptorBase, index: number, path: string, words: Words, problems: Problem[]): CompiledReceptor | null {
  const mask = (fields: Array<'text' | 'subject'>) => (fields.includes('text') ? 1 : 0) | (fields.includes('subject') ? 2 : 0);
  switch (r.kind) {
    case 'words': {
      const m = mask(r.in);
      r.words.forEach((w, wi) => {
        // Entries are tokenized by the same scanner as messages, so "opt-out" matches "opt out".
        const toks: string[] = [];
        scanWords(w, toks);
        const [first, ...rest] = toks;
        if (first === undefined) {
          problems.push({ path: `${path}.words.${wi}`, message: `"${w}" has no word characters; use a regex receptor` });
          return;
        }
        const id = (w: string) => {
          const i = words.vocabulary.add(w);
          while (words.wordEntries.length <= i) words.wordEntries.push([]);
          return i;
        };
        const head = id(first);
        const tail = rest.length ? Int32Array.from(rest, id) : null;
        words.wordEntries[head]!.push({ receptor: index, rest: tail, mask: m });
      });
      return { ...base, kind: 'words' };
    }
    case 'regex':
      try {
        return { ...base, kind: 'regex', re: new RegExp(r.pattern, `${r.flags}g`), mask: mask(r.in) };
      } catch (err) {
        problems.push({ path: `${path}.pattern`, message: (err as Error).message });
        return null;
      }
    case 'auth':
      return { ...base, kind: 'auth', method: r.method, results: new Set(r.results.map((s) => s.toLowerCase())) };
    case 'fact': {
      const numeric = r.fact.startsWith('numeric.') ? r.fact.slice('numeric.'.length) : '';
      const fact = FACT_INDEX.get(r.fact) ?? -1;
      if (fact < 0 && numeric === '') problems.push({ path: `${path}.fact`, message: `unknown fact "${r.fact}" (known: ${[...FACT_INDEX.keys()].join(', ')}, numeric.<key>)` });
      if (r.gt === undefined && r.gte === undefined && r.lt === undefined && r.lte === undefined) {
        problems.push({ path: `${path}.gt`, message: 'a fact receptor needs at least one of gt, gte, lt, lte' });
      }
      return { ...base, kind: 'fact', fact, numericKey: numeric, gt: orInf(r.gt, -Infinity), gte: orInf(r.gte, -Infinity), lt: orInf(r.lt, Infinity), lte: orInf(r.lte, Infinity) };
    }
    case 'domains': {
      const exact = new Set<string>();
      const suffixes = new Set<string>();
      for (const d of r.domains) (d.startsWith('.') ? suffixes : exact).add(d.toLowerCase());
      return { ...base, kind: 'domains', of: r.of, exact, suffixes };
    }
    case 'attachment':
      return { ...base, kind: 'attachment', types: new Set(r.types.map((t) => t.toLowerCase())), extensions: r.extensions.map((e) => `.${e.toLowerCase().replace(/^\./, '')}`) };
    case 'reputation':
      return { ...base, kind: 'reputation', of: r.of, scale: r.scale };
  }
}
