// Fuzzing the policy codec: valid requests round-trip through encodeRequest and the decoder at the
// exact caps and one under them; random and mutated byte streams give the same outcome as a
// byte-at-a-time reference model, whatever the chunking, only ever throw PolicyProtocolError, and
// never leave more than the line cap buffered. Seeds are random; fast-check prints the seed and
// the shrunk counterexample on failure.
import assert from 'node:assert/strict';
import { isAscii } from 'node:buffer';
import { test } from 'node:test';
import fc from 'fast-check';
import { ATTRIBUTE_NAMES } from '../../../policyd/protocol/attributes.ts';
import { encodeRequest, PolicyDecoder, PolicyProtocolError, type PolicyDecoderOptions } from '../../../policyd/protocol/codec.ts';
import type { PolicyAttributes } from '../../../policyd/types.ts';

/** Runs per property: 135,000 fuzzed request streams in all. */
const RUNS = { roundTrip: 40_000, random: 40_000, ascii: 30_000, mutated: 25_000 };

const REASONS = ['line too long', 'NUL byte', 'too many attributes', 'line without =', 'empty attribute name', 'bad attribute name', 'empty request'];

type Outcome = { requests: Array<Record<string, string>>; reason?: string; pending: number };

const NAME_CHARS = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-'];
const nameArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...ATTRIBUTE_NAMES, '__proto__', 'constructor') },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...NAME_CHARS), minLength: 1, maxLength: 24 }) },
);
/** Any well-formed Unicode except the three characters a value may not hold. */
const valueArb = fc
  .oneof(fc.string({ unit: 'binary-ascii', maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 10 }))
  .map((s) => s.replace(/[\r\n\0]/g, ''));
const requestArb = fc.dictionary(nameArb, valueArb, { minKeys: 1, maxKeys: 40 });
const streamArb = fc.array(requestArb, { minLength: 1, maxLength: 3 });
/** Chunk sizes, used in turn; 0 means "the rest at once". */
const chunkingArb = fc.array(fc.integer({ min: 0, max: 64 }), { minLength: 1, maxLength: 8 });

function chunked(input: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < input.length; i++) {
    const n = sizes[i % sizes.length] || input.length;
    out.push(input.subarray(at, at + n));
    at += n;
  }
  return out;
}

const plain = (reqs: PolicyAttributes[]) => reqs.map((r) => ({ ...r }));

/** Feed the chunks; only PolicyProtocolError may come out and the buffer never passes the cap. */
function decode(chunks: Buffer[], opts: PolicyDecoderOptions): Outcome {
  const d = new PolicyDecoder(opts);
  const requests: PolicyAttributes[] = [];
  for (const c of chunks) {
    try {
      requests.push(...d.push(c));
    } catch (err) {
      if (!(err instanceof PolicyProtocolError)) throw err;
      requests.push(...err.requestsBefore);
      return { requests: plain(requests), reason: err.reason, pending: d.pendingBytes };
    }
    assert.ok(d.pendingBytes <= opts.maxLineBytes, `pending ${d.pendingBytes} > cap ${opts.maxLineBytes}`);
  }
  return { requests: plain(requests), pending: d.pendingBytes };
}

/**
 * The protocol as README.md states it, one byte at a time: a NUL or the first byte past the line
 * cap fail where they stand; everything else is judged at the line's LF.
 */
function reference(input: Buffer, opts: PolicyDecoderOptions): Outcome {
  const requests: Array<Record<string, string>> = [];
  let attrs = Object.create(null) as Record<string, string>;
  let count = 0;
  let lineStart = 0;
  const fail = (reason: string): Outcome => ({ requests, reason, pending: 0 });
  for (let i = 0; i < input.length; i++) {
    if (input[i] !== 0x0a) {
      if (i - lineStart >= opts.maxLineBytes) return fail('line too long');
      if (input[i] === 0) return fail('NUL byte');
      continue;
    }
    let line = input.toString('latin1', lineStart, i);
    lineStart = i + 1;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '') {
      if (count === 0) return fail('empty request');
      requests.push({ ...attrs });
      attrs = Object.create(null) as Record<string, string>;
      count = 0;
      continue;
    }
    if (++count > opts.maxAttributes) return fail('too many attributes');
    const eq = line.indexOf('=');
    if (eq === -1) return fail('line without =');
    if (eq === 0) return fail('empty attribute name');
    if (!/^[A-Za-z0-9_.-]+$/.test(line.slice(0, eq))) return fail('bad attribute name');
    attrs[line.slice(0, eq)] = Buffer.from(line.slice(eq + 1), 'latin1').toString('utf8');
  }
  return { requests, pending: input.length - lineStart };
}

/** Whole, chunked and the reference agree; returns the outcome for coverage. */
function agree(input: Buffer, sizes: number[], opts: PolicyDecoderOptions): Outcome {
  const whole = decode([input], opts);
  const pieces = decode(chunked(input, sizes), opts);
  const model = reference(input, opts);
  assert.deepEqual(pieces.requests, whole.requests, 'chunked vs whole: requests');
  assert.equal(pieces.reason, whole.reason, 'chunked vs whole: error');
  assert.deepEqual(whole.requests, model.requests, 'decoder vs reference: requests');
  assert.equal(whole.reason, model.reason, 'decoder vs reference: error');
  if (!whole.reason) {
    assert.equal(whole.pending, model.pending, 'pending bytes');
    assert.equal(pieces.pending, model.pending, 'pending bytes, chunked');
  }
  for (const r of whole.requests) {
    assert.ok(Object.keys(r).length <= opts.maxAttributes);
    for (const [k, v] of Object.entries(r)) {
      assert.match(k, /^[A-Za-z0-9_.-]+$/);
      assert.ok(!/[\n\0]/.test(v));
    }
  }
  return whole;
}

class Coverage {
  readonly seen = new Map<string, number>();
  add(o: Outcome): void {
    const key = o.reason ?? 'ok';
    this.seen.set(key, (this.seen.get(key) ?? 0) + 1);
  }
  /** Every error path was reached, and some inputs decoded cleanly: the fuzzer is not stuck. */
  assertReachedAll(): void {
    const summary = JSON.stringify(Object.fromEntries(this.seen));
    for (const r of [...REASONS, 'ok']) assert.ok((this.seen.get(r) ?? 0) > 0, `${r} never reached: ${summary}`);
  }
}

/** Per line: UTF-8 bytes without the LF. */
const lineLengths = (req: Record<string, string>) => Object.entries(req).map(([k, v]) => Buffer.byteLength(`${k}=${v}`));

/** Caps far above the input, exactly at its longest line and attribute count, or one under either. */
const CAP_MODES = ['roomy', 'exact', 'lineShort', 'attrsShort'] as const;

test(`round trip: ${RUNS.roundTrip.toLocaleString('en')} random valid request streams, encodeRequest → decoder, at and just under the caps`, () => {
  const seen: Record<(typeof CAP_MODES)[number], number> = { roomy: 0, exact: 0, lineShort: 0, attrsShort: 0 };
  fc.assert(
    fc.property(streamArb, chunkingArb, fc.constantFrom(...CAP_MODES), (reqs, sizes, caps) => {
      const input = Buffer.concat(reqs.map((r) => encodeRequest(r)));
      const longest = Math.max(...reqs.flatMap(lineLengths));
      const most = Math.max(...reqs.map((r) => Object.keys(r).length));
      // attrsShort needs a request with two attributes or more; fall back to exact caps.
      const mode = caps === 'attrsShort' && most < 2 ? 'exact' : caps;
      seen[mode]++;
      const opts =
        mode === 'roomy'
          ? { maxLineBytes: 1 << 20, maxAttributes: 10_000 }
          : { maxLineBytes: mode === 'lineShort' ? longest - 1 : longest, maxAttributes: mode === 'attrsShort' ? most - 1 : most };
      const got = decode(chunked(input, sizes), opts);
      if (mode === 'lineShort') return assert.equal(got.reason, 'line too long');
      if (mode === 'attrsShort') return assert.equal(got.reason, 'too many attributes');
      assert.equal(got.reason, undefined);
      assert.deepEqual(got.requests, reqs.map((r) => ({ ...r })));
      assert.equal(got.pending, 0);
    }),
    { numRuns: RUNS.roundTrip },
  );
  for (const [mode, n] of Object.entries(seen)) assert.ok(n > RUNS.roundTrip / 10, `${mode}: ${n} runs`);
});

/** Bytes that matter to the grammar, often; anything else sometimes. */
const tokenArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'Z', '9', '_', '.', '-', '=', '\n', '\n', '\r', '\r\n', ' ', ':', '\0').map((s) => Buffer.from(s, 'latin1')) },
  { weight: 3, arbitrary: fc.constantFrom('request=smtpd_access_policy\n', 'sender=a@b\n', 'x=\n', '\n', '=v\n', 'é').map((s) => Buffer.from(s, 'utf8')) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 255 }).map((b) => Buffer.from([b])) },
);
const capsArb = fc.record({ maxLineBytes: fc.integer({ min: 1, max: 40 }), maxAttributes: fc.integer({ min: 1, max: 6 }) });

test(`random streams: ${RUNS.random.toLocaleString('en')} byte streams agree with the reference model in any chunking`, () => {
  const cov = new Coverage();
  fc.assert(
    fc.property(fc.array(tokenArb, { maxLength: 120 }), chunkingArb, capsArb, (tokens, sizes, caps) => {
      cov.add(agree(Buffer.concat(tokens), sizes, caps));
    }),
    { numRuns: RUNS.random },
  );
  cov.assertReachedAll();
});

/** ASCII only, so every chunk that starts on a line boundary takes the decoder's string path. */
const asciiTokenArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'Z', '9', '_', '.', '-', '=', '\n', '\n', '\r', '\r\n', ' ', ':', '\0') },
  { weight: 3, arbitrary: fc.constantFrom('request=smtpd_access_policy\n', 'sender=a@b\n', 'x=\n', '\n', '=v\n', 'a=b\r\n\r\n') },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 127 }).map((b) => String.fromCharCode(b)) },
);

test(`ASCII streams: ${RUNS.ascii.toLocaleString('en')} byte streams through the string path agree with the reference model in any chunking`, () => {
  const cov = new Coverage();
  fc.assert(
    fc.property(fc.array(asciiTokenArb, { maxLength: 120 }), chunkingArb, capsArb, (tokens, sizes, caps) => {
      const input = Buffer.from(tokens.join(''), 'latin1');
      assert.ok(isAscii(input));
      cov.add(agree(input, sizes, caps));
    }),
    { numRuns: RUNS.ascii },
  );
  cov.assertReachedAll();
});

/** One edit at a position given as a fraction of the stream's length. */
const mutationArb = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), text: fc.constantFrom('\0', '\n', '\r', '=', ' ', '\n\n', 'x'.repeat(50), 'é') }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('repeat' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), length: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
);
type Mutation = typeof mutationArb extends fc.Arbitrary<infer M> ? M : never;

function mutate(input: Buffer, m: Mutation): Buffer {
  const at = Math.min(input.length, Math.floor(m.at * input.length));
  switch (m.kind) {
    case 'set':
      if (at === input.length) return input;
      return Buffer.concat([input.subarray(0, at), Buffer.from([m.byte]), input.subarray(at + 1)]);
    case 'insert':
      return Buffer.concat([input.subarray(0, at), Buffer.from(m.text, 'utf8'), input.subarray(at)]);
    case 'delete':
      return Buffer.concat([input.subarray(0, at), input.subarray(at + m.length)]);
    case 'repeat':
      return Buffer.concat([input.subarray(0, at + m.length), input.subarray(at)]);
    case 'truncate':
      return input.subarray(0, at);
  }
}

test(`mutated streams: ${RUNS.mutated.toLocaleString('en')} edited valid streams agree with the reference model in any chunking`, () => {
  const cov = new Coverage();
  fc.assert(
    fc.property(
      streamArb,
      fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
      chunkingArb,
      fc.integer({ min: -3, max: 3 }),
      fc.integer({ min: -2, max: 2 }),
      (reqs, mutations, sizes, lineDelta, attrDelta) => {
        const input = mutations.reduce(mutate, Buffer.concat(reqs.map((r) => encodeRequest(r))));
        // Caps near the stream's own sizes, so the edges get hit as well as the grammar.
        const longest = Math.max(...reqs.flatMap(lineLengths));
        const most = Math.max(...reqs.map((r) => Object.keys(r).length));
        cov.add(agree(input, sizes, { maxLineBytes: Math.max(1, longest + lineDelta), maxAttributes: Math.max(1, most + attrDelta) }));
      },
    ),
    { numRuns: RUNS.mutated },
  );
  cov.assertReachedAll();
});
