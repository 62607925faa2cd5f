/**
 * The model container: round trips, canonical encoding, the problems verifyModel names for each
 * kind of damage, and fuzzing. Fuzz properties: random bytes, bit flips, truncation/extension and
 * "flip then re-seal" (the whole-file hash recomputed, so the structural checks behind it are
 * exercised too) always give either ModelFormatError or a decode of exactly the original (or, for
 * re-sealed input, of bytes the encoder reproduces exactly); verifyModel never throws and agrees.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeModel, encodeModel, MAX_SECTIONS, ModelFormatError, verifyModel } from '../../../classifier/model/container.ts';
import type { ModelSections } from '../../../classifier/model/types.ts';

/** Runs per property: 95,000 fuzzed containers in all. */
const RUNS = { random: 25_000, flips: 25_000, resealed: 30_000, resized: 15_000 };

const sample = (): ModelSections =>
  new Map([
    ['bayes', Buffer.from('token counts')],
    ['reservoir', Buffer.alloc(1000, 7)],
    ['empty', Buffer.alloc(0)],
    ['meta', Buffer.from(JSON.stringify({ trainedOn: 1234 }))],
  ]);

const sha = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

/** Recompute the trailer after tampering, as a careless (or hostile) tool would. */
function reseal(buf: Buffer): Buffer {
  const out = Buffer.from(buf);
  if (out.length < 32) return out;
  sha(out.subarray(0, out.length - 32)).copy(out, out.length - 32);
  return out;
}

function decodeErr(buf: Buffer): ModelFormatError {
  try {
    decodeModel(buf);
  } catch (err) {
    assert.ok(err instanceof ModelFormatError, `expected ModelFormatError, got ${String(err)}`);
    return err;
  }
  assert.fail('decodeModel accepted a damaged container');
}

test('round trip: sections, order and bytes survive; the encoding is canonical', () => {
  const sections = sample();
  const buf = encodeModel(sections);
  assert.equal(buf.subarray(0, 8).toString('ascii'), 'CEERMODL');
  const decoded = decodeModel(buf);
  assert.equal(decoded.formatVersion, 1);
  assert.deepEqual([...decoded.sections.keys()], ['bayes', 'reservoir', 'empty', 'meta']);
  for (const [name, bytes] of sections) assert.ok(decoded.sections.get(name)!.equals(bytes), name);
  assert.ok(encodeModel(decoded.sections).equals(buf));
  assert.equal(decoded.sha256, sha(buf.subarray(0, buf.length - 32)).toString('hex'));
  assert.deepEqual(decoded.info[1], { name: 'reservoir', bytes: 1000, sha256: sha(Buffer.alloc(1000, 7)).toString('hex') });
  // No sections at all is a valid (if useless) model.
  assert.equal(decodeModel(encodeModel(new Map())).sections.size, 0);
});

test('verifyModel reports a valid file with its section table', () => {
  const report = verifyModel(encodeModel(sample()));
  assert.equal(report.ok, true);
  assert.deepEqual(report.problems, []);
  assert.equal(report.formatVersion, 1);
  assert.deepEqual(
    report.sections.map((s) => [s.name, s.bytes]),
    [['bayes', 12], ['reservoir', 1000], ['empty', 0], ['meta', 18]],
  );
});

test('encodeModel refuses names that are not identifiers and too many sections', () => {
  for (const name of ['', 'Bayes', '0', '9lives', 'a b', 'x'.repeat(65), 'é']) {
    assert.throws(() => encodeModel(new Map([[name, Buffer.alloc(1)]])), RangeError, name);
  }
  const many: ModelSections = new Map(Array.from({ length: MAX_SECTIONS + 1 }, (_, i) => [`s${i}`, Buffer.alloc(0)]));
  assert.throws(() => encodeModel(many), /at most 256 sections/);
  assert.throws(() => encodeModel(new Map([['a', 'text' as unknown as Buffer]])), TypeError);
});

test('each kind of damage is named', () => {
  const good = encodeModel(sample());

  assert.match(decodeErr(Buffer.from('not a model at all, just some text here and there')).message, /bad magic "not a mo", expected "CEERMODL"/);
  assert.match(decodeErr(Buffer.alloc(0)).message, /0 bytes, shorter than the smallest container/);
  assert.match(decodeErr(good.subarray(0, good.length - 10)).message, /header says \d+ \(truncated\)/);
  assert.match(decodeErr(Buffer.concat([good, Buffer.from('x')])).message, /extra bytes after the end/);

  const v2 = Buffer.from(good);
  v2.writeUInt16BE(2, 8);
  assert.match(decodeErr(v2).message, /format version 2 is not supported \(this build reads version 1\)/);

  // A flipped bit inside the reservoir's data: the whole-file hash and that section's hash fail.
  const flipped = Buffer.from(good);
  const at = good.indexOf(Buffer.alloc(1000, 7)) + 500;
  flipped[at]! ^= 0x10;
  const err = decodeErr(flipped);
  assert.equal(err.problems.length, 2, err.message);
  assert.match(err.problems[0]!, /^whole-file SHA-256 mismatch \(stored [0-9a-f]{12}…, computed [0-9a-f]{12}…\)$/);
  assert.match(err.problems[1]!, /^section "reservoir": SHA-256 mismatch/);
  // Re-sealed, only the section hash is left to catch it.
  assert.deepEqual(
    decodeErr(reseal(flipped)).problems.map((p) => p.replace(/ \(.*/, '')),
    ['section "reservoir": SHA-256 mismatch'],
  );

  const flags = reseal(Buffer.from(good).fill(1, 10, 11));
  assert.match(decodeErr(flags).message, /flags are 0x100, expected 0/);
  const count = Buffer.from(good);
  count.writeUInt32BE(1_000_000, 12);
  assert.match(decodeErr(reseal(count)).message, /section count 1000000 is impossible/);

  const report = verifyModel(flipped);
  assert.equal(report.ok, false);
  assert.equal(report.sections.length, 4, 'a damaged file still lists its sections');
  assert.deepEqual(verifyModel('nope').problems, ['input is not a Buffer']);
  assert.throws(() => decodeModel(42 as unknown as Buffer), ModelFormatError);
});

// ─────────────────────────────── fuzzing ───────────────────────────────

const nameArb = fc.oneof(
  fc.constantFrom('bayes', 'reservoir', 'membranes', 'affect', 'stacker', 'meta'),
  fc.stringMatching(/^[a-z][a-z0-9_.-]{0,63}$/),
);
const sectionsArb = fc
  .uniqueArray(fc.tuple(nameArb, fc.uint8Array({ maxLength: 200 })), { selector: ([n]) => n, maxLength: 6 })
  .map((entries) => new Map(entries.map(([n, b]) => [n, Buffer.from(b)])) as ModelSections);

/** Decode with the only allowed failure; null for ModelFormatError. Also checks verifyModel agrees. */
function outcome(buf: Buffer) {
  const report = verifyModel(buf);
  try {
    const decoded = decodeModel(buf);
    assert.equal(report.ok, true, 'verifyModel rejected what decodeModel accepted');
    return decoded;
  } catch (err) {
    if (!(err instanceof ModelFormatError)) throw err;
    assert.equal(report.ok, false, 'verifyModel accepted what decodeModel rejected');
    assert.deepEqual(report.problems, err.problems);
    assert.ok(err.problems.length > 0);
    return null;
  }
}

function sameSections(a: ModelSections, b: ModelSections): boolean {
  const ea = [...a];
  const eb = [...b];
  return ea.length === eb.length && ea.every(([n, x], i) => eb[i]![0] === n && eb[i]![1].equals(x));
}

test(`fuzz: ${RUNS.random} random inputs (some behind a valid magic and version) are refused cleanly`, () => {
  const prefix = Buffer.from('CEERMODL\x00\x01', 'latin1');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (bytes, withPrefix) => {
      const buf = withPrefix ? Buffer.concat([prefix, bytes]) : Buffer.from(bytes);
      assert.equal(outcome(buf), null);
    }),
    { numRuns: RUNS.random },
  );
});

test(`fuzz: ${RUNS.flips} valid containers with 1-8 flipped bits decode to the original or are refused`, () => {
  fc.assert(
    fc.property(sectionsArb, fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), (sections, positions) => {
      const original = encodeModel(sections);
      const buf = Buffer.from(original);
      for (const p of positions) buf[(p >> 3) % buf.length]! ^= 1 << (p & 7);
      const decoded = outcome(buf);
      // Only flips that cancel out (the same bit twice) may leave a decodable file.
      if (decoded) {
        assert.ok(buf.equals(original));
        assert.ok(sameSections(decoded.sections, sections));
      }
    }),
    { numRuns: RUNS.flips },
  );
});

test(`fuzz: ${RUNS.resealed} flipped-then-resealed containers are refused or re-encode byte for byte`, () => {
  fc.assert(
    fc.property(sectionsArb, fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), fc.boolean(), (sections, positions, headerOnly) => {
      const original = encodeModel(sections);
      const buf = Buffer.from(original);
      // Header and table are where structure lives; aim there half of the time.
      const span = headerOnly ? Math.min(buf.length - 32, 24 + 8 * 42) : buf.length - 32;
      for (const p of positions) buf[(p >> 3) % span]! ^= 1 << (p & 7);
      const decoded = outcome(reseal(buf));
      if (decoded) assert.ok(encodeModel(decoded.sections).equals(reseal(buf)), 'decoded but not canonical');
    }),
    { numRuns: RUNS.resealed },
  );
});

test(`fuzz: ${RUNS.resized} truncated or extended containers are refused`, () => {
  fc.assert(
    fc.property(sectionsArb, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.boolean(), (sections, cut, extra, truncate) => {
      const original = encodeModel(sections);
      const buf = truncate ? original.subarray(0, cut % original.length) : Buffer.concat([original, extra]);
      assert.equal(outcome(buf), null);
      assert.equal(outcome(reseal(buf)), null);
    }),
    { numRuns: RUNS.resized },
  );
});
