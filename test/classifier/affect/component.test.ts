import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { AffectComponent } from '../../../classifier/affect/index.ts';
import type { MailClass, MessageFeatures } from '../../../classifier/types.ts';

function features(text: string, subject = ''): MessageFeatures {
  return {
    tokens: new Uint32Array(0),
    sequence: new Uint32Array(0),
    steps: new Uint32Array(0),
    text,
    subject,
    urls: [],
    urlDomains: [],
    auth: {},
    html: { tags: 0, hiddenTextChars: 0, textChars: 0 },
    attachmentTypes: [],
    numeric: {},
  };
}

const spammy: Array<[string, string]> = [
  ['ACT NOW!!! Your account is SUSPENDED. Verify immediately or lose access!', 'URGENT: account suspended'],
  ['Congratulations!!! You are our WINNER. Claim your amazing free prize today, offer expires soon!', 'YOU WON'],
  ['Click here to unlock your exclusive bonus. Hurry, limited time only!', 'Exclusive offer inside'],
  ['Warning: unusual activity detected. Confirm your password now to avoid suspension.', 'Security alert'],
  ['Buy now and save 90%! Incredible deal, unbelievable prices, act fast!', 'AMAZING DEAL'],
];
const hammy: Array<[string, string]> = [
  ['Hi Anna, thanks for the notes from yesterday. I think the figures look fine; maybe we could go through them on Monday?', 'Re: notes'],
  ['The meeting moved to room 4. Lunch afterwards as usual, if that suits everyone.', 'Meeting room'],
  ['Attached is the draft of the report. I was not sure about section 3, perhaps you could have a look.', 'Draft report'],
  ['Sorry I missed your call. The kids were ill, so it was a long weekend. Talk soon.', 'Sorry'],
  ['Here are the minutes from the committee. The budget was approved with two small changes.', 'Minutes'],
];

function dataset(copies: number): Array<[MessageFeatures, MailClass]> {
  const out: Array<[MessageFeatures, MailClass]> = [];
  for (let i = 0; i < copies; i++) {
    for (const [t, s] of spammy) out.push([features(t, s), 'spam']);
    for (const [t, s] of hammy) out.push([features(t, s), 'ham']);
  }
  return out;
}

describe('AffectComponent', () => {
  test('abstains with p = 0.5 until minLearned, then votes', () => {
    const c = new AffectComponent({ minLearned: 20 });
    const s0 = c.score(features(...spammy[0]!));
    assert.equal(s0.name, 'affect');
    assert.equal(s0.voted, false);
    assert.equal(s0.probability, 0.5);
    for (const [f, cls] of dataset(2)) c.learn(f, cls);
    assert.equal(c.learned, 20);
    assert.equal(c.score(features('hello')).voted, true);
  });

  test('online learning separates urgent spam from calm mail; details name emotions', () => {
    const c = new AffectComponent({ minLearned: 10, learningRate: 0.2 });
    for (const [f, cls] of dataset(30)) c.learn(f, cls);
    const spam = c.score(features('FINAL WARNING!!! Your account will be suspended today. Verify now!', 'URGENT'));
    const ham = c.score(features('Thanks for lunch yesterday, it was lovely. Maybe next week again?', 'lunch'));
    assert.ok(spam.probability > 0.7, `spam ${spam.probability}`);
    assert.ok(ham.probability < 0.3, `ham ${ham.probability}`);
    const d = spam.details as { emotions: string[]; arousal: number };
    assert.ok(d.emotions.some((e) => e.startsWith('fear')), String(d.emotions));
    assert.ok(d.arousal > 0.5);
  });

  test('fit reaches a low log loss; unlearn steps back', () => {
    const c = new AffectComponent({ minLearned: 0 });
    const res = c.fit(dataset(10));
    assert.ok(res.logLoss < 0.3, `log loss ${res.logLoss}`);
    assert.equal(c.learned, 100);
    const w = c.weightsByFeature();
    assert.ok(w.arousal! > 0, 'arousal points to spam');
    const f = features(...spammy[1]!);
    const before = c.score(f).probability;
    c.learn(f, 'spam');
    c.learn(f, 'spam', -1);
    assert.ok(Math.abs(c.score(f).probability - before) < 1e-3);
    assert.equal(c.learned, 100);
  });

  test('persona.dominance scales the log-odds by (0.5 + dominance)', () => {
    const trained = new AffectComponent({ minLearned: 0 });
    trained.fit(dataset(5));
    const state = trained.toJSON();
    const f = features(...spammy[2]!);
    const logit = (p: number) => Math.log(p / (1 - p));
    const at = (dominance: number) => logit(AffectComponent.load(state, { persona: { dominance } }).score(f).probability);
    assert.ok(Math.abs(at(1) / at(0) - 3) < 1e-6, `${at(1)} / ${at(0)}`);
    assert.ok(Math.abs(at(0.5) - logit(trained.score(f).probability)) < 1e-9);
    assert.ok(Math.abs(at(1)) > Math.abs(at(0.5)));
  });

  test('persona.arousal changes what the model sees', () => {
    const f = features('ACT NOW!!! your account is suspended');
    const lo = new AffectComponent({ persona: { arousal: 0 } }).extract(f).arousal;
    const hi = new AffectComponent({ persona: { arousal: 1 } }).extract(f).arousal;
    assert.ok(hi > lo);
  });

  test('state round-trips through JSON and Buffer', () => {
    const c = new AffectComponent({ minLearned: 5 });
    for (const [f, cls] of dataset(3)) c.learn(f, cls);
    const d = AffectComponent.load(c.serialize(), { minLearned: 5 });
    for (const [f] of dataset(1)) assert.deepEqual(d.score(f), c.score(f));
    assert.deepEqual(d.toJSON(), c.toJSON());
    assert.throws(() => AffectComponent.load(Buffer.from('{}')));
  });

  test('fast-check: random messages never throw, probability in [0, 1], no NaN', () => {
    const c = new AffectComponent({ minLearned: 0 });
    c.fit(dataset(2));
    fc.assert(
      fc.property(fc.string({ maxLength: 300, unit: 'binary' }), fc.string({ maxLength: 60 }), fc.constantFrom<MailClass>('spam', 'ham'), (text, subject, cls) => {
        const f = features(text, subject);
        const s = c.score(f);
        assert.ok(s.probability >= 0 && s.probability <= 1 && !Number.isNaN(s.probability), String(s.probability));
        c.learn(f, cls);
      }),
      { numRuns: 500 },
    );
  });
});
