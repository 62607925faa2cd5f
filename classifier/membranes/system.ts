/**
 * The P-system's evolution: a bounded number of steps, each of which
 *
 *   1. applies every live membrane's rules in priority order, each rule as many times as its
 *      left-hand side still fits in the objects not yet consumed this step (maximal parallelism,
 *      resolved deterministically: higher priority and earlier objects first). Products appear
 *      only at the end of the step, as in a P-system;
 *   2. moves objects outward: each object of a non-skin membrane whose type has permeability
 *      p > 0 passes to the parent with its charge × p; p = 0 keeps it where it is;
 *   3. dissolves membranes whose dissolving rule fired (δ): their objects go to the parent
 *      unscaled and their children are adopted by the parent.
 *
 * Membranes only see objects from the previous step, so the order they are visited in within a
 * step does not change the result. Evolution halts when a step changes nothing, or at maxSteps.
 */
import type { CompiledPattern, CompiledRule, CompiledRules } from './compile.ts';
import type { Obj } from './receptors.ts';

export interface Evolution {
  /** Steps in which something happened (≤ maxSteps). */
  steps: number;
  /** Ids of membranes that dissolved. */
  dissolved: string[];
}

let usedScratch = new Uint8Array(256);

const matches = (o: Obj, p: CompiledPattern) =>
  o.t === p.t && (p.v === -1 || o.v === p.v) && o.c > p.gt && o.c >= p.gte && o.c < p.lt && o.c <= p.lte;

function available(objs: Obj[], used: Uint8Array, p: CompiledPattern): number {
  let n = 0;
  for (let i = 0; i < objs.length; i++) if (used[i] === 0 && matches(objs[i]!, p)) n++;
  return n;
}

const taken: number[] = [];

/**
 * One application of `rule`: marks the consumed objects used and returns their summed charge, or
 * NaN (with nothing marked) when the left-hand side no longer fits.
 */
function applyOnce(rule: CompiledRule, objs: Obj[], used: Uint8Array): number {
  taken.length = 0;
  let sum = 0;
  let ok = true;
  // Consumed patterns first, so a catalyst must be an object other than the ones consumed.
  for (const p of rule.patterns) {
    if (p.keep || p.absent) continue;
    let need = p.count;
    for (let i = 0; need > 0 && i < objs.length; i++) {
      if (used[i] === 0 && matches(objs[i]!, p)) {
        used[i] = 1;
        taken.push(i);
        sum += objs[i]!.c;
        need--;
      }
    }
    if (need > 0) {
      ok = false;
      break;
    }
  }
  if (ok) for (const p of rule.patterns) if (p.keep && available(objs, used, p) < p.count) ok = false;
  if (!ok) {
    for (const i of taken) used[i] = 0;
    return NaN;
  }
  return sum;
}

/**
 * Evolves `state` (one object array per membrane, filled by the receptors) in place; afterwards
 * state[rules.skin] holds what reached the skin. `hits` gains each rule's application count.
 */
/** Per-rules working memory, reset per message instead of reallocated (scoring is hot). */
interface Scratch {
  parent: Int32Array;
  alive: Uint8Array;
  budget: Int32Array;
  incoming: Obj[][];
  products: Obj[];
  dissolving: number[];
}
const scratches = new WeakMap<CompiledRules, Scratch>();

function scratchFor(rules: CompiledRules): Scratch {
  let s = scratches.get(rules);
  if (!s) {
    const M = rules.membranes.length;
    s = {
      parent: new Int32Array(M),
      alive: new Uint8Array(M),
      budget: new Int32Array(rules.rules.length),
      incoming: Array.from({ length: M }, () => []),
      products: [],
      dissolving: [],
    };
    scratches.set(rules, s);
  }
  for (let m = 0; m < rules.membranes.length; m++) s.parent[m] = rules.membranes[m]!.parent;
  s.alive.fill(1);
  for (let r = 0; r < rules.rules.length; r++) s.budget[r] = rules.rules[r]!.budget;
  return s;
}

export function evolve(rules: CompiledRules, state: Obj[][], hits: Float64Array, maxSteps = rules.maxSteps): Evolution {
  const M = rules.membranes.length;
  const nRec = rules.receptors.length;
  const { parent, alive, budget, incoming, products, dissolving } = scratchFor(rules);
  dissolving.length = 0;
  const dissolved: string[] = [];
  let steps = 0;

  for (let step = 0; step < maxSteps; step++) {
    let changed = false;
    for (let m = 0; m < M; m++) {
      if (alive[m] === 0) continue;
      const mem = rules.membranes[m]!;
      const objs = state[m]!;
      if (products.length > 0) products.length = 0;
      if (usedScratch.length < objs.length) usedScratch = new Uint8Array(objs.length * 2);
      const used = usedScratch;
      used.fill(0, 0, objs.length);
      let dissolve = false;

      if (objs.length > 0) {
        for (const rule of mem.rules) {
          const bi = rule.signal - nRec;
          let left = budget[bi]!;
          if (left === 0) continue;
          let enabled = true;
          for (const p of rule.patterns) {
            const n = available(objs, used, p);
            if (p.absent ? n > 0 : n < p.min) {
              enabled = false;
              break;
            }
          }
          if (!enabled) continue;
          let applied = 0;
          while (left !== 0) {
            if (rule.products.length > 0 && objs.length + products.length + rule.products.length > rules.maxObjects) break;
            const sum = applyOnce(rule, objs, used);
            if (Number.isNaN(sum)) break;
            applied++;
            if (left > 0) left--;
            for (const pr of rule.products) products.push({ t: pr.t, v: pr.v, c: pr.fromSum ? pr.sumFactor * sum : pr.charge, o: rule.signal });
            // A catalyst-only rule consumes nothing, so "as often as it fits" would never end: once per step.
            if (!rule.consumes) break;
          }
          budget[bi] = left;
          if (applied > 0) {
            hits[rule.signal] = hits[rule.signal]! + applied;
            changed = true;
            if (rule.dissolve) dissolve = true;
          }
        }
      }
      if (dissolve) dissolving.push(m);

      // Drop consumed objects, add products, then let permeable ones out.
      if (objs.length === 0 && products.length === 0) continue;
      const up = parent[m]!;
      const perm = mem.permeability;
      const kept: Obj[] = [];
      for (let i = 0; i < objs.length; i++) {
        if (used[i] === 1) continue; // consumed this step
        const o = objs[i]!;
        const k = up >= 0 ? perm[o.t]! : 0;
        if (k > 0) {
          o.c *= k;
          incoming[up]!.push(o);
          changed = true;
        } else kept.push(o);
      }
      for (const o of products) {
        const k = up >= 0 ? perm[o.t]! : 0;
        if (k > 0) {
          o.c *= k;
          incoming[up]!.push(o);
        } else kept.push(o);
      }
      state[m] = kept;
    }
    for (let m = 0; m < M; m++) {
      const inc = incoming[m]!;
      if (inc.length === 0) continue;
      const into = state[m]!;
      for (const o of inc) into.push(o);
      incoming[m] = [];
    }
    for (const m of dissolving) {
      const up = parent[m]!;
      const into = state[up]!;
      for (const o of state[m]!) into.push(o);
      state[m] = [];
      for (let c = 0; c < M; c++) if (parent[c] === m) parent[c] = up;
      alive[m] = 0;
      dissolved.push(rules.membranes[m]!.id);
    }
    if (dissolving.length > 0) dissolving.length = 0;
    if (!changed) break;
    steps++;
  }
  return { steps, dissolved };
}
