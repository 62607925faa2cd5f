import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BayesFilter } from '../../../classifier/bayes/bayes.ts';
import { chi2Q, logChi2Q } from '../../../classifier/bayes/chi2.ts';
import type { MessageFeatures } from '../../../classifier/types.ts';

function hashPair(token: string): [number, number] {
  const d = createHash('md5').update(token).digest();
  return [d.readUInt32LE(0), d.readUInt32LE(4)];
}

function features(words: string[]): MessageFeatures {
  const unique = [...new Set(words)];
  const tokens = new Uint32Array(unique.length * 2);
  unique.forEach((w, i) => tokens.set(hashPair(w), 2 * i));
  return {
    tokens,
    sequence: tokens,
    steps: new Uint32Array(0),
    debugTokens: unique,
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

/** State of a filter as plain data: token entries sorted by key, and the message counts. */
function state(f: BayesFilter) {
  const entries = [...f.table.entries()].sort((a, b) => a.hi - b.hi || a.lo - b.lo);
  return { entries, nspam: f.nspam, nham: f.nham };
}

/** ln Q(a, x) (regularized upper incomplete gamma) by Numerical Recipes' series / continued fraction. */
function refLogGammaQ(a: number, x: number): number {
  let lnGammaA = 0;
  for (let i = 2; i < a; i++) lnGammaA += Math.log(i); // a is an integer here: ln Γ(a) = ln (a−1)!
  const lnPre = -x + a * Math.log(x) - lnGammaA;
  if (x < a + 1) {
    let ap = a;
    let del = 1 / a;
    let sum = del;
    for (let n = 0; n < 100000; n++) {
      ap += 1;
      del *= x / ap;
      sum += del;
      if (Math.abs(del) < Math.abs(sum) * 1e-17) break;
    }
    return Math.log1p(-Math.exp(lnPre + Math.log(sum)));
  }
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 100000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return lnPre + Math.log(h);
}

describe('chi-square survival function', () => {
  test('known table values', () => {
    assert.equal(chi2Q(2, 2), Math.exp(-1));
    for (const [x2, dof] of [[9.487729, 4], [18.307038, 10], [31.410433, 20], [124.342113, 100]] as const) {
      assert.ok(Math.abs(chi2Q(x2, dof) - 0.05) < 1e-6, `Q(${x2}, ${dof}) = ${chi2Q(x2, dof)}`);
    }
    assert.equal(chi2Q(0, 10), 1);
    assert.equal(chi2Q(Infinity, 10), 0);
  });

  test('agrees with the regularized gamma function in logs, far into the tail', () => {
    for (const dof of [2, 4, 10, 30, 100, 300, 1000, 3000]) {
      for (const x2 of [0.01, 0.5, 1, 5, 20, 50, 150, 300, 600, 1500, 3000, 8000, 20000]) {
        const got = logChi2Q(x2, dof);
        const want = refLogGammaQ(dof / 2, x2 / 2);
        const tol = 1e-9 * Math.max(1, Math.abs(want));
        assert.ok(Math.abs(got - want) <= tol || Math.abs(Math.exp(got) - Math.exp(want)) < 1e-13, `dof ${dof} x2 ${x2}: ${got} vs ${want}`);
      }
    }
  });

  test('no underflow: the log stays finite and decreasing where exp(-m) is 0', () => {
    let prev = 0;
    for (const x2 of [1000, 2000, 5000, 1e5]) {
      const l = logChi2Q(x2, 300);
      assert.ok(Number.isFinite(l) && l < prev, `${x2}: ${l}`);
      prev = l;
    }
  });
});

describe('BayesFilter', () => {
  const today = () => 20000;
  const spamWords = ['viagra', 'cheap', 'winner', 'casino', 'bitcoin'];
  const hamWords = ['meeting', 'tomorrow', 'agenda', 'invoice', 'lunch'];
  const filler = (i: number) => [`filler${i % 17}`, `common${i % 5}`];

  function trained(opts: ConstructorParameters<typeof BayesFilter>[0] = {}, n = 60): BayesFilter {
    const f = new BayesFilter({ today, ...opts });
    for (let i = 0; i < n; i++) {
      f.learn(features([...spamWords.filter((_, j) => (i + j) % 3 !== 0), ...filler(i)]), 'spam');
      f.learn(features([...hamWords.filter((_, j) => (i + j) % 3 !== 0), ...filler(i + 1)]), 'ham');
    }
    return f;
  }

  test('tokens seen only in spam score high, only in ham low, unknown tokens abstain', () => {
    const f = trained();
    const spam = f.score(features(['viagra', 'casino', 'winner', 'filler3', 'never-seen']));
    assert.equal(spam.name, 'bayes');
    assert.equal(spam.voted, true);
    assert.ok(spam.probability > 0.95, `spam ${spam.probability}`);
    const details = spam.details as { tokensUsed: number; topSpam: Array<{ token: string; p: number }>; topHam: unknown[] };
    assert.equal(details.tokensUsed, 3);
    assert.deepEqual(details.topSpam.map((t) => t.token).sort(), ['casino', 'viagra', 'winner']);
    assert.deepEqual(details.topHam, []);
    const ham = f.score(features(['meeting', 'agenda', 'lunch', 'common2']));
    assert.ok(ham.probability < 0.05, `ham ${ham.probability}`);
    const unknown = f.score(features(['qqq', 'zzz']));
    assert.equal(unknown.voted, false);
    assert.equal(unknown.probability, 0.5);
  });

  test("Robinson's f(w) and the unknown-token prior x", () => {
    const f = new BayesFilter({ today, minLearned: 0, robinsonX: 0.4 });
    for (let i = 0; i < 3; i++) f.learn(features(['only-spam', `s${i}`]), 'spam');
    for (let i = 0; i < 3; i++) f.learn(features([`h${i}`]), 'ham');
    const [hi, lo] = hashPair('only-spam');
    assert.ok(Math.abs(f.tokenProbability(hi, lo) - (1 * 0.4 + 3 * 1) / (1 + 3)) < 1e-12);
    const [uh, ul] = hashPair('unseen');
    assert.equal(f.tokenProbability(uh, ul), 0.4);
  });

  test('abstains until minLearned spam AND ham', () => {
    const f = new BayesFilter({ today, minLearned: 50 });
    for (let i = 0; i < 49; i++) f.learn(features(['viagra', `x${i}`]), 'spam');
    for (let i = 0; i < 100; i++) f.learn(features(['meeting', `y${i}`]), 'ham');
    const before = f.score(features(['viagra']));
    assert.deepEqual([before.voted, before.probability], [false, 0.5]);
    f.learn(features(['viagra']), 'spam');
    const after = f.score(features(['viagra']));
    assert.equal(after.voted, true);
    assert.ok(after.probability > 0.9);
  });

  test('maxTokens keeps the most extreme tokens; minDev drops weak ones', () => {
    const f = trained({ maxTokens: 2 });
    const s = f.score(features(['viagra', 'cheap', 'casino', 'meeting']));
    assert.equal((s.details as { tokensUsed: number }).tokensUsed, 2);
    const all = trained({ maxTokens: 0, minDev: 0 }).score(features(['viagra', 'filler1', 'common1', 'never']));
    assert.equal((all.details as { tokensUsed: number }).tokensUsed, 4);
  });

  test('unlearn exactly reverses learn', () => {
    const f = trained({}, 20);
    const before = state(f);
    const msg = features(['viagra', 'brand-new-token', 'meeting', 'filler3']);
    f.learn(msg, 'spam');
    assert.notDeepEqual(state(f), before);
    f.learn(msg, 'spam', -1);
    assert.deepEqual(state(f), before);
  });

  test('forgetting decays counts through the global scale, renormalising when it gets tiny', () => {
    const f = new BayesFilter({ today, minLearned: 0, forgetting: 0.5 });
    for (let i = 0; i < 40; i++) f.learn(features(['tok']), 'spam'); // scale reaches 2^-40: renormalised
    // After n learns the most recent counts 1, the one before 1/2, …: Σ 2^-i → 2.
    assert.ok(Math.abs(f.nspam - 2) < 1e-6, `nspam ${f.nspam}`);
    const [hi, lo] = hashPair('tok');
    const restored = BayesFilter.deserialize(f.serialize());
    assert.ok(Math.abs(restored.nspam - 2) < 1e-6);
    assert.equal(restored.tokenProbability(hi, lo), f.tokenProbability(hi, lo));
    assert.throws(() => new BayesFilter({ forgetting: 1.5 }), RangeError);
  });

  test('serialization round trip on random learn/unlearn sequences (property)', () => {
    const vocab = Array.from({ length: 60 }, (_, i) => `w${i}`);
    const op = fc.record({
      words: fc.subarray(vocab, { minLength: 1, maxLength: 12 }),
      spam: fc.boolean(),
      unlearn: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), fc.double({ min: 0, max: 0.49, noNaN: true }), (ops, minDev) => {
        const f = new BayesFilter({ today, minLearned: 1, minDev });
        const learned: Array<[string[], 'spam' | 'ham']> = [];
        for (const o of ops) {
          const prev = learned[learned.length - 1];
          if (o.unlearn && prev) {
            f.learn(features(prev[0]), prev[1], -1);
            learned.pop();
          } else {
            f.learn(features(o.words), o.spam ? 'spam' : 'ham');
            learned.push([o.words, o.spam ? 'spam' : 'ham']);
          }
        }
        const g = BayesFilter.deserialize(f.serialize());
        assert.deepEqual(state(g), state(f));
        assert.deepEqual(g.options.minDev, minDev);
        const probe = features(vocab.slice(0, 30));
        assert.deepEqual(g.score(probe), f.score(probe));
        assert.deepEqual(state(BayesFilter.deserialize(g.serialize())), state(f));
      }),
      { numRuns: 100 },
    );
  });

  test('one-class training with minLearned 0 gives finite scores; prune expires by day', () => {
    let day = 100;
    const f = new BayesFilter({ today: () => day, minLearned: 0 });
    f.learn(features(['old', 'both']), 'spam');
    day = 200;
    f.learn(features(['new', 'both']), 'spam');
    const s = f.score(features(['old', 'new', 'unseen']));
    assert.ok(Number.isFinite(s.probability) && s.probability > 0.5, String(s.probability));
    assert.equal(f.prune(150), 1); // 'old' was last seen on day 100
    assert.equal(f.table.size, 2);
  });

  test('deserialize rejects garbage and applies overrides', () => {
    assert.throws(() => BayesFilter.deserialize(Buffer.alloc(200)), /magic/);
    const f = BayesFilter.deserialize(trained().serialize(), { minLearned: 1000 });
    assert.equal(f.options.minLearned, 1000);
    assert.equal(f.score(features(['viagra'])).voted, false);
  });
});
