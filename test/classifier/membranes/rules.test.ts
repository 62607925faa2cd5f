import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { DEFAULT_RULES_URL, loadRules, parseRules, RulesError } from '../../../classifier/membranes/index.ts';

/** A minimal valid file; tests splice a fault into it. */
const MINIMAL = `
version: 1
membranes:
  skin: {}
  leaf:
    parent: skin
    receptors:
      - { id: R1, kind: auth, method: spf, results: [fail], emit: { type: a, charge: 1 } }
    rules:
      - { id: RULE1, when: [{ type: a, keep: true }], produce: [{ type: b, charge: 1 }] }
`;

function rulesError(text: string): RulesError {
  try {
    parseRules(text, 'test.yaml');
  } catch (err) {
    assert.ok(err instanceof RulesError, `expected a RulesError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a RulesError');
}

describe('default rules', () => {
  test('compile, with ~40 SpamAssassin-style tests and unique ids', () => {
    const r = loadRules(DEFAULT_RULES_URL);
    assert.ok(r.signals.length >= 40, `only ${r.signals.length} receptors + rules`);
    assert.equal(new Set(r.signals).size, r.signals.length);
    assert.equal(r.membranes[r.skin]!.id, 'skin');
    for (const id of ['SPF_FAIL', 'DMARC_FAIL', 'EXECUTABLE_ATTACHMENT', 'NUMERIC_HTTP_ADDR', 'HTML_HIDDEN_TEXT', 'MIME_HTML_ONLY', 'SUBJ_ALL_CAPS', 'REPLYTO_MISMATCH', 'MANY_RECIPIENTS', 'UNSUBSCRIBE_ONLY', 'CLICK_HERE_LINK', 'URGENCY_PILE', 'FREEMAIL_FORGED_REPLYTO']) {
      assert.ok(r.signals.includes(id), id);
    }
  });

  test('the hierarchy is skin → content, header, sender → leaves', () => {
    const r = loadRules(DEFAULT_RULES_URL);
    const parentOf = (id: string) => {
      const m = r.membranes.find((x) => x.id === id);
      assert.ok(m, id);
      return m.parent < 0 ? null : r.membranes[m.parent]!.id;
    };
    assert.equal(parentOf('skin'), null);
    for (const mid of ['content', 'header', 'sender']) assert.equal(parentOf(mid), 'skin');
    for (const leaf of ['spamWords', 'hamWords', 'phishingLinks', 'urgency']) assert.equal(parentOf(leaf), 'content');
    for (const leaf of ['authStatus', 'structure']) assert.equal(parentOf(leaf), 'header');
    for (const leaf of ['ipReputation', 'domainReputation']) assert.equal(parentOf(leaf), 'sender');
  });
});

describe('validation errors name the bad key', () => {
  test('the minimal file is valid', () => {
    const r = parseRules(MINIMAL);
    assert.deepEqual(r.signals, ['R1', 'RULE1']);
  });

  test('a wrong type at the top level', () => {
    const e = rulesError(MINIMAL.replace('version: 1', 'version: 1\nmaxSteps: four'));
    assert.equal(e.path, 'maxSteps');
    assert.match(e.message, /test\.yaml/);
    assert.match(e.message, /maxSteps: Expected number/);
  });

  test('a wrong type deep inside a rule', () => {
    const e = rulesError(MINIMAL.replace('{ type: a, keep: true }', '{ type: a, count: three }'));
    assert.equal(e.path, 'membranes.leaf.rules.0.when.0.count');
  });

  test('an unknown key is named itself', () => {
    const e = rulesError(MINIMAL.replace('  skin: {}', '  skin: { rulez: [] }'));
    assert.equal(e.path, 'membranes.skin.rulez');
    assert.match(e.message, /unknown key/);
  });

  test('an unknown receptor kind', () => {
    const e = rulesError(MINIMAL.replace('kind: auth', 'kind: telepathy'));
    assert.equal(e.path, 'membranes.leaf.receptors.0.kind');
  });

  test('a permeability outside [0, 1]', () => {
    const e = rulesError(MINIMAL.replace('    parent: skin', '    parent: skin\n    permeability: 2'));
    assert.equal(e.path, 'membranes.leaf.permeability');
  });

  test('an invalid regex', () => {
    const e = rulesError(MINIMAL.replace('{ id: R1, kind: auth, method: spf, results: [fail],', "{ id: R1, kind: regex, pattern: '(unclosed',"));
    assert.equal(e.path, 'membranes.leaf.receptors.0.pattern');
  });

  test('a word list entry without word characters', () => {
    // A function replacement: in a replacement string "$$" and "$'" are patterns.
    const e = rulesError(MINIMAL.replace('{ id: R1, kind: auth, method: spf, results: [fail],', () => "{ id: R1, kind: words, words: [ok, '$$$'],"));
    assert.equal(e.path, 'membranes.leaf.receptors.0.words.1');
  });

  test('an unknown fact, and a fact receptor without a comparison', () => {
    assert.equal(rulesError(MINIMAL.replace('kind: auth, method: spf, results: [fail]', 'kind: fact, fact: nonsense, gt: 1')).path, 'membranes.leaf.receptors.0.fact');
    assert.equal(rulesError(MINIMAL.replace('kind: auth, method: spf, results: [fail]', 'kind: fact, fact: urlCount')).path, 'membranes.leaf.receptors.0.gt');
    parseRules(MINIMAL.replace('kind: auth, method: spf, results: [fail]', 'kind: fact, fact: numeric.anything, gt: 1'));
  });

  test('an unknown parent, two skins, a cycle', () => {
    assert.equal(rulesError(MINIMAL.replace('parent: skin', 'parent: skn')).path, 'membranes.leaf.parent');
    assert.equal(rulesError(MINIMAL.replace('    parent: skin\n', '')).path, 'membranes');
    const cyc = MINIMAL.replace('  skin: {}', '  skin: {}\n  x: { parent: y }\n  y: { parent: x }');
    assert.match(rulesError(cyc).path, /^membranes\.[xy]\.parent$/);
  });

  test('a duplicate id names the second occurrence and the first', () => {
    const e = rulesError(MINIMAL.replace('id: RULE1', 'id: R1'));
    assert.equal(e.path, 'membranes.leaf.rules.0.id');
    assert.match(e.message, /also at membranes\.leaf\.receptors\.0\.id/);
  });

  test('a rule matching a type nothing produces (a typo) is an error', () => {
    assert.equal(rulesError(MINIMAL.replace('{ type: a, keep: true }', '{ type: aa, keep: true }')).path, 'membranes.leaf.rules.0.when.0.type');
    assert.equal(rulesError(MINIMAL.replace('{ type: a, keep: true }', '{ type: a, value: nope, keep: true }')).path, 'membranes.leaf.rules.0.when.0.value');
    assert.equal(rulesError(MINIMAL.replace('    parent: skin', '    parent: skin\n    permeability: { types: { zz: 0 } }')).path, 'membranes.leaf.permeability.types.zz');
  });

  test('the skin cannot dissolve', () => {
    const text = MINIMAL.replace('  skin: {}', '  skin:\n    rules: [{ id: S, when: [{ type: a }], dissolve: true }]');
    assert.equal(rulesError(text).path, 'membranes.skin.rules.0.dissolve');
  });

  test('YAML syntax errors and unreadable files', () => {
    assert.match(rulesError('version: 1\nmembranes: [unclosed').message, /not valid YAML/);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-rules-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    assert.throws(() => loadRules(path.join(dir, 'missing.yaml')), (e: unknown) => e instanceof RulesError && /cannot read/.test(e.message));
    const file = path.join(dir, 'ok.yaml');
    writeFileSync(file, MINIMAL);
    assert.equal(loadRules(file).source, file);
  });

  test('every problem is listed, the first one in .path', () => {
    const e = rulesError(MINIMAL.replace('version: 1', 'version: 2\nmaxSteps: 0'));
    assert.equal(e.problems.length, 2);
    assert.equal(e.path, 'version');
  });
});
