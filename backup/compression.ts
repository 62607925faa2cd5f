/**
 * Compression of backup objects: the zstd CLI (Debian's `zstd`), spawned and streamed, or gzip
 * through zlib when zstd is not installed. Never pg_dump's own -Z (its gzip ran about 3× slower
 * here, and it is single-threaded): the dump is taken with -Z0 and compressed out of process, on
 * the other core.
 */
import { spawnSync } from 'node:child_process';
import type { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import type { BackupConfig } from '../core/config/backup.ts';
import { spawnFilter } from './process-stream.ts';

export type Codec = 'zstd' | 'gzip';

export interface CompressionSettings {
  codec: Codec;
  level: number;
  threads: number;
}

/** File name suffix per codec, for object names (`db.dump.zst`). */
export const CODEC_SUFFIX: Record<Codec, string> = { zstd: 'zst', gzip: 'gz' };

let zstdFound: boolean | undefined;

export function zstdAvailable(): boolean {
  zstdFound ??= spawnSync('zstd', ['--version'], { stdio: 'ignore' }).status === 0;
  return zstdFound;
}

/** `auto` → zstd when installed; an explicit `zstd` without the CLI is an error, not a silent switch. */
export function resolveCompression(config: BackupConfig['compression']): CompressionSettings {
  const codec: Codec = config.codec === 'auto' ? (zstdAvailable() ? 'zstd' : 'gzip') : config.codec;
  if (codec === 'zstd' && !zstdAvailable()) {
    throw new Error('backup.compression.codec is zstd but the zstd program is not installed (apt-get install zstd), or set it to auto/gzip');
  }
  const level = codec === 'gzip' ? Math.min(config.level, 9) : config.level;
  return { codec, level, threads: config.threads };
}

export function createCompressor(s: CompressionSettings): Duplex {
  if (s.codec === 'gzip') return zlib.createGzip({ level: s.level, chunkSize: 256 * 1024 });
  // -q: no progress on stderr; -c: stdout; -T: worker threads (0 = cores).
  return spawnFilter('zstd', ['-q', '-c', `-${s.level}`, `-T${s.threads}`]);
}

/** The inverse of createCompressor; the manifest says which codec an object used. */
export function createDecompressor(codec: Codec): Duplex {
  if (codec === 'gzip') return zlib.createGunzip({ chunkSize: 256 * 1024 });
  if (!zstdAvailable()) throw new Error('this backup is zstd-compressed but the zstd program is not installed (apt-get install zstd)');
  return spawnFilter('zstd', ['-q', '-d', '-c']);
}
