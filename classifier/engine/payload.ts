/**
 * A learn event's payload: the message's features, so every milter process applies exactly the
 * update the learning process computed (same tokens, same reservoir input) without the raw
 * message. Typed arrays are written raw (little-endian), the rest as JSON:
 *
 *   "CFT1" | u32 tokens | u32 sequence | u32 steps | u32 jsonBytes | arrays… | JSON
 */
import type { MessageFeatures } from '../types.ts';

const MAGIC = 0x31544643; // "CFT1" read little-endian

export class PayloadError extends Error {
  override name = 'PayloadError';
}

export function encodeFeatures(f: MessageFeatures): Buffer {
  const { tokens, sequence, steps, debugTokens: _debug, ...rest } = f;
  const json = Buffer.from(JSON.stringify(rest), 'utf8');
  const head = Buffer.alloc(20);
  head.writeUInt32LE(MAGIC, 0);
  head.writeUInt32LE(tokens.length, 4);
  head.writeUInt32LE(sequence.length, 8);
  head.writeUInt32LE(steps.length, 12);
  head.writeUInt32LE(json.length, 16);
  const arrays = [tokens, sequence, steps].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength));
  return Buffer.concat([head, ...arrays, json]);
}

export function decodeFeatures(buf: Buffer): MessageFeatures {
  if (buf.length < 20 || buf.readUInt32LE(0) !== MAGIC) throw new PayloadError('not a features payload (bad magic)');
  const lens = [buf.readUInt32LE(4), buf.readUInt32LE(8), buf.readUInt32LE(12)] as const;
  const jsonBytes = buf.readUInt32LE(16);
  const total = 20 + 4 * (lens[0] + lens[1] + lens[2]) + jsonBytes;
  if (total !== buf.length) throw new PayloadError(`features payload is ${buf.length} bytes, header says ${total}`);
  let at = 20;
  const take = (n: number) => {
    // Copy into an aligned array: the Buffer's offset inside its pool need not be 4-aligned.
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) out[i] = buf.readUInt32LE(at + 4 * i);
    at += 4 * n;
    return out;
  };
  const tokens = take(lens[0]);
  const sequence = take(lens[1]);
  const steps = take(lens[2]);
  let rest: Omit<MessageFeatures, 'tokens' | 'sequence' | 'steps'>;
  try {
    rest = JSON.parse(buf.subarray(at).toString('utf8'));
  } catch (err) {
    throw new PayloadError(`features payload JSON: ${(err as Error).message}`);
  }
  return { ...rest, tokens, sequence, steps };
}
