/**
 * Where a chunk that failed to verify would verify: under which nonce (counter, last flag) near its
 * own position, and at which length. Diagnostics for decrypt-stream.ts: it runs once, after a
 * failure, and never yields plaintext; a match is a verified GCM tag, so it is evidence, not a guess.
 *
 * Trying each guess with a full GCM decryption would cost a chunk of AES per guess (a 16 MiB chunk
 * times a thousand nonces times every length). It need not: a GCM tag is S xor E_K(J0), where
 * S = GHASH_H(aad, ciphertext) does not depend on the nonce and J0 = nonce | 00000001. So
 * - one S serves every nonce in the window: compare S xor tag with E_K(J0) for each (one AES block
 *   each, all in one ECB call);
 * - S for every prefix of the bytes comes out of one pass, because GHASH is a polynomial in H and
 *   the prefixes share all but their last block and length block. That finds a final chunk that
 *   is shorter than what was read, i.e. a final chunk with other bytes after it.
 * GHASH is done here in table-driven JS (NIST SP 800-38D, 8-bit tables); the stream itself never
 * uses it. The cost is bounded by one chunk and the window, whatever the input: about 60 ms per MiB
 * of chunk here (1 s for a hostile 16 MiB chunk), once per object.
 */
import { createCipheriv } from 'node:crypto';
import { MAX_CHUNK_INDEX, NONCE_PREFIX_BYTES, TAG_BYTES } from './stream-format.ts';

/** Counters tried either side of the failing one: chunks moved further are reported as tampered. */
export const LOCATE_WINDOW = 256;

export interface ChunkMatch {
  index: number;
  last: boolean;
  /** Bytes of the chunk on the wire (ciphertext and tag): a prefix of what was searched. */
  length: number;
}

/**
 * Every (index, last, length) under which a prefix of `bytes`, of 16..maxLength bytes, is a valid
 * chunk of the object with this key, AAD and nonce prefix, for indexes within `window` of `around`.
 */
export function locateChunk(
  key: Buffer,
  aad: Buffer,
  noncePrefix: Buffer,
  bytes: Buffer,
  around: number,
  maxLength: number,
  window = LOCATE_WINDOW,
): ChunkMatch[] {
  const lo = Math.max(0, around - window);
  const hi = Math.min(MAX_CHUNK_INDEX, around + window);
  if (hi < lo || bytes.length < TAG_BYTES) return [];
  const count = 2 * (hi - lo + 1);
  // Block 0 stays zero (E_K(0) is the GHASH key H); block 1 + k is J0 for index lo + k/2, last = k&1.
  const blocks = Buffer.alloc(16 * (1 + count));
  for (let k = 0; k < count; k++) {
    const at = 16 * (1 + k);
    noncePrefix.copy(blocks, at, 0, NONCE_PREFIX_BYTES);
    blocks.writeUInt32BE(lo + (k >>> 1), at + NONCE_PREFIX_BYTES);
    blocks[at + 11] = k & 1;
    blocks.writeUInt32BE(1, at + 12);
  }
  const ecb = createCipheriv('aes-256-ecb', key, null).setAutoPadding(false);
  const enc = Buffer.concat([ecb.update(blocks), ecb.final()]);
  const byFirstWord = new Map<number, number[]>();
  // One bit per top 20 bits of a first word: rejects all but ~0.1% of a million candidates without
  // touching the Map.
  const filter = new Uint32Array(1 << 15);
  for (let k = 0; k < count; k++) {
    const w = enc.readUInt32BE(16 * (1 + k));
    const list = byFirstWord.get(w);
    if (list) list.push(k);
    else byFirstWord.set(w, [k]);
    filter[w >>> 17] = filter[w >>> 17]! | (1 << ((w >>> 12) & 31));
  }

  const matches: ChunkMatch[] = [];
  const h = Uint32Array.of(enc.readUInt32BE(0), enc.readUInt32BE(4), enc.readUInt32BE(8), enc.readUInt32BE(12));
  ghashPrefixes(h, aad, bytes, Math.min(bytes.length, maxLength), filter, (length, d0, d1, d2, d3) => {
    for (const k of byFirstWord.get(d0) ?? []) {
      const at = 16 * (1 + k);
      if (enc.readUInt32BE(at + 4) === d1 && enc.readUInt32BE(at + 8) === d2 && enc.readUInt32BE(at + 12) === d3) {
        matches.push({ index: lo + (k >>> 1), last: (k & 1) === 1, length });
      }
    }
  });
  return matches;
}

/**
 * For every chunk length L in 16..n (ciphertext c = L - 16 bytes, tag at bytes[c, c+16)), calls
 * visit(L, S xor tag) with S = GHASH_H(aad, bytes[0, c)), when the first word of that passes
 * `filter`. A chunk is valid under a nonce exactly when the value equals E_K(J0) of the nonce.
 *
 * With X_m the GHASH state after m ciphertext blocks, P the zero-padded partial block and Lc the
 * length block, S(16m) = X_m·H ^ Lc·H and S(16m + r) = X_m·H² ^ P·H² ^ Lc·H: all linear, so P·H²
 * grows one table lookup per byte, and Lc·H splits into fixed parts (8c = 128m ^ 8r for r < 16).
 */
function ghashPrefixes(
  h: Uint32Array,
  aad: Buffer,
  bytes: Buffer,
  n: number,
  filter: Uint32Array,
  visit: (length: number, d0: number, d1: number, d2: number, d3: number) => void,
): void {
  if (n >= 2 ** 28) throw new RangeError('locateChunk: at most 256 MiB'); // keeps 8c within one u32
  const t1 = table(h);
  const t2 = table(gmul(h, h));
  const o = new Uint32Array(4);
  let x0 = 0, x1 = 0, x2 = 0, x3 = 0;
  const padded = Buffer.alloc(Math.ceil(aad.length / 16) * 16);
  aad.copy(padded);
  for (let at = 0; at < padded.length; at += 16) {
    mulT(t1, x0 ^ padded.readUInt32BE(at), x1 ^ padded.readUInt32BE(at + 4), x2 ^ padded.readUInt32BE(at + 8), x3 ^ padded.readUInt32BE(at + 12), o);
    x0 = o[0]!; x1 = o[1]!; x2 = o[2]!; x3 = o[3]!;
  }
  mulT(t1, 0, aad.length * 8, 0, 0, o);
  const la0 = o[0]!, la1 = o[1]!, la2 = o[2]!, la3 = o[3]!;
  const lr = new Uint32Array(64);
  for (let r = 0; r < 16; r++) {
    mulT(t1, 0, 0, 0, 8 * r, o);
    lr.set(o, 4 * r);
  }
  for (let m = 0; 16 * m + TAG_BYTES <= n; m++) {
    const base = 16 * m;
    mulT(t1, x0, x1, x2, x3, o);
    const xh0 = o[0]!, xh1 = o[1]!, xh2 = o[2]!, xh3 = o[3]!;
    mulT(t1, xh0, xh1, xh2, xh3, o);
    const xx0 = o[0]!, xx1 = o[1]!, xx2 = o[2]!, xx3 = o[3]!;
    mulLow(t1, 128 * m, o);
    const l0 = la0 ^ o[0]!, l1 = la1 ^ o[1]!, l2 = la2 ^ o[2]!, l3 = la3 ^ o[3]!;
    let p0 = 0, p1 = 0, p2 = 0, p3 = 0;
    for (let r = 0; r < 16 && base + r + TAG_BYTES <= n; r++) {
      const c = base + r;
      let s0: number, s1: number, s2: number, s3: number;
      if (r === 0) {
        s0 = xh0 ^ l0; s1 = xh1 ^ l1; s2 = xh2 ^ l2; s3 = xh3 ^ l3;
      } else {
        const ti = ((r - 1) * 256 + bytes[c - 1]!) * 4;
        p0 ^= t2[ti]!; p1 ^= t2[ti + 1]!; p2 ^= t2[ti + 2]!; p3 ^= t2[ti + 3]!;
        s0 = xx0 ^ p0 ^ l0 ^ lr[4 * r]!; s1 = xx1 ^ p1 ^ l1 ^ lr[4 * r + 1]!;
        s2 = xx2 ^ p2 ^ l2 ^ lr[4 * r + 2]!; s3 = xx3 ^ p3 ^ l3 ^ lr[4 * r + 3]!;
      }
      const d0 = s0 ^ ((bytes[c]! << 24) | (bytes[c + 1]! << 16) | (bytes[c + 2]! << 8) | bytes[c + 3]!);
      if ((filter[d0 >>> 17]! & (1 << ((d0 >>> 12) & 31))) === 0) continue;
      visit(c + TAG_BYTES, d0 >>> 0, (s1 ^ bytes.readUInt32BE(c + 4)) >>> 0,
        (s2 ^ bytes.readUInt32BE(c + 8)) >>> 0, (s3 ^ bytes.readUInt32BE(c + 12)) >>> 0);
    }
    if (base + 16 + TAG_BYTES > n) break;
    mulT(t1, x0 ^ bytes.readUInt32BE(base), x1 ^ bytes.readUInt32BE(base + 4), x2 ^ bytes.readUInt32BE(base + 8), x3 ^ bytes.readUInt32BE(base + 12), o);
    x0 = o[0]!; x1 = o[1]!; x2 = o[2]!; x3 = o[3]!;
  }
}

/** x·y in GF(2^128), GCM bit order (SP 800-38D, Algorithm 1). Slow; only builds the tables. */
function gmul(x: ArrayLike<number>, y: ArrayLike<number>): Uint32Array {
  let z0 = 0, z1 = 0, z2 = 0, z3 = 0;
  let v0 = y[0]!, v1 = y[1]!, v2 = y[2]!, v3 = y[3]!;
  for (let i = 0; i < 128; i++) {
    if ((x[i >>> 5]! >>> (31 - (i & 31))) & 1) {
      z0 ^= v0; z1 ^= v1; z2 ^= v2; z3 ^= v3;
    }
    const carry = v3 & 1;
    v3 = (v3 >>> 1) | (v2 << 31);
    v2 = (v2 >>> 1) | (v1 << 31);
    v1 = (v1 >>> 1) | (v0 << 31);
    v0 = v0 >>> 1;
    if (carry) v0 ^= 0xe1000000;
  }
  return Uint32Array.of(z0, z1, z2, z3);
}

/** t[(pos·256 + b)·4 ..] = (block with byte b at pos, zeros elsewhere)·y, so x·y is 16 lookups. */
function table(y: Uint32Array): Uint32Array {
  const t = new Uint32Array(16 * 256 * 4);
  const x = new Uint32Array(4);
  for (let pos = 0; pos < 16; pos++) {
    for (let bit = 0x80; bit; bit >>>= 1) {
      x.fill(0);
      x[pos >>> 2] = bit << (24 - 8 * (pos & 3));
      t.set(gmul(x, y), (pos * 256 + bit) * 4);
    }
    for (let b = 3; b < 256; b++) {
      const low = b & -b;
      if (low === b) continue;
      for (let w = 0; w < 4; w++) t[(pos * 256 + b) * 4 + w] = t[(pos * 256 + low) * 4 + w]! ^ t[(pos * 256 + (b ^ low)) * 4 + w]!;
    }
  }
  return t;
}

function mulT(t: Uint32Array, x0: number, x1: number, x2: number, x3: number, out: Uint32Array): void {
  let z0 = 0, z1 = 0, z2 = 0, z3 = 0;
  for (let w = 0; w < 4; w++) {
    const x = w === 0 ? x0 : w === 1 ? x1 : w === 2 ? x2 : x3;
    for (let s = 0; s < 4; s++) {
      const i = ((w * 4 + s) * 256 + ((x >>> (24 - 8 * s)) & 0xff)) * 4;
      z0 ^= t[i]!; z1 ^= t[i + 1]!; z2 ^= t[i + 2]!; z3 ^= t[i + 3]!;
    }
  }
  out[0] = z0; out[1] = z1; out[2] = z2; out[3] = z3;
}

/** (0, 0, 0, x3)·y: the length block's varying part sits in the last word, so 4 lookups, not 16. */
function mulLow(t: Uint32Array, x3: number, out: Uint32Array): void {
  let z0 = 0, z1 = 0, z2 = 0, z3 = 0;
  for (let s = 0; s < 4; s++) {
    const i = ((12 + s) * 256 + ((x3 >>> (24 - 8 * s)) & 0xff)) * 4;
    z0 ^= t[i]!; z1 ^= t[i + 1]!; z2 ^= t[i + 2]!; z3 ^= t[i + 3]!;
  }
  out[0] = z0; out[1] = z1; out[2] = z2; out[3] = z3;
}
