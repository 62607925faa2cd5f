import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { test } from 'node:test';
import { HEAD_BYTES, spoolMessage } from '../../../lmtp-indexer/server/spool.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const pieces = (b: Buffer, size: number) => Readable.from(Array.from({ length: Math.ceil(b.length / size) }, (_, i) => b.subarray(i * size, (i + 1) * size)));

test('a small message stays in memory; a large one spills to a file that remove() deletes', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-spool-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const small = Buffer.from('Subject: small\r\n\r\nhello\r\n');
  const s = await spoolMessage(pieces(small, 7), dir, 1024);
  assert.equal(s.path, null);
  assert.deepEqual([s.size, s.sha256], [small.length, sha(small)]);
  // Read twice (Dovecot and the parser): both whole.
  assert.deepEqual(await buffer(s.open()), small);
  assert.deepEqual(await buffer(s.open()), small);
  assert.deepEqual(await readdir(dir), []);

  const big = Buffer.alloc(300_000, 'line of mail text\r\n');
  const b = await spoolMessage(pieces(big, 4096), dir, 64 * 1024);
  assert.ok(b.path && existsSync(b.path), 'spilled to a file');
  assert.deepEqual([b.size, b.sha256], [big.length, sha(big)]);
  assert.ok((await buffer(b.open())).equals(big), 'the file holds the bytes received before and after the spill');
  // The head (for the log's queue id) is the first 8 KiB, whatever the chunking and the spill.
  assert.ok(b.head.equals(big.subarray(0, HEAD_BYTES)));
  assert.ok(s.head.equals(small));
  await b.remove();
  assert.deepEqual(await readdir(dir), []);
});

test('a failing input leaves no file behind', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-spool-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const failing = Readable.from(
    (async function* () {
      yield Buffer.alloc(200_000, 'x');
      throw new Error('connection lost');
    })(),
  );
  await assert.rejects(spoolMessage(failing, dir, 1024), /connection lost/);
  assert.deepEqual(await readdir(dir), []);
});
