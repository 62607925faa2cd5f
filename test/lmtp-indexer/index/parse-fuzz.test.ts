/**
 * Fuzzing parseForIndex: structured MIME trees (random types, encodings, charsets, boundaries that
 * are missing or wrong, nested messages, encoded-words, NULs), the same trees with bytes
 * mutated or cut short, and raw bytes, each fed in random chunkings. The property: it resolves
 * (an uncaught exception would fail the run), and nothing it returns holds a NUL, a lone
 * surrogate or more text than maxTextBytes. Seeds are random; fast-check prints seed and
 * counterexample on failure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { parseForIndex, type ParseLimits } from '../../../lmtp-indexer/index/parse.ts';
import type { ParsedMessage } from '../../../lmtp-indexer/types.ts';

const RUNS = { structured: 2_000, mutated: 2_000, raw: 2_000 };
// Small limits so that the fuzzer reaches them.
const LIMITS: ParseLimits = { maxTextBytes: 2048, snippetChars: 40, maxParts: 12, maxDepth: 4, maxHeaderBytes: 1024 };

type Node = { kind: 'leaf'; headers: string[]; body: Buffer } | { kind: 'multi'; headers: string[]; boundary: string | null; children: Node[]; epilogue: string };

const latin = (maxLength: number) => fc.string({ unit: 'binary', maxLength }).map((s) => s.replace(/[\r\n]/g, ' '));
const word = fc.oneof(
  fc.constantFrom('hello', 'été', 'résumé.pdf', '日本語', 'a\u0000b', '\uD800', 'x'.repeat(300)),
  latin(12),
  latin(12).map((s) => `=?UTF-8?B?${Buffer.from(s).toString('base64')}?=`),
  latin(8).map((s) => `=?ISO-8859-1?Q?${Buffer.from(s, 'latin1').toString('hex').replace(/../g, '=$&')}?=`),
  fc.constantFrom('=?UTF-8?B?@@@?=', '=?bogus?Q?x?=', '=?UTF-8?Q?=FF=FE?='),
);
const header = fc.oneof(
  fc.tuple(fc.constantFrom('Subject', 'From', 'To', 'Cc', 'Date', 'Message-ID', 'References', 'In-Reply-To', 'X-Spam-Status', 'X-Spam-Score', 'Received', 'Authentication-Results'), fc.array(word, { maxLength: 4 })).map(([k, ws]) => `${k}: ${ws.join(' ')}`),
  fc.constantFrom('From: "A, B" <a@b.example>, c@d', 'To: group: x@y, z@w;', 'Date: Tue, 2 Jan 2024 10:00:00 +0100', 'Received: by mx with ESMTP id 4XyzAbC; now', 'X-Spam-Status: Yes, score=1e400', 'Authentication-Results: mx; spf=pass dkim=fail dmarc=bestguesspass', 'X-Folded: a\r\n\tb\r\n c'),
  latin(40).map((s) => `X-${s}`),
);
const charset = fc.constantFrom('utf-8', 'iso-8859-1', 'utf-16le', 'utf-16', 'shift_jis', 'iso-2022-jp', 'gb2312', 'koi8-r', 'bogus-charset', '');
const encoding = fc.constantFrom('7bit', '8bit', 'binary', 'base64', 'quoted-printable', 'x-uuencode', 'BASE64 ');
const leafType = fc.constantFrom('text/plain', 'text/html', 'application/pdf', 'image/png', 'message/rfc822', 'message/delivery-status', 'text/calendar', '');
const disposition = fc.constantFrom('', 'inline', 'attachment', "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf", 'attachment; filename="=?UTF-8?Q?a=C3=BC?="', 'attachment; filename*0="a"; filename*1="b"', 'weird');
const bodyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc.array(word, { maxLength: 20 }).map((ws) => Buffer.from(ws.join(' '))),
  fc.constantFrom(Buffer.from('SGVsbG8gd29ybGQ=\r\n!!!=\r\n'), Buffer.from('caf=E9 =\r\nsoft=ZZ'), Buffer.from('<p>hi<b>x</p><script>alert(1)</script>'), Buffer.from('From: inner@x\r\nSubject: inner\r\n\r\ninner body')),
  fc.integer({ min: 1, max: 20_000 }).map((n) => Buffer.alloc(n, 0x61)),
);

const leaf: fc.Arbitrary<Node> = fc
  .record({ type: leafType, cs: charset, enc: encoding, disp: disposition, extra: fc.array(header, { maxLength: 3 }), body: bodyBytes })
  .map(({ type, cs, enc, disp, extra, body }) => ({
    kind: 'leaf',
    headers: [...(type ? [`Content-Type: ${type}${cs ? `; charset=${cs}` : ''}`] : []), `Content-Transfer-Encoding: ${enc}`, ...(disp ? [`Content-Disposition: ${disp}`] : []), ...extra],
    body: enc.trim().toLowerCase() === 'base64' && body.length % 2 ? Buffer.from(body.toString('base64')) : body,
  }));

const tree: fc.Arbitrary<Node> = fc.letrec<{ node: Node }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc
      .record({
        sub: fc.constantFrom('mixed', 'alternative', 'related', 'digest', 'signed'),
        boundary: fc.oneof(fc.constant(null), fc.constantFrom('b', 'XX', '--', 'a b', 'same'), latin(20)),
        children: fc.array(tie('node'), { maxLength: 5 }),
        epilogue: fc.constantFrom('', 'epilogue text', '--same--'),
      })
      .map(({ sub, boundary, children, epilogue }) => ({
        kind: 'multi' as const,
        headers: [`Content-Type: multipart/${sub}${boundary === null ? '' : `; boundary="${boundary}"`}`],
        boundary,
        children,
        epilogue,
      })),
  ),
})).node;

function render(node: Node, eol: string): Buffer {
  const head = Buffer.from(node.headers.join(eol) + eol + eol, 'latin1');
  if (node.kind === 'leaf') return Buffer.concat([head, node.body]);
  const b = node.boundary ?? 'missing';
  const parts: Buffer[] = [head, Buffer.from(`preamble${eol}`)];
  for (const child of node.children) parts.push(Buffer.from(`--${b}${eol}`), render(child, eol), Buffer.from(eol));
  parts.push(Buffer.from(`--${b}--${eol}${node.epilogue}`));
  return Buffer.concat(parts);
}

const message = fc
  .record({ top: fc.array(header, { maxLength: 8 }), body: tree, eol: fc.constantFrom('\r\n', '\n') })
  .map(({ top, body, eol }) => Buffer.concat([Buffer.from(top.join(eol) + (top.length ? eol : ''), 'latin1'), render(body, eol)]));

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.constantFrom('\r\n', '\n\n', '--', '\0', '=?', ':', '\r\n--b\r\n', '\xff\xfe') }),
);

function mutate(input: Buffer, ms: Array<fc.Arbitrary<unknown> extends never ? never : typeof mutation extends fc.Arbitrary<infer M> ? M : never>): Buffer {
  let b = Buffer.from(input);
  for (const m of ms) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    if (m.kind === 'flip') b[at] = m.byte;
    else if (m.kind === 'cut') b = b.subarray(0, at);
    else b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes, 'latin1'), b.subarray(at)]);
  }
  return b;
}

const chunking = fc.array(fc.integer({ min: 1, max: 4096 }), { minLength: 1, maxLength: 8 });

function chunks(input: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let pos = 0, i = 0; pos < input.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(input.subarray(pos, pos + n));
    pos += n;
  }
  return out;
}

/** What the runs reached, reported so a fuzzer that stopped reaching anything is noticed. */
class Reach {
  runs = 0;
  readonly counts = new Map<string, number>();
  see(m: ParsedMessage): void {
    this.runs++;
    const hit = (k: string) => this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
    if (m.attachments.length) hit('attachments');
    if (m.text.length) hit('text');
    if (m.subject) hit('subject');
    for (const p of m.problems) hit(p.replace(/\(.*\)|\d+/g, '…').slice(0, 60));
  }
  toString(): string {
    return `${this.runs} runs; ${[...this.counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`).join('; ')}`;
  }
}

async function check(input: Buffer, sizes: number[], reach: Reach): Promise<void> {
  const m = await parseForIndex(Readable.from(chunks(input, sizes)), LIMITS);
  const json = JSON.stringify(m);
  assert.ok(!json.includes('\\u0000'), 'no NUL anywhere');
  assert.ok(!/\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f])|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}/i.test(json), 'no lone surrogate');
  assert.ok(Buffer.byteLength(m.text) <= LIMITS.maxTextBytes);
  assert.ok(Array.from(m.snippet).length <= LIMITS.snippetChars);
  reach.see(m);
}

test(`structured MIME messages (${RUNS.structured} runs) always resolve, clean`, async (t) => {
  const reach = new Reach();
  await fc.assert(fc.asyncProperty(message, chunking, (input, sizes) => check(input, sizes, reach)), { numRuns: RUNS.structured });
  t.diagnostic(reach.toString());
  assert.equal(reach.runs, RUNS.structured);
  // The generator must keep reaching the interesting paths.
  for (const k of ['attachments', 'text', 'subject']) assert.ok((reach.counts.get(k) ?? 0) > 0, k);
  assert.ok([...reach.counts.keys()].some((k) => k.startsWith('more than')), 'the parts limit');
});

test(`mutated MIME messages (${RUNS.mutated} runs) always resolve, clean`, async (t) => {
  const reach = new Reach();
  await fc.assert(
    fc.asyncProperty(message, fc.array(mutation, { minLength: 1, maxLength: 6 }), chunking, (input, ms, sizes) => check(mutate(input, ms), sizes, reach)),
    { numRuns: RUNS.mutated },
  );
  t.diagnostic(reach.toString());
  assert.equal(reach.runs, RUNS.mutated);
});

test(`raw bytes (${RUNS.raw} runs) always resolve, clean`, async (t) => {
  const reach = new Reach();
  const raw = fc.oneof(fc.uint8Array({ maxLength: 4000 }).map((a) => Buffer.from(a)), fc.string({ unit: 'binary', maxLength: 2000 }).map((s) => Buffer.from(s)));
  await fc.assert(fc.asyncProperty(raw, chunking, (input, sizes) => check(input, sizes, reach)), { numRuns: RUNS.raw });
  t.diagnostic(reach.toString());
  assert.equal(reach.runs, RUNS.raw);
});
