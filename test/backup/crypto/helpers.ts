// Shared by the backup/crypto tests: seeded bytes, whole-buffer encrypt/decrypt through the real
// streams, the chunk layout of an encrypted object, and one assertion for stream errors.
import assert from 'node:assert/strict';
import type { Transform } from 'node:stream';
import { StreamAuthError, type ObjectIdentity, type StreamErrorCode } from '../../../backup/contracts.ts';
import { createDecryptStream, createEncryptStream, readHeader } from '../../../backup/crypto/index.ts';

export const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
export const ID: ObjectIdentity = { backupId: '20261121T020000Z-3f9a1c', name: 'db.dump.zst' };
export const CHUNK = 4096;
export const TAG = 16;

/** Deterministic bytes (xorshift32), so a failing fast-check case replays exactly. */
export function seededBytes(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A seeded `random` option for createEncryptStream. */
export function seededRandom(seed: number): (n: number) => Buffer {
  let calls = 0;
  return (n) => seededBytes(n, seed * 31 + ++calls);
}

/** `buf` cut at `cuts` (any order, duplicates and out-of-range offsets ignored). */
export function split(buf: Buffer, cuts: number[] = []): Buffer[] {
  const at = [...new Set(cuts.filter((c) => c > 0 && c < buf.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of [...at, buf.length]) {
    out.push(buf.subarray(from, c));
    from = c;
  }
  return out;
}

export function bytewise(buf: Buffer): Buffer[] {
  return Array.from({ length: buf.length }, (_, i) => buf.subarray(i, i + 1));
}

export interface EncryptArgs {
  key?: Buffer;
  id?: ObjectIdentity;
  chunkBytes?: number;
  seed?: number;
  writes?: Buffer[];
}

/** The whole encrypted object for `plaintext` (written as `writes` when given). */
export async function encrypt(plaintext: Buffer, args: EncryptArgs = {}): Promise<Buffer> {
  const stream = createEncryptStream(args.key ?? KEY, args.id ?? ID, {
    chunkBytes: args.chunkBytes ?? CHUNK,
    random: seededRandom(args.seed ?? 1),
  });
  const out = collect(stream);
  for (const piece of args.writes ?? [plaintext]) stream.write(piece);
  stream.end();
  return Buffer.concat(await out);
}

export interface Outcome {
  /** Everything the decryptor pushed, whether or not a consumer got it before the error. */
  pushed: Buffer;
  error?: unknown;
}

/** Feeds `pieces` to a decryptor and records what it pushed and how it ended. */
export async function decrypt(pieces: Buffer[], key: Buffer = KEY, id: ObjectIdentity = ID): Promise<Outcome> {
  const stream = createDecryptStream(key, id);
  const pushed = spyOnPush(stream);
  const done = collect(stream).then(
    () => undefined,
    (err: unknown) => err ?? new Error('rejected without a reason'),
  );
  for (const piece of pieces) {
    if (stream.destroyed) break;
    stream.write(piece);
  }
  if (!stream.destroyed) stream.end();
  const error = await done;
  return { pushed: Buffer.concat(pushed), ...(error === undefined ? {} : { error }) };
}

function spyOnPush(stream: Transform): Buffer[] {
  const pushed: Buffer[] = [];
  const push = stream.push.bind(stream);
  stream.push = (chunk: unknown, encoding?: BufferEncoding) => {
    if (Buffer.isBuffer(chunk)) pushed.push(Buffer.from(chunk));
    return push(chunk, encoding);
  };
  return pushed;
}

function collect(stream: Transform): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => out.push(chunk));
    stream.once('error', reject);
    stream.once('end', () => resolve(out));
  });
}

export interface Layout {
  headerBytes: number;
  /** One full chunk on the wire. */
  full: number;
  /** [start, end) of each chunk in the object. */
  chunks: Array<[number, number]>;
}

export function layout(object: Buffer): Layout {
  const parsed = readHeader(object);
  assert.ok(parsed, 'object has a complete header');
  const full = parsed.header.chunkBytes + TAG;
  const chunks: Array<[number, number]> = [];
  for (let at = parsed.length; at < object.length; at += full) chunks.push([at, Math.min(at + full, object.length)]);
  return { headerBytes: parsed.length, full, chunks };
}

export function chunkBytesOf(object: Buffer, l: Layout, i: number): Buffer {
  const [start, end] = l.chunks[i]!;
  return object.subarray(start, end);
}

/** The outcome failed with `code` (and `chunk`, when given), naming the object. */
export function assertStreamError(outcome: Outcome, code: StreamErrorCode, chunk?: number, id: ObjectIdentity = ID): StreamAuthError {
  const err = outcome.error;
  assert.ok(err instanceof StreamAuthError, `expected StreamAuthError ${code}, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.equal(err.object, `${id.backupId}/${id.name}`);
  if (chunk !== undefined) assert.equal(err.chunk, chunk, err.message);
  return err;
}

/** Nothing pushed that is not the start of the true plaintext. */
export function assertPrefix(pushed: Buffer, plaintext: Buffer): void {
  assert.ok(pushed.length <= plaintext.length, `pushed ${pushed.length} bytes of a ${plaintext.length}-byte plaintext`);
  assert.ok(pushed.equals(plaintext.subarray(0, pushed.length)), 'pushed bytes differ from the plaintext');
}
