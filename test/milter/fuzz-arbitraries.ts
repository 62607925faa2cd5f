// fast-check arbitraries for test/milter/fuzz.test.ts: milter commands and responses, valid
// sessions, byte-level mutations of frame streams, noise, and chunkings.
import fc from 'fast-check';
import type { Command } from '../../milter/protocol/commands.ts';
import { ALL_ACTIONS, Cmd, DEFAULT_MAX_FRAME, MILTER_VERSION } from '../../milter/protocol/constants.ts';
import { buildReplyCode } from '../../milter/protocol/replycode.ts';
import type { Response } from '../../milter/protocol/responses.ts';

/** Milter strings: ASCII or any well-formed Unicode, never a NUL. */
export const str = (maxLength = 16) =>
  fc
    .oneof(fc.string({ unit: 'binary-ascii', maxLength }), fc.string({ unit: 'binary', maxLength }))
    .map((s) => s.replaceAll('\0', ''));
const name = str().map((s) => s || 'x');
const u32 = fc.integer({ min: 0, max: 0xffffffff });
export const bytes = (maxLength: number, size: fc.SizeForArbitrary = 'small') =>
  fc.uint8Array({ maxLength, size }).map((a) => Buffer.from(a));
/** A body chunk up to the 65,535-byte limit; cheap to build, unlike a random one. */
const bigChunk = fc.integer({ min: 1, max: 65535 }).map((n) => Buffer.alloc(n, n & 0xff));
const bodyChunk = (bigWeight: number) => fc.oneof({ weight: 30, arbitrary: bytes(64) }, { weight: bigWeight, arbitrary: bigChunk });

const connectArb = fc.oneof(
  fc.record({
    kind: fc.constant('connect' as const),
    hostname: str(),
    family: fc.constantFrom('4' as const, '6' as const, 'L' as const),
    port: fc.integer({ min: 0, max: 65535 }),
    address: str(),
  }),
  fc.record({
    kind: fc.constant('connect' as const),
    hostname: str(),
    family: fc.constant('U' as const),
    port: fc.constant(0),
    address: fc.constant(''),
  }),
);

export const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ kind: fc.constant('optneg' as const), version: u32, actions: u32, protocol: u32 }),
  fc.record({
    kind: fc.constant('macro' as const),
    forCommand: fc.integer({ min: 0, max: 255 }),
    macros: fc.array(fc.tuple(name, str()), { maxLength: 4 }),
  }),
  connectArb,
  fc.record({ kind: fc.constant('helo' as const), hostname: str() }),
  fc.record({ kind: fc.constant('mail' as const), sender: str(), args: fc.array(str(), { maxLength: 3 }) }),
  fc.record({ kind: fc.constant('rcpt' as const), recipient: str(), args: fc.array(str(), { maxLength: 3 }) }),
  fc.record({ kind: fc.constant('header' as const), name, value: str(40) }),
  fc.record({ kind: fc.constant('body' as const), chunk: bodyChunk(2) }),
  fc.record({ kind: fc.constant('eom' as const), chunk: bytes(16) }),
  fc.record({ kind: fc.constant('unknown' as const), command: str() }),
  fc.constantFrom<Command>({ kind: 'data' }, { kind: 'eoh' }, { kind: 'abort' }, { kind: 'quit' }, { kind: 'quitNewConnection' }),
);

/** SETSYMLIST requests: some stages, each with a list of names (no spaces: the list is space-separated). */
const macroRequest = fc
  .subarray([0, 1, 2, 3, 4, 5, 6])
  .chain((stages) => {
    const list = fc.array(name.map((s) => s.replaceAll(' ', '') || 'i'), { minLength: 1, maxLength: 4 });
    return fc.tuple(...stages.map((s) => list.map((l) => [s, l] as const)));
  })
  .map((pairs) => Object.fromEntries(pairs));
const replyArb = fc
  .tuple(fc.integer({ min: 4, max: 5 }), fc.integer({ min: 0, max: 99 }), fc.boolean(), fc.string({ maxLength: 30 }))
  .map(([k, n, enh, text]) => buildReplyCode(k * 100 + n, enh ? `${k}.7.${n}` : undefined, text.replace(/[\r\n\0]/g, '')));
const SIMPLE = ['continue', 'accept', 'reject', 'tempfail', 'discard', 'skip', 'progress', 'shutdown', 'connFail'] as const;

export const responseArb: fc.Arbitrary<Response> = fc.oneof(
  fc.constantFrom<Response>(...SIMPLE.map((kind) => ({ kind }))),
  fc.record({ kind: fc.constant('replycode' as const), reply: replyArb }),
  fc.record({ kind: fc.constant('addheader' as const), name, value: str(40) }),
  fc.record({ kind: fc.constantFrom('insheader' as const, 'chgheader' as const), index: u32, name, value: str(40) }),
  fc.record({ kind: fc.constantFrom('addrcpt' as const, 'delrcpt' as const), rcpt: str() }),
  fc.record({ kind: fc.constant('addrcptPar' as const), rcpt: str(), args: str() }),
  fc.record({ kind: fc.constant('chgfrom' as const), from: str(), args: str() }, { requiredKeys: ['kind', 'from'] }),
  fc.record({ kind: fc.constant('quarantine' as const), reason: str() }),
  fc.record({ kind: fc.constant('replbody' as const), chunk: bytes(64) }),
  fc.record({ kind: fc.constant('optneg' as const), version: u32, actions: u32, protocol: u32, macros: macroRequest }),
);

const EDGE_LENGTHS = [0, 1, 2, 4, 5, 12, 13, 0xffff, 0x10000, 0x10001, DEFAULT_MAX_FRAME, DEFAULT_MAX_FRAME + 1, 0xffffffff];

/** Edits applied to a valid stream: byte flips, insertions, deletions, truncation, corrupted lengths. */
export const mutationArb = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('length' as const), frame: fc.nat(), value: fc.oneof(fc.constantFrom(...EDGE_LENGTHS), u32) }),
  fc.record({ op: fc.constant('lengthDelta' as const), frame: fc.nat(), delta: fc.integer({ min: -8, max: 8 }) }),
);
export type Mutation = typeof mutationArb extends fc.Arbitrary<infer M> ? M : never;

/** The frames joined and edited; length edits aim at the 4-byte length of a frame of the original stream. */
export function mutate(frames: Buffer[], mutations: Mutation[]): Buffer {
  const starts: number[] = [];
  let total = 0;
  for (const f of frames) starts.push(total), (total += f.length);
  let buf = Buffer.concat(frames, total); // a copy: the frames themselves stay intact
  for (const m of mutations) {
    if (m.op === 'insert') {
      const at = m.at % (buf.length + 1);
      buf = Buffer.concat([buf.subarray(0, at), m.bytes, buf.subarray(at)]);
      continue;
    }
    if (buf.length === 0) continue;
    if (m.op === 'length' || m.op === 'lengthDelta') {
      const start = starts[m.frame % starts.length];
      if (start === undefined || start + 4 > buf.length) continue;
      buf.writeUInt32BE(m.op === 'length' ? m.value : (buf.readUInt32BE(start) + m.delta) >>> 0, start);
      continue;
    }
    const at = m.at % buf.length;
    if (m.op === 'flip') buf[at] = buf[at]! ^ m.mask;
    else if (m.op === 'delete') buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + m.count)]);
    else buf = buf.subarray(0, at);
  }
  return buf;
}

/** Chunk sizes, used in turn until the stream is consumed: mostly tiny, sometimes larger than any frame. */
export const chunkingArb = fc.array(
  fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 16 }) }, { weight: 1, arbitrary: fc.integer({ min: 17, max: 70_000 }) }),
  { minLength: 1, maxLength: 6 },
);

export function* chunked(stream: Buffer, sizes: number[]): Generator<Buffer> {
  let off = 0;
  for (let i = 0; off < stream.length; i++) {
    const size = sizes[i % sizes.length]!;
    yield stream.subarray(off, off + size);
    off += size;
  }
}

/** Decoder caps: mostly realistic, sometimes tiny so that the cap itself is exercised. */
export const maxFrameArb = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(8, 64, 1024) },
  { weight: 4, arbitrary: fc.constantFrom(65540, DEFAULT_MAX_FRAME) },
);

/** Noise: uniform bytes, or mostly zeros and small numbers so that some of it reads as frames and strings. */
export const noise = (maxLength: number) => {
  const low = fc.oneof(
    { weight: 3, arbitrary: fc.constant(0) },
    fc.integer({ min: 1, max: 16 }),
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 255 }) },
  );
  return fc.oneof(bytes(maxLength, 'medium'), fc.array(low, { maxLength, size: 'medium' }).map((a) => Buffer.from(a)));
};

/** One message as Postfix sends it, MAIL to end of message. */
const messageArb = fc
  .record({
    qid: str(8),
    from: str(),
    fromArgs: fc.array(str(), { maxLength: 2 }),
    rcpts: fc.array(str(), { minLength: 1, maxLength: 3 }),
    headers: fc.oneof(
      { weight: 8, arbitrary: fc.array(fc.tuple(name, str(40)), { maxLength: 8 }) },
      // More frames than the session queues before it pauses the socket.
      { weight: 1, arbitrary: fc.array(fc.tuple(name, str(8)), { minLength: 70, maxLength: 120 }) },
    ),
    body: fc.array(bodyChunk(1), { maxLength: 3 }),
  })
  .map((m): Command[] => [
    { kind: 'macro', forCommand: Cmd.MAIL, macros: [['i', m.qid]] },
    { kind: 'mail', sender: m.from, args: m.fromArgs },
    ...m.rcpts.map((recipient): Command => ({ kind: 'rcpt', recipient, args: [] })),
    { kind: 'data' },
    ...m.headers.map(([n, value]): Command => ({ kind: 'header', name: n, value })),
    { kind: 'eoh' },
    ...m.body.map((chunk): Command => ({ kind: 'body', chunk })),
    { kind: 'eom', chunk: Buffer.alloc(0) },
  ]);

const endings = fc.constantFrom<Command[]>([], [{ kind: 'abort' }], [{ kind: 'quit' }], [{ kind: 'quitNewConnection' }]);

/** A valid OPTNEG offer, then a valid connection (to be mutated), sent in `chunks`. */
export const sessionArb = fc.record({
  offer: fc.record({
    version: fc.integer({ min: 2, max: MILTER_VERSION }),
    actions: fc.oneof(fc.constant(ALL_ACTIONS), u32),
    protocol: fc.oneof(fc.constant(0x1ff7ff), u32),
  }),
  commands: fc
    .tuple(connectArb, str(), fc.array(messageArb, { minLength: 1, maxLength: 2 }), endings)
    .map(([connect, hostname, messages, end]): Command[] => [
      { kind: 'macro', forCommand: Cmd.CONNECT, macros: [['j', 'mx.test']] },
      connect,
      { kind: 'helo', hostname },
      ...messages.flat(),
      ...end,
    ]),
  mutations: fc.array(mutationArb, { maxLength: 4 }),
  chunks: fc.array(fc.integer({ min: 1, max: 2048 }), { minLength: 1, maxLength: 6 }),
});
