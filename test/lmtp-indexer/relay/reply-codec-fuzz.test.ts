// Fuzzing the reply codec and the dot-stuffer. Replies round-trip through encodeReply and the
// decoder under random chunking; random and mutated byte streams decode the same whatever the
// chunking, only ever throw ReplyProtocolError and never buffer past the line cap; stuffing then
// unstuffing gives the body back with normalised line ends, and the end-of-data line appears only
// at the end. Seeds are random; fast-check prints the seed and the shrunk counterexample on failure.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import fc from 'fast-check';
import { DotStuffer, encodeReply, ReplyDecoder, ReplyProtocolError, type ReplyDecoderOptions, type SmtpReply } from '../../../lmtp-indexer/relay/reply-codec.ts';

/** Runs per property: 75,000 in all. */
const RUNS = { roundTrip: 20_000, random: 20_000, mutated: 20_000, stuffer: 15_000 };

/** Chunk sizes, used in turn; 0 means "the rest at once". */
const chunkingArb = fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 8 });

function chunked(input: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < input.length; i++) {
    const n = sizes[i % sizes.length] || input.length;
    out.push(input.subarray(at, at + n));
    at += n;
  }
  return out;
}

type Outcome = { replies: SmtpReply[]; reason?: string };

/** Only ReplyProtocolError may escape, and the held bytes never pass the cap. */
function decode(chunks: Buffer[], opts: Partial<ReplyDecoderOptions>): Outcome {
  const d = new ReplyDecoder(opts);
  const replies: SmtpReply[] = [];
  for (const c of chunks) {
    try {
      replies.push(...d.push(c));
    } catch (err) {
      if (!(err instanceof ReplyProtocolError)) throw err;
      return { replies: [...replies, ...err.repliesBefore], reason: err.reason };
    }
    assert.ok(d.pendingBytes <= (opts.maxLineBytes ?? 4096), `pending ${d.pendingBytes} past the cap`);
  }
  return { replies };
}

const ENHANCED_LIKE = /^[245]\.\d{1,3}\.\d{1,3}(?: |$)/;
const textArb = fc
  .oneof(fc.string({ unit: 'binary-ascii', maxLength: 30 }), fc.string({ unit: 'grapheme', maxLength: 8 }))
  .map((s) => s.replace(/[\r\n\0]/g, ''));
const replyArb: fc.Arbitrary<SmtpReply> = fc
  .record({
    code: fc.integer({ min: 200, max: 599 }),
    withEnhanced: fc.boolean(),
    subject: fc.integer({ min: 0, max: 999 }),
    detail: fc.integer({ min: 0, max: 999 }),
    lines: fc.array(textArb, { minLength: 1, maxLength: 5 }),
  })
  .map(({ code, withEnhanced, subject, detail, lines }) => {
    const enhanced = `${Math.floor(code / 100)}.${subject}.${detail}`;
    // RFC 3463 has no class 3. Without an enhanced code, a line that starts like one would be
    // read as one: not a round trip.
    if (withEnhanced && Math.floor(code / 100) !== 3) return { code, enhanced, lines };
    return { code, lines: lines.map((l) => (ENHANCED_LIKE.test(l) ? `x${l}` : l)) };
  });

test(`valid replies round-trip under any chunking (${RUNS.roundTrip} runs)`, () => {
  fc.assert(
    fc.property(fc.array(replyArb, { minLength: 1, maxLength: 6 }), chunkingArb, (replies, sizes) => {
      const wire = Buffer.concat(replies.map(encodeReply));
      assert.deepEqual(decode(chunked(wire, sizes), {}), { replies });
    }),
    { numRuns: RUNS.roundTrip },
  );
});

/** Pieces that make up replies, plus the ones that break them; small caps so the caps are hit. */
const TOKENS = ['220 ', '250-', '250 ', '250', '552-', '552 ', '354 ', '2', '5', '0', '2.0.0 ', '5.2.2', ' ', '-', '\r\n', '\r\n', '\n', '\r', 'OK', '\0', 'x'.repeat(30)];
const pieceArb = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...TOKENS).map((t) => Buffer.from(t, 'latin1')) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }).map((b) => Buffer.from([b])) },
);
const capsArb = fc.record({ maxLineBytes: fc.integer({ min: 4, max: 48 }), maxLines: fc.integer({ min: 1, max: 6 }) });

test(`random streams: same outcome for every chunking, only typed errors (${RUNS.random} runs)`, () => {
  fc.assert(
    fc.property(fc.array(pieceArb, { maxLength: 60 }), chunkingArb, capsArb, (pieces, sizes, caps) => {
      const input = Buffer.concat(pieces);
      assert.deepEqual(decode(chunked(input, sizes), caps), decode([input], caps));
    }),
    { numRuns: RUNS.random },
  );
});

const mutationArb = fc.array(
  fc.record({ kind: fc.constantFrom('flip', 'insert', 'delete'), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  { minLength: 1, maxLength: 4 },
);

test(`mutated reply streams: same outcome for every chunking, only typed errors (${RUNS.mutated} runs)`, () => {
  fc.assert(
    fc.property(fc.array(replyArb, { minLength: 1, maxLength: 4 }), mutationArb, chunkingArb, (replies, mutations, sizes) => {
      const bytes = [...Buffer.concat(replies.map(encodeReply))];
      for (const m of mutations) {
        const at = m.at % (bytes.length + 1);
        if (m.kind === 'insert') bytes.splice(at, 0, m.byte);
        else if (at < bytes.length && m.kind === 'flip') bytes[at] = m.byte;
        else if (at < bytes.length) bytes.splice(at, 1);
      }
      const input = Buffer.from(bytes);
      const caps = { maxLineBytes: 64, maxLines: 4 };
      assert.deepEqual(decode(chunked(input, sizes), caps), decode([input], caps));
    }),
    { numRuns: RUNS.mutated },
  );
});

async function stuff(chunks: Buffer[]): Promise<Buffer> {
  const s = new DotStuffer();
  const out: Buffer[] = [];
  s.on('data', (b: Buffer) => out.push(b));
  for (const c of chunks) s.write(c);
  s.end();
  await once(s, 'end');
  return Buffer.concat(out);
}

/** The receiving side of RFC 5321 §4.5.2, written independently: lines up to `.`, leading dot removed. */
function unstuff(wire: Buffer): Buffer {
  const text = wire.toString('latin1');
  assert.ok(text.endsWith('.\r\n'), 'ends with the terminator line');
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) assert.equal(text[i - 1], '\r', `bare LF at ${i}`);
  const lines = text.slice(0, -3).split('\r\n');
  assert.equal(lines.pop(), '', 'the body part ends with CRLF');
  // The first `.` line is where a server stops reading: it must be the terminator, nowhere earlier.
  assert.ok(!lines.includes('.'), 'no end-of-data line inside the body');
  return Buffer.from(lines.map((l) => (l.startsWith('.') ? l.slice(1) : l) + '\r\n').join(''), 'latin1');
}

/** What the body should read as: bare LF made CRLF, and a final CRLF when the body lacks one. */
function normalised(body: Buffer): Buffer {
  let text = body.toString('latin1').replace(/(?<!\r)\n/g, '\r\n');
  if (text !== '' && !text.endsWith('\n')) text += '\r\n';
  return Buffer.from(text, 'latin1');
}

const bodyByteArb = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...Buffer.from('..\r\n\n\r.a')) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
);

test(`stuff then unstuff gives the body back, with normalised line ends (${RUNS.stuffer} runs)`, async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(bodyByteArb, { maxLength: 120 }), chunkingArb, async (bytes, sizes) => {
      const body = Buffer.from(bytes);
      const wire = await stuff(chunked(body, sizes));
      assert.deepEqual(unstuff(wire), normalised(body));
    }),
    { numRuns: RUNS.stuffer },
  );
});
