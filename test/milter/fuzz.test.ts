// Fuzzing the milter protocol: the pure codec with random, loosely framed and mutated streams in
// random chunkings; encode/decode round trips; and mutated sessions against one real server.
// Seeds are random; fast-check prints the seed and the shrunk counterexample on failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import { LOCAL_CONNECT, MilterClient } from '../../milter/client/milter-client.ts';
import { encodeCommand, parseCommand, type Command } from '../../milter/protocol/commands.ts';
import { Cmd } from '../../milter/protocol/constants.ts';
import { MilterProtocolError } from '../../milter/protocol/errors.ts';
import { encodeFrame, FrameDecoder, type RawFrame } from '../../milter/protocol/framing.ts';
import { encodeResponse, parseResponse, type Response } from '../../milter/protocol/responses.ts';
import { startTestMilter } from '../helpers/milter.ts';
import {
  chunked,
  chunkingArb,
  commandArb,
  maxFrameArb,
  mutate,
  mutationArb,
  noise,
  responseArb,
  sessionArb,
} from './fuzz-arbitraries.ts';

/** Runs per property: 165,000 random and mutated streams in all (5,000 of them over sockets). */
const RUNS = { raw: 30_000, framed: 50_000, mutated: 80_000, session: 5_000, commandRoundTrip: 20_000, responseRoundTrip: 20_000 };

function decodeAll(stream: Buffer, sizes: number[]): RawFrame[] {
  const d = new FrameDecoder();
  const frames: RawFrame[] = [];
  for (const c of chunked(stream, sizes)) frames.push(...d.push(c));
  assert.equal(d.pendingBytes, 0);
  return frames;
}

/** What a codec property reached: parsed command kinds and protocol error reasons, with counts. */
class Coverage {
  readonly kinds = new Map<string, number>();
  readonly reasons = new Map<string, number>();
  add(map: Map<string, number>, key: string): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }
  summary(): string {
    const list = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}=${n}`).join(', ');
    return `parsed {${list(this.kinds)}}; errors {${list(this.reasons)}}`;
  }
}

/**
 * Feed `stream` in `sizes` chunks to a decoder capped at `maxFrame` and parse every frame. Only
 * MilterProtocolError may come out; every byte is either in a frame or pending; pending stays
 * under one frame; a parsed value re-encodes to itself.
 */
function fuzzCodec(cov: Coverage, stream: Buffer, sizes: number[], maxFrame: number): void {
  const d = new FrameDecoder(maxFrame);
  let fed = 0;
  let framed = 0;
  for (const chunk of chunked(stream, sizes)) {
    const before = d.pendingBytes;
    let frames: RawFrame[];
    try {
      frames = d.push(chunk);
    } catch (err) {
      if (!(err instanceof MilterProtocolError)) throw err;
      cov.add(cov.reasons, err.reason);
      assert.ok(d.pendingBytes <= before + chunk.length);
      return; // the session drops the connection here
    }
    fed += chunk.length;
    for (const f of frames) {
      framed += 5 + f.payload.length;
      assert.ok(f.payload.length < maxFrame);
      let cmd: Command;
      try {
        cmd = parseCommand(f);
      } catch (err) {
        if (!(err instanceof MilterProtocolError)) throw err;
        cov.add(cov.reasons, err.reason);
        continue;
      }
      cov.add(cov.kinds, cmd.kind);
      const again = new FrameDecoder(64 * 1024 * 1024).push(encodeCommand(cmd)); // U+FFFD may grow it
      assert.equal(again.length, 1);
      assert.deepEqual(parseCommand(again[0]!), cmd);
    }
    assert.equal(framed + d.pendingBytes, fed, 'bytes lost or duplicated');
    assert.ok(d.pendingBytes < 4 + maxFrame, `pending ${d.pendingBytes} bytes with a cap of ${maxFrame}`);
  }
}

function report(t: { diagnostic(msg: string): void }, what: string, runs: number, started: number, cov?: Coverage): void {
  const msg = `fuzz ${what}: ${runs} runs in ${((performance.now() - started) / 1000).toFixed(1)} s`;
  t.diagnostic(cov ? `${msg}; ${cov.summary()}` : msg);
}

// ---- codec properties --------------------------------------------------------------------------

const ALL_KINDS = [
  ...['optneg', 'macro', 'connect', 'helo', 'mail', 'rcpt', 'data', 'header'],
  ...['eoh', 'body', 'eom', 'abort', 'quit', 'quitNewConnection', 'unknown'],
];

/** The fuzzer must reach into the parser: these kinds parsed and these errors raised, 10 times each at least. */
function assertReached(cov: Coverage, kinds: string[], reasons: string[]): void {
  for (const k of kinds) assert.ok((cov.kinds.get(k) ?? 0) >= 10, `command ${k} parsed only ${cov.kinds.get(k) ?? 0} times`);
  for (const r of reasons) assert.ok((cov.reasons.get(r) ?? 0) >= 10, `error "${r}" raised only ${cov.reasons.get(r) ?? 0} times`);
}

test('codec: arbitrary byte streams yield frames or MilterProtocolError', (t) => {
  const cov = new Coverage();
  const started = performance.now();
  fc.assert(
    fc.property(noise(600), chunkingArb, maxFrameArb, (stream, sizes, max) => fuzzCodec(cov, stream, sizes, max)),
    { numRuns: RUNS.raw },
  );
  report(t, 'arbitrary byte streams', RUNS.raw, started, cov);
  assertReached(cov, [], ['frame too large', 'zero-length frame', 'unknown command']);
});

test('codec: loosely framed random streams yield frames or MilterProtocolError', (t) => {
  // Plausible lengths and real command codes get the parser deeper than uniform noise does.
  const code = fc.oneof(fc.constantFrom(...Object.values(Cmd)), fc.integer({ min: 0, max: 255 }));
  const frame = fc
    .tuple(code, noise(48), fc.oneof({ weight: 6, arbitrary: fc.constant(null) }, fc.integer({ min: 0, max: 64 })))
    .map(([c, payload, len]) => {
      const f = encodeFrame(c, payload);
      if (len !== null) f.writeUInt32BE(len, 0);
      return f;
    });
  const cov = new Coverage();
  const started = performance.now();
  fc.assert(
    fc.property(fc.array(frame, { maxLength: 12, size: 'medium' }), chunkingArb, maxFrameArb, (frames, sizes, max) =>
      fuzzCodec(cov, Buffer.concat(frames), sizes, max),
    ),
    { numRuns: RUNS.framed },
  );
  report(t, 'loosely framed streams', RUNS.framed, started, cov);
  // A random payload is rarely a whole CONNECT or HEADER (two strings, the first not empty).
  const kinds = ALL_KINDS.filter((k) => k !== 'connect' && k !== 'header');
  const reasons = ['unterminated string', 'unknown command', 'short optneg', 'frame too large', 'zero-length frame'];
  assertReached(cov, kinds, [...reasons, 'malformed header', 'bad connect family', 'macro without value']);
});

test('codec: mutated valid command streams yield frames or MilterProtocolError', (t) => {
  const cov = new Coverage();
  const started = performance.now();
  fc.assert(
    fc.property(
      fc.array(commandArb, { minLength: 1, maxLength: 10, size: 'medium' }),
      fc.array(mutationArb, { minLength: 1, maxLength: 5 }),
      chunkingArb,
      maxFrameArb,
      (cmds, muts, sizes, max) => fuzzCodec(cov, mutate(cmds.map(encodeCommand), muts), sizes, max),
    ),
    { numRuns: RUNS.mutated },
  );
  report(t, 'mutated command streams', RUNS.mutated, started, cov);
  assertReached(cov, ALL_KINDS, [
    'frame too large',
    'zero-length frame',
    'unterminated string',
    'unknown command',
    'short optneg',
    'short connect',
    'bad connect family',
    'trailing bytes',
    'macro without value',
    'malformed header',
  ]);
});

test('round trip: commands → encodeCommand → random chunks → parseCommand', (t) => {
  const started = performance.now();
  fc.assert(
    fc.property(fc.array(commandArb, { maxLength: 10 }), chunkingArb, (cmds, sizes) => {
      const frames = decodeAll(Buffer.concat(cmds.map(encodeCommand)), sizes);
      assert.deepEqual(frames.map(parseCommand), cmds);
    }),
    { numRuns: RUNS.commandRoundTrip },
  );
  report(t, 'command round trips', RUNS.commandRoundTrip, started);
});

test('round trip: responses → encodeResponse → random chunks → parseResponse', (t) => {
  const started = performance.now();
  fc.assert(
    fc.property(fc.array(responseArb, { maxLength: 10 }), chunkingArb, (responses, sizes) => {
      const frames = decodeAll(Buffer.concat(responses.map(encodeResponse)), sizes);
      assert.deepEqual(frames.map(parseResponse), responses);
    }),
    { numRuns: RUNS.responseRoundTrip },
  );
  report(t, 'response round trips', RUNS.responseRoundTrip, started);
});

// ---- session property: real sockets, one server ------------------------------------------------

/** Answers that do not end a stage: keep-alives and end-of-message modifications. */
const NOT_FINAL = new Set<string>([
  ...['continue', 'progress'],
  ...['addheader', 'insheader', 'chgheader', 'addrcpt', 'addrcptPar', 'delrcpt', 'chgfrom', 'quarantine', 'replbody'],
]);

/** The MTA side of one raw connection: collects and parses what the server sends. */
class RawPeer {
  readonly responses: Response[] = [];
  parseError: unknown;
  closed = false;
  private readonly decoder = new FrameDecoder(64 * 1024 * 1024);
  private readonly waiters = new Set<() => void>();

  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const f of this.decoder.push(chunk)) this.responses.push(parseResponse(f));
      } catch (err) {
        this.parseError ??= err;
      }
      this.wake();
    });
    socket.on('error', () => {}); // the server may drop us while we write: that is its right
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters) w();
  }

  /** Until `pred` holds or the connection is gone. */
  until(pred: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (!pred() && !this.closed) return;
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
      check();
    });
  }
}

async function fullMessage(address: string): Promise<void> {
  const client = await MilterClient.connect(address);
  try {
    await client.negotiate();
    assert.ok([undefined, 'continue'].includes((await client.connectStage(LOCAL_CONNECT))?.kind));
    await client.helo('client.example');
    const r = await client.message({
      from: '<a@example.org>',
      rcpts: ['<b@example.net>'],
      headers: [['Subject', 'alive?']],
      body: 'yes\r\n',
    });
    assert.equal(r.verdict.kind, 'accept');
    assert.ok(r.modifications.some((m) => m.kind === 'insheader' && m.name === 'X-Ceerion-Milter'));
    await client.quit();
  } finally {
    client.destroy();
  }
}

async function eventually(pred: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const heapAfterGc = () => (gc(), gc(), process.memoryUsage().heapUsed);

test('session: mutated streams over real sockets never take the server down', { timeout: 120_000 }, async (t) => {
  const milter = await startTestMilter();
  t.after(() => milter.stop());
  const { server, address } = milter;
  const LIVENESS_EVERY = 200;
  const stats = { runs: 0, unmutated: 0, liveness: 0 };
  let heapBaseline = 0;
  const started = performance.now();

  await fc.assert(
    fc.asyncProperty(sessionArb, async (run) => {
      stats.runs++;
      const socket = net.connect(server.port, '127.0.0.1');
      const peer = new RawPeer(socket);
      socket.write(encodeCommand({ kind: 'optneg', ...run.offer }));
      await peer.until(() => peer.responses.length > 0);
      assert.equal(peer.responses[0]?.kind, 'optneg', 'a valid OPTNEG is answered');

      const frames = run.commands.map(encodeCommand);
      const stream = mutate(frames, run.mutations);
      const mutated = !stream.equals(Buffer.concat(frames));
      for (const chunk of chunked(stream, run.chunks)) socket.write(chunk);
      if (!mutated) {
        // A valid session must be served to the end: one accept per message, nothing else final.
        stats.unmutated++;
        const eoms = run.commands.filter((c) => c.kind === 'eom').length;
        await peer.until(() => peer.responses.filter((r) => r.kind === 'accept').length >= eoms);
        const finals = peer.responses.slice(1).filter((r) => !NOT_FINAL.has(r.kind));
        assert.deepEqual(finals.map((r) => r.kind), Array(eoms).fill('accept'));
        if (run.commands.at(-1)?.kind !== 'quit') assert.ok(!peer.closed, 'a valid session is not dropped');
      }
      socket.end();
      await peer.until(() => false);
      assert.equal(peer.parseError, undefined, 'the server only sends well-formed responses');

      if (stats.runs % LIVENESS_EVERY === 0) {
        await fullMessage(address);
        stats.liveness++;
        await eventually(() => server.activeSessions === 0, 'every session closed');
        if (stats.runs === LIVENESS_EVERY) heapBaseline = heapAfterGc();
      }
    }),
    { numRuns: RUNS.session, timeout: 10_000 },
  );

  await fullMessage(address);
  await eventually(() => server.activeSessions === 0, 'every session closed at the end');
  const heapGrowth = heapAfterGc() - heapBaseline;
  const errors = await milter.registry.getSingleMetric('ceerion_milter_errors_total')!.get();
  const byKind = Object.fromEntries(errors.values.map((v) => [v.labels.kind, v.value]));
  const sessions = (await milter.registry.getSingleMetric('ceerion_milter_sessions_total')!.get()).values[0]?.value ?? 0;
  report(t, 'session streams over sockets', stats.runs, started);
  const heapGrowthMiB = +(heapGrowth / 2 ** 20).toFixed(2);
  t.diagnostic(`session stats ${JSON.stringify({ ...stats, sessions, errors: byKind, heapGrowthMiB })}`);

  assert.equal(stats.runs, RUNS.session);
  assert.ok(sessions >= RUNS.session + stats.liveness, `server saw ${sessions} sessions`);
  assert.equal(byKind.internal ?? 0, 0, 'no session failed with an internal error');
  assert.equal(byKind.handler ?? 0, 0, 'no handler threw');
  assert.ok((byKind.protocol ?? 0) > RUNS.session / 4, 'mutations were noticed as protocol errors');
  assert.ok(stats.unmutated > 0, 'some sessions ran unmutated');
  assert.ok(heapGrowthMiB < 16, `heap grew by ${heapGrowthMiB} MiB`);
});
