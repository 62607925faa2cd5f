/**
 * P-system semantics on small hand-made rule sets: bounded evolution, permeability, priorities,
 * maximal parallelism, thresholds, inhibitors, catalysts, dissolution.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MembraneComponent, parseRules } from '../../../classifier/membranes/index.ts';
import type { MessageFeatures } from '../../../classifier/types.ts';

function features(p: Partial<MessageFeatures> = {}): MessageFeatures {
  return {
    tokens: new Uint32Array(0),
    sequence: new Uint32Array(0),
    steps: new Uint32Array(0),
    text: '',
    subject: '',
    urls: [],
    urlDomains: [],
    auth: {},
    html: { tags: 0, hiddenTextChars: 0, textChars: 0 },
    attachmentTypes: [],
    numeric: {},
    ...p,
  };
}

/** Runs a rule set over a message whose words are `text`. */
function run(yaml: string, text = '') {
  const c = new MembraneComponent({ rules: parseRules(yaml) });
  const r = c.run(features({ text }));
  const hit = (id: string) => r.hits[c.rules.signals.indexOf(id)] ?? NaN;
  const charge = (id: string) => r.x[c.rules.signals.indexOf(id)] ?? NaN;
  return { ...r, hit, charge, c };
}

/** One leaf under the skin; word "a" in the text gives objects of type a with charge 1. */
const leaf = (opts: { perm?: string; rules?: string; skinRules?: string; maxSteps?: number; maxObjects?: number; max?: number }) => `
version: 1
maxSteps: ${opts.maxSteps ?? 4}
maxObjects: ${opts.maxObjects ?? 256}
bias: 0
membranes:
  skin:
    rules: ${opts.skinRules ?? '[]'}
  leaf:
    parent: skin
    permeability: ${opts.perm ?? 1}
    receptors:
      - { id: A, kind: words, words: [a], max: ${opts.max ?? 8}, emit: { type: a, charge: 1 } }
      - { id: B, kind: words, words: [b], max: 8, emit: { type: b, charge: 1 } }
    rules: ${opts.rules ?? '[]'}
`;

describe('evolution is bounded', () => {
  test('a rule set that would loop forever stops at maxSteps', () => {
    // tick → tick rewrites forever; it must stop after maxSteps steps, one application per step.
    const yaml = leaf({
      perm: '{ default: 1, types: { a: 0 } }',
      rules: '[{ id: LOOP, maxApplications: unbounded, when: [{ type: a }], produce: [{ type: a, charge: 1 }] }]',
      maxSteps: 7,
    });
    const r = run(yaml, 'a');
    assert.equal(r.steps, 7);
    assert.equal(r.hit('LOOP'), 7);
  });

  test('a doubling rule is capped by maxObjects', () => {
    const yaml = leaf({
      perm: '{ default: 1, types: { a: 0 } }',
      rules: '[{ id: DOUBLE, maxApplications: unbounded, when: [{ type: a }], produce: [{ type: a }, { type: a }] }]',
      maxSteps: 40,
      maxObjects: 64,
    });
    const r = run(yaml, 'a');
    // 1, 2, 4, … 32 objects; then a full application would pass 64, so the system stops changing.
    assert.ok(r.steps < 40, `${r.steps} steps`);
    assert.ok(r.hit('DOUBLE') < 64, `${r.hit('DOUBLE')} applications`);
  });

  test('a catalyst-only rule applies once per step, and its budget bounds it', () => {
    const unbounded = leaf({ perm: '{ default: 1, types: { a: 0 } }', rules: '[{ id: C, maxApplications: unbounded, when: [{ type: a, keep: true }], produce: [{ type: b }] }]' });
    assert.equal(run(unbounded, 'a').hit('C'), 4);
    const once = leaf({ perm: '{ default: 1, types: { a: 0 } }', rules: '[{ id: C, when: [{ type: a, keep: true }], produce: [{ type: b }] }]' });
    assert.equal(run(once, 'a a a').hit('C'), 1);
  });

  test('evolution halts early when nothing changes', () => {
    const r = run(leaf({}), 'a');
    assert.equal(r.steps, 1); // the a moves to the skin in step 1; step 2 changes nothing
    assert.equal(r.sum, 1);
  });
});

describe('permeability', () => {
  test('0 blocks a child\'s signals from the skin', () => {
    const open = run(leaf({ perm: '1' }), 'a a');
    assert.equal(open.sum, 2);
    const closed = run(leaf({ perm: '0' }), 'a a');
    assert.equal(closed.sum, 0);
    assert.equal(closed.probability, 0.5); // logistic(bias 0): no evidence reached the skin
    assert.equal(closed.hit('A'), 2); // the receptor did fire
  });

  test('a fraction scales the charge that passes', () => {
    assert.equal(run(leaf({ perm: '0.25' }), 'a a').sum, 0.5);
  });

  test('per-type permeability lets some types through and keeps others', () => {
    const r = run(leaf({ perm: '{ default: 0, types: { b: 1 } }' }), 'a b b');
    assert.equal(r.charge('A'), 0);
    assert.equal(r.charge('B'), 2);
  });

  test('each membrane boundary applies its own permeability', () => {
    const yaml = `
version: 1
membranes:
  skin: {}
  mid: { parent: skin, permeability: 0.5 }
  leaf:
    parent: mid
    permeability: 0.5
    receptors: [{ id: A, kind: words, words: [a], emit: { type: a, charge: 4 } }]
`;
    const r = run(yaml, 'a');
    assert.equal(r.sum, 1);
    assert.equal(r.steps, 2);
  });
});

describe('rules', () => {
  test('priority: the higher rule consumes the shared object first', () => {
    const rules = (hi: string, lo: string) => `[
      { id: LOW, priority: ${lo}, when: [{ type: a }], produce: [{ type: b, charge: -1 }] },
      { id: HIGH, priority: ${hi}, when: [{ type: a }], produce: [{ type: b, charge: 5 }] }]`;
    const r = run(leaf({ rules: rules('10', '0') }), 'a');
    assert.equal(r.hit('HIGH'), 1);
    assert.equal(r.hit('LOW'), 0);
    const swapped = run(leaf({ rules: rules('0', '10') }), 'a');
    assert.equal(swapped.hit('LOW'), 1);
    assert.equal(swapped.hit('HIGH'), 0);
  });

  test('maximal parallelism: an unbounded rule applies as often as its left side fits', () => {
    const r = run(leaf({ rules: '[{ id: PAIR, maxApplications: unbounded, when: [{ type: a, count: 2 }], produce: [{ type: b, charge: 10 }] }]' }), 'a a a a a');
    assert.equal(r.hit('PAIR'), 2);
    assert.equal(r.charge('PAIR'), 20);
    assert.equal(r.charge('A'), 1); // the fifth a was left over and passed up
  });

  test('min is a threshold; count is what one application takes', () => {
    const rule = '[{ id: T, when: [{ type: a, min: 3, keep: true }], produce: [{ type: b, charge: 1 }] }]';
    assert.equal(run(leaf({ rules: rule }), 'a a').hit('T'), 0);
    assert.equal(run(leaf({ rules: rule }), 'a a a').hit('T'), 1);
  });

  test('an absent pattern inhibits the rule', () => {
    const rule = '[{ id: I, when: [{ type: a, keep: true }, { type: b, absent: true }], produce: [{ type: b, value: I2, charge: 1 }] }]';
    assert.equal(run(leaf({ rules: rule }), 'a').hit('I'), 1);
    assert.equal(run(leaf({ rules: rule }), 'a b').hit('I'), 0);
  });

  test('charge conditions select objects by their own charge', () => {
    const yaml = leaf({ rules: '[{ id: POS, when: [{ type: a, charge: { gt: 2 } }], produce: [{ type: b, charge: 1 }] }]' });
    assert.equal(run(yaml, 'a').hit('POS'), 0);
  });

  test('{sum: k} charges the product with k × the consumed charge', () => {
    const r = run(leaf({ rules: '[{ id: S, when: [{ type: a, count: 3 }], produce: [{ type: b, charge: { sum: 0.5 } }] }]' }), 'a a a');
    assert.equal(r.charge('S'), 1.5);
    assert.equal(r.charge('A'), 0);
  });

  test('products appear at the end of the step: a chain takes one step per link', () => {
    const rules = `[
      { id: FIRST, when: [{ type: a }], produce: [{ type: b, value: mid }] },
      { id: SECOND, when: [{ type: b, value: mid }], produce: [{ type: b, value: done, charge: 3 }] }]`;
    const r = run(leaf({ perm: '{ default: 1, types: { b: 0 } }', rules, skinRules: '[]' }), 'a');
    assert.equal(r.hit('FIRST'), 1);
    assert.equal(r.hit('SECOND'), 1);
    assert.equal(r.steps, 2);
  });

  test('skin rules see what arrives from different children', () => {
    const yaml = `
version: 1
membranes:
  skin:
    rules: [{ id: BOTH, when: [{ type: x, keep: true }, { type: y, keep: true }], produce: [{ type: z, charge: 2 }] }]
  left: { parent: skin, receptors: [{ id: X, kind: words, words: [x], emit: { type: x } }] }
  right: { parent: skin, receptors: [{ id: Y, kind: words, words: [y], emit: { type: y } }] }
`;
    assert.equal(run(yaml, 'x y').charge('BOTH'), 2);
    assert.equal(run(yaml, 'x').hit('BOTH'), 0);
  });

  test('dissolution releases a closed membrane\'s objects unscaled and adopts its children', () => {
    const yaml = `
version: 1
membranes:
  skin: {}
  vault:
    parent: skin
    permeability: 0
    rules: [{ id: OPEN, when: [{ type: key }], dissolve: true }]
  inner:
    parent: vault
    permeability: { default: 0, types: { key: 1 } }
    receptors:
      - { id: KEY, kind: words, words: [key], emit: { type: key } }
      - { id: GOLD, kind: words, words: [gold], emit: { type: gold, charge: 3 } }
    rules: [{ id: LEAK, when: [{ type: gold, keep: true }, { type: key, absent: true }], maxApplications: 1, produce: [{ type: gold, value: leaked, charge: 1 }] }]
`;
    const locked = run(yaml, 'gold');
    assert.equal(locked.sum, 0);
    const opened = run(yaml, 'key gold');
    assert.deepEqual(opened.dissolved, ['vault']);
    // inner's gold cannot leave inner (permeability 0 for gold), so nothing charged arrives…
    assert.equal(opened.sum, 0);
    // …but gold that had passed into the closed vault reaches the skin, unscaled, when it dissolves.
    const yaml2 = yaml.replace('types: { key: 1 }', 'types: { key: 1, gold: 1 }');
    assert.equal(run(yaml2, 'key gold').sum, 3);
  });
});
