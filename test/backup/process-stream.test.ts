// Child processes as streams: output ends cleanly only after exit status 0, so a pg_dump or zstd
// that dies half-way fails the backup instead of uploading a truncated archive.
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { ProcessError, runProgram, spawnFilter, spawnReadable } from '../../backup/process-stream.ts';
import { createCompressor, createDecompressor } from '../../backup/compression.ts';

const collect = () => {
  const parts: Buffer[] = [];
  const sink = new Writable({ write: (c, _e, cb) => (parts.push(c), cb()) });
  return { sink, bytes: () => Buffer.concat(parts) };
};

test('a program that exits 0 ends its stream with all its output', async () => {
  const { stream, exited } = spawnReadable('sh', ['-c', 'head -c 3000000 /dev/zero']);
  const c = collect();
  await pipeline(stream, c.sink);
  await exited;
  assert.equal(c.bytes().length, 3_000_000);
});

test('a program that writes and then fails errors the stream with its status and stderr', async () => {
  const { stream } = spawnReadable('sh', ['-c', 'head -c 100000 /dev/zero; echo "pg_dump: error: query failed" >&2; exit 1']);
  await assert.rejects(pipeline(stream, collect().sink), (err: unknown) => {
    assert.ok(err instanceof ProcessError);
    assert.equal(err.status, 1);
    assert.match(err.message, /exited with status 1: pg_dump: error: query failed/);
    return true;
  });
});

test('a filter killed mid-stream fails the pipeline; a missing program is named', async () => {
  const filter = spawnFilter('sh', ['-c', 'head -c 1000 >/dev/null; kill -9 $$']);
  await assert.rejects(pipeline(Readable.from([Buffer.alloc(1 << 20), Buffer.alloc(1 << 20)]), filter, collect().sink), /killed by SIGKILL|exited/);
  await assert.rejects(runProgram('no-such-program-ceerion', []), /no-such-program-ceerion is not installed/);
});

test('zstd and gzip round trip through the compressor streams', async () => {
  const data = Buffer.from('mail '.repeat(200_000));
  for (const codec of ['zstd', 'gzip'] as const) {
    const c = collect();
    await pipeline(Readable.from([data]), createCompressor({ codec, level: 3, threads: 0 }), createDecompressor(codec), c.sink);
    assert.ok(c.bytes().equals(data), codec);
  }
  // Corrupt zstd input: the decompressor's failure reaches the pipeline.
  await assert.rejects(pipeline(Readable.from([Buffer.from('not zstd at all')]), createDecompressor('zstd'), collect().sink), ProcessError);
});
