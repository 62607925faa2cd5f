import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ESN_PRESETS, ReservoirComponent } from '../../../classifier/esn/esn.ts';
import { Rng } from '../../../classifier/esn/rng.ts';
import type { MailClass, MessageFeatures } from '../../../classifier/types.ts';

/**
 * Synthetic messages: 16 steps of 4 tokens; 30 % of a spam message's tokens come from 20
 * "spammy" tokens, 30 % of a ham message's from 20 "hammy" ones, the rest from 160 shared ones.
 */
const vocabRng = new Rng(1234);
const vocab = Uint32Array.from({ length: 400 }, () => vocabRng.nextU32());

function corpus(seed: number) {
  const r = new Rng(seed);
  return (cls: MailClass): MessageFeatures => {
    const n = 64;
    const sequence = new Uint32Array(2 * n);
    for (let i = 0; i < n; i++) {
      const t = r.next() < 0.3 ? (cls === 'spam' ? 0 : 20) + r.int(20) : 40 + r.int(160);
      sequence[2 * i] = vocab[2 * t]!;
      sequence[2 * i + 1] = vocab[2 * t + 1]!;
    }
    return message(sequence, Uint32Array.from({ length: 16 }, (_, i) => i * 4));
  };
}

function message(sequence: Uint32Array, steps: Uint32Array): MessageFeatures {
  return {
    tokens: sequence,
    sequence,
    steps,
    text: '',
    subject: '',
    urls: [],
    urlDomains: [],
    auth: {},
    html: { tags: 0, hiddenTextChars: 0, textChars: 0 },
    attachmentTypes: [],
    numeric: {},
  };
}

const cls = (i: number): MailClass => (i % 2 === 0 ? 'spam' : 'ham');

function train(c: ReservoirComponent, seed: number, n: number) {
  const gen = corpus(seed);
  return c.fit(Array.from({ length: n }, (_, i) => ({ features: gen(cls(i)), cls: cls(i) })));
}

function accuracy(c: ReservoirComponent, seed: number, n = 400): number {
  const gen = corpus(seed);
  let ok = 0;
  for (let i = 0; i < n; i++) {
    const s = c.score(gen(cls(i)));
    if (s.probability > 0.5 === (cls(i) === 'spam')) ok++;
  }
  return ok / n;
}

describe('ReservoirComponent', () => {
  test('abstains until minLearned of each class, then votes with details', () => {
    const c = new ReservoirComponent({ reservoirSize: 40, minLearned: 20 });
    const gen = corpus(1);
    for (let i = 0; i < 39; i++) c.learn(gen(cls(i)), cls(i));
    const early = c.score(gen('spam'));
    assert.deepEqual([early.name, early.voted, early.probability], ['reservoir', false, 0.5]);
    c.learn(gen('ham'), 'ham');
    const s = c.score(gen('spam'));
    assert.equal(s.voted, true);
    assert.deepEqual(Object.keys(s.details ?? {}).sort(), ['layers', 'readout', 'steps']);
    assert.equal(s.details?.steps, 16);
    assert.equal(s.details?.layers, 2);
  });

  test('learns separable synthetic sequences to > 95 % accuracy (both readout modes)', () => {
    for (const mode of ['normal-equations', 'rls'] as const) {
      const c = new ReservoirComponent({ mode, seed: 3 });
      train(c, 10, 200);
      const acc = accuracy(c, 20);
      assert.ok(acc > 0.95, `${mode}: accuracy ${acc}`);
    }
  });

  test('same seed and options → bit-identical model; a different seed differs', () => {
    const a = new ReservoirComponent({ seed: 9, reservoirSize: 60 });
    const b = new ReservoirComponent({ seed: 9, reservoirSize: 60 });
    const c = new ReservoirComponent({ seed: 10, reservoirSize: 60 });
    for (const m of [a, b, c]) train(m, 4, 60);
    assert.ok(a.serialize().equals(b.serialize()));
    assert.ok(!a.serialize().equals(c.serialize()));
  });

  test('unlearn reverses learn', () => {
    const c = new ReservoirComponent({ reservoirSize: 50, minLearned: 1 });
    train(c, 5, 60);
    const gen = corpus(6);
    const probe = gen('spam');
    const before = c.score(probe);
    const extra = Array.from({ length: 10 }, (_, i) => gen(cls(i)));
    extra.forEach((f, i) => c.learn(f, cls(i)));
    assert.notEqual(c.score(probe).details?.readout, before.details?.readout);
    extra.forEach((f, i) => c.learn(f, cls(i), -1));
    const after = c.score(probe);
    assert.deepEqual([c.nspam, c.nham], [30, 30]);
    assert.ok(Math.abs((after.details?.readout as number) - (before.details?.readout as number)) < 1e-9);
  });

  test('serialization round trip restores an identical scorer', () => {
    for (const mode of ['normal-equations', 'rls'] as const) {
      const c = new ReservoirComponent({ ...ESN_PRESETS.conservative, mode, seed: 77, leakRate: 0.5 });
      train(c, 7, 80);
      const d = ReservoirComponent.deserialize(c.serialize());
      assert.deepEqual(d.options, c.options);
      const gen = corpus(8);
      for (let i = 0; i < 10; i++) {
        const f = gen(cls(i));
        assert.deepEqual(d.score(f), c.score(f));
      }
      assert.ok(d.serialize().equals(c.serialize()));
    }
    assert.throws(() => ReservoirComponent.deserialize(Buffer.alloc(300)), /magic/);
  });

  test('pool() can be cached: scorePooled/learnPooled match score/learn', () => {
    const c = new ReservoirComponent({ reservoirSize: 30, minLearned: 1 });
    const gen = corpus(2);
    const f = gen('spam');
    const pooled = c.pool(f);
    c.learnPooled(pooled, 'spam');
    c.learn(gen('ham'), 'ham');
    assert.deepEqual(c.scorePooled(pooled, 16), c.score(f));
  });

  test('no NaN on empty or huge input', () => {
    const c = new ReservoirComponent({ reservoirSize: 40, minLearned: 1 });
    train(c, 3, 20);
    const empty = c.score(message(new Uint32Array(0), new Uint32Array(0)));
    assert.ok(Number.isFinite(empty.probability) && empty.details?.steps === 0);
    const r = new Rng(4);
    const big = Uint32Array.from({ length: 2 * 200_000 }, () => r.nextU32());
    const huge = c.score(message(big, Uint32Array.from({ length: 2000 }, (_, i) => i * 100)));
    assert.ok(huge.probability >= 0 && huge.probability <= 1);
    c.learn(message(big, new Uint32Array([0])), 'spam');
    assert.ok(Number.isFinite(c.score(message(big, new Uint32Array(0))).probability));
  });
});
