/**
 * Throughput of the backup object encryption (backup/crypto) against plain AES-256-GCM.
 * The input arrives in 64 KiB writes, as from a pipe (pg_dump | zstd) or an S3 body; the baseline is
 * one createCipheriv over the same pieces, i.e. what the stream format costs on top of AES-GCM.
 * Target: at least 600 MB/s encrypt and decrypt with 1 MiB chunks.
 *
 *   node --import tsx bench/backup/crypto.ts [--mib 256]
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDecryptStream, createEncryptStream } from '../../backup/crypto/index.ts';
import { table } from '../lib/stats.ts';

const argv = process.argv.slice(2);
const MIB = Number(argv[argv.indexOf('--mib') + 1] || 0) || 256;
const WRITE = 64 * 1024;
const CHUNKS = [64 * 1024, 1024 * 1024, 4 * 1024 * 1024];
const key = randomBytes(32);
const id = { backupId: '20261121T020000Z-3f9a1c', name: 'db.dump.zst' };
// Distinct pieces (zstd output is incompressible anyway); reused, as the stream never mutates input.
const pieces = Array.from({ length: 64 }, () => randomBytes(WRITE));
const total = MIB * 1024 * 1024;

function* input(): Generator<Buffer> {
  for (let i = 0; i < total / WRITE; i++) yield pieces[i % pieces.length]!;
}

function* split(bufs: Buffer[]): Generator<Buffer> {
  for (const b of bufs) for (let at = 0; at < b.length; at += WRITE) yield b.subarray(at, at + WRITE);
}

/** Seconds to run `source` through `stream`, and what came out (kept only when asked). */
async function run(source: Iterable<Buffer>, stream: Transform, keep: boolean): Promise<{ s: number; out: Buffer[] }> {
  const out: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      if (keep) out.push(chunk);
      cb();
    },
  });
  const t0 = process.hrtime.bigint();
  await pipeline(Readable.from(source), stream, sink);
  return { s: Number(process.hrtime.bigint() - t0) / 1e9, out };
}

function baseline(): number {
  const t0 = process.hrtime.bigint();
  const c = createCipheriv('aes-256-gcm', key, randomBytes(12));
  for (const p of input()) c.update(p);
  c.final();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const mbps = (s: number) => total / 1e6 / s;
const rows: Array<Array<string | number>> = [];
baseline(); // warm-up
for (const chunkBytes of CHUNKS) {
  let best = { enc: Infinity, dec: Infinity, base: Infinity };
  const object = (await run(input(), createEncryptStream(key, id, { chunkBytes }), true)).out;
  for (let round = 0; round < 3; round++) {
    const enc = await run(input(), createEncryptStream(key, id, { chunkBytes }), false);
    const dec = await run(split(object), createDecryptStream(key, id), false);
    best = { enc: Math.min(best.enc, enc.s), dec: Math.min(best.dec, dec.s), base: Math.min(best.base, baseline()) };
  }
  rows.push([
    `${chunkBytes / 1024} KiB`,
    Math.round(mbps(best.enc)),
    Math.round(mbps(best.dec)),
    Math.round(mbps(best.base)),
    (best.base / best.enc).toFixed(2),
    (best.base / best.dec).toFixed(2),
  ]);
}
console.log(`${MIB} MiB in ${WRITE / 1024} KiB writes, best of 3, node ${process.version}`);
console.log(table(['chunk', 'encrypt MB/s', 'decrypt MB/s', 'plain GCM MB/s', 'encrypt/plain', 'decrypt/plain'], rows));
