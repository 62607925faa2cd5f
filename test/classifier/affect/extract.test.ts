import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { AFFECT_FEATURES, columnVariance, EMOTIONS, extractAffect, LEXICON, SEED_LEXICON, smoothPath } from '../../../classifier/affect/index.ts';

const urgent = 'ACT NOW!!! your account is suspended';
const calm = 'Hi Anna, thanks for the notes from yesterday. I put them in the shared folder; the figures look fine to me.';

describe('lexicon', () => {
  test('seven emotions, 30–60 seed words each, AFINN valence merged in', () => {
    assert.deepEqual([...EMOTIONS], ['joy', 'sadness', 'anger', 'fear', 'disgust', 'interest', 'surprise']);
    for (const e of EMOTIONS) {
      const n = SEED_LEXICON[e].length;
      assert.ok(n >= 30 && n <= 60, `${e}: ${n} words`);
    }
    assert.equal(LEXICON.get('abandon')?.valence, -2); // from AFINN-165
    assert.ok(LEXICON.get('suspended')!.emotions & (1 << EMOTIONS.indexOf('fear')));
    assert.ok(LEXICON.get('offers')!.emotions & (1 << EMOTIONS.indexOf('interest'))); // generated inflection
    assert.ok(!LEXICON.has("can't stand")); // multi-word AFINN entries are skipped
  });
});

describe('emotions and PAD', () => {
  test('an urgent "ACT NOW!!! your account is suspended" has higher arousal and fear than a calm note', () => {
    const u = extractAffect(urgent);
    const c = extractAffect(calm);
    assert.ok(u.arousal > c.arousal + 0.5, `arousal ${u.arousal} vs ${c.arousal}`);
    assert.ok(u.emotions.fear > c.emotions.fear + 0.5, `fear ${u.emotions.fear} vs ${c.emotions.fear}`);
    assert.ok(u.proxies.capsRatio > 0 && u.proxies.exclamation > 0 && u.proxies.urgency > 0);
    assert.ok(u.dominance > c.dominance, 'imperative opening + "your"');
    assert.ok(c.valence > u.valence);
  });

  test('dominance: imperatives at sentence start (also after "please"), second person, modals', () => {
    const bossy = extractAffect('Click the link. Please verify your details. You must reply today.');
    const plain = extractAffect('The link was in the report. The details were checked by the team.');
    assert.ok(bossy.proxies.imperative >= 0.6, String(bossy.proxies.imperative));
    assert.ok(bossy.dominance > plain.dominance + 0.5);
    // mid-sentence "click" is not an imperative
    assert.equal(extractAffect('The mouse made a click sound.').proxies.imperative, 0);
  });

  test('uncertainty rises with hedges and questions; valence follows AFINN with negation', () => {
    const unsure = extractAffect('Maybe we could meet? I think it might work, perhaps on Monday?');
    assert.ok(unsure.uncertainty > extractAffect(calm).uncertainty + 0.5);
    const happy = extractAffect('I am happy with this.', { persona: { valence: 0 } });
    const unhappy = extractAffect('I am not happy with this.', { persona: { valence: 0 } });
    assert.ok(happy.valence > 0 && unhappy.valence < 0);
    assert.equal(extractAffect('I am not afraid.').emotions.fear, 0); // negated words add no emotion
  });

  test('attention: one dominant emotion scores higher than a mixture; none scores 0', () => {
    const focused = extractAffect('warning risk danger threat alert');
    const mixed = extractAffect('happy sad angry afraid disgusting new amazing');
    assert.ok(focused.attention > 0.9, String(focused.attention));
    assert.ok(mixed.attention < 0.2, String(mixed.attention));
    assert.equal(extractAffect('the table is made of wood').attention, 0);
  });

  test('complexity: diverse long words beat repetition of short ones', () => {
    const rich = extractAffect('Considerable organisational restructuring necessitates comprehensive stakeholder consultation beforehand.');
    const poor = extractAffect('go go go go go go go go go go go go');
    assert.ok(rich.complexity > poor.complexity + 0.4);
  });

  test('the subject is its own segment; vector matches the named fields', () => {
    const a = extractAffect(calm, { subject: 'URGENT WARNING' });
    assert.equal(a.segments, 2);
    assert.equal(a.vector.length, AFFECT_FEATURES.length);
    assert.equal(a.vector[AFFECT_FEATURES.indexOf('arousal')], a.arousal);
    assert.equal(a.vector[AFFECT_FEATURES.indexOf('fear')], a.emotions.fear);
    assert.equal(a.vector[AFFECT_FEATURES.indexOf('volatility')], a.volatility);
  });

  test('non-ASCII words are read and lower-cased', () => {
    assert.ok(extractAffect('DANGER! ÜBERRASCHUNG').proxies.capsRatio === 1);
    assert.ok(extractAffect('Ａ İSTANBUL café naïve — “quoted” ✨').words >= 3);
  });
});

describe('smoothing (a discrete heat flow on the path of segments; not Ricci flow)', () => {
  test('reduces variance across segments and keeps the mean', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 20 }), fc.integer({ min: 1, max: 10 }), fc.double({ min: 0, max: 0.25, noNaN: true }), fc.infiniteStream(fc.double({ min: 0, max: 1, noNaN: true })), (n, steps, rate, stream) => {
        const dims = 7;
        const it = stream[Symbol.iterator]();
        const v = Float64Array.from({ length: n * dims }, () => it.next().value as number);
        const before = Array.from({ length: dims }, (_, d) => ({ sum: sumCol(v, n, dims, d), variance: columnVariance(v, n, dims, d) }));
        smoothPath(v, n, dims, steps, rate);
        for (let d = 0; d < dims; d++) {
          assert.ok(Math.abs(sumCol(v, n, dims, d) - before[d]!.sum) < 1e-9, 'mean kept');
          assert.ok(columnVariance(v, n, dims, d) <= before[d]!.variance + 1e-12, 'variance not increased');
        }
      }),
      { numRuns: 300 },
    );
  });

  test('strictly reduces the variance of a spike and converges to the mean', () => {
    const v = Float64Array.from([0, 0, 1, 0, 0]);
    smoothPath(v, 5, 1, 1);
    assert.ok(columnVariance(v, 5, 1, 0) < columnVariance(Float64Array.from([0, 0, 1, 0, 0]), 5, 1, 0));
    smoothPath(v, 5, 1, 500);
    for (const x of v) assert.ok(Math.abs(x - 0.2) < 1e-9);
  });

  test('in a message: a lone alarming paragraph is damped, the mean over segments is kept', () => {
    const para = 'We met on Tuesday to go through the quarterly figures and the plan for the next release.';
    const text = [para, para, 'Warning: there is a serious risk of danger here, threat alert.', para, para].join('\n\n');
    const raw = extractAffect(text, { smoothingSteps: 0, keepSegments: true });
    const smooth = extractAffect(text, { smoothingSteps: 3, keepSegments: true });
    assert.equal(raw.segments, 5);
    const fear = EMOTIONS.indexOf('fear');
    const col = (m: Float64Array) => Array.from({ length: 5 }, (_, i) => m[i * 7 + fear]!);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(Math.abs(mean(col(smooth.segmentEmotions!.smoothed)) - mean(col(raw.segmentEmotions!.raw))) < 1e-12);
    assert.ok(smooth.emotions.fear < raw.emotions.fear * 0.7, `${smooth.emotions.fear} vs ${raw.emotions.fear}`);
    assert.ok(smooth.volatility < raw.volatility);
  });
});

describe('persona', () => {
  test('valence sets the centre of the valence feature (shift = 0.5 × persona.valence)', () => {
    const text = 'It was fine, a good and useful meeting.';
    const lo = extractAffect(text, { persona: { valence: -1 } }).valence;
    const hi = extractAffect(text, { persona: { valence: 1 } }).valence;
    assert.ok(Math.abs(lo - hi - 1) < 1e-12, `${lo} - ${hi}`);
  });

  test('arousal sets how strongly high-arousal text counts; calm text stays calm', () => {
    const low = extractAffect(urgent, { persona: { arousal: 0 } }).arousal;
    const high = extractAffect(urgent, { persona: { arousal: 1 } }).arousal;
    assert.ok(high > low + 0.1, `${high} > ${low}`);
    const still = 'the table is made of wood';
    assert.equal(extractAffect(still, { persona: { arousal: 0 } }).arousal, 0);
    assert.equal(extractAffect(still, { persona: { arousal: 1 } }).arousal, 0);
  });

  test('out-of-range and non-finite traits are clamped or defaulted', () => {
    const a = extractAffect(urgent, { persona: { valence: 7, arousal: NaN, dominance: -3 } });
    const b = extractAffect(urgent, { persona: { valence: 1, arousal: 0.6 } });
    assert.equal(a.valence, b.valence);
    assert.equal(a.arousal, b.arousal);
  });
});

describe('robustness (fast-check)', () => {
  test('random strings and options never throw; every field is finite and in range', () => {
    const text = fc.oneof(fc.string({ maxLength: 400, unit: 'binary' }), fc.lorem({ maxCount: 80 }), fc.string({ maxLength: 200, unit: fc.constantFrom('A', 'b', '!', '?', '.', '\n', ' ', "'", 'É', '\r') }));
    const opts = fc.record(
      {
        persona: fc.record({ valence: fc.double(), arousal: fc.double(), dominance: fc.double() }, { requiredKeys: [] }),
        subject: fc.string({ maxLength: 50 }),
        segmentWords: fc.integer({ min: -5, max: 100 }),
        minSegmentWords: fc.integer({ min: 0, max: 20 }),
        maxSegments: fc.integer({ min: 0, max: 40 }),
        smoothingSteps: fc.integer({ min: -2, max: 20 }),
        smoothingRate: fc.double(),
        maxChars: fc.integer({ min: 0, max: 1000 }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(text, opts, (t, o) => {
        const a = extractAffect(t, o);
        for (let j = 0; j < a.vector.length; j++) {
          const x = a.vector[j]!;
          assert.ok(Number.isFinite(x), `${AFFECT_FEATURES[j]} = ${x}`);
          assert.ok(x >= (AFFECT_FEATURES[j] === 'valence' ? -1 : 0) && x <= 1 + 1e-12, `${AFFECT_FEATURES[j]} = ${x}`);
        }
        assert.ok(a.segments >= 1);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('speed', () => {
  test('extractAffect throughput on 2 KB texts', (t) => {
    const vocab = 'the a to of and in for you your we our is are this that with on free offer click here now urgent account verify thanks meeting tomorrow happy sorry amazing warning'.split(' ');
    let seed = 3;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff) / 0x7fffffff;
    const texts = Array.from({ length: 200 }, () => {
      let s = '';
      while (s.length < 2048) s += `${vocab[Math.floor(rnd() * vocab.length)]}${rnd() < 0.08 ? '. ' : rnd() < 0.01 ? '\n\n' : ' '}`;
      return s;
    });
    for (let i = 0; i < 2000; i++) extractAffect(texts[i % 200]!);
    const n = 20000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) extractAffect(texts[i % 200]!, { subject: 'Re: notes' });
    const perSec = Math.round(n / ((performance.now() - t0) / 1000));
    t.diagnostic(`affect: ${perSec} msg/s (2 KB)`);
    assert.ok(perSec > 1000, `${perSec} msg/s`);
  });
});

function sumCol(v: Float64Array, n: number, dims: number, d: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += v[i * dims + d]!;
  return s;
}
