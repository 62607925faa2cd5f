// Fuzzing the parsers that read what an attacker with bucket access controls: the manifest (JSON
// before its signature can be checked) and the tar stream extracted by restore and the drill.
// Garbage must give the parser's own error, never another exception, a hang, or a file written
// outside the destination.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import fc from 'fast-check';
import { ManifestError, parseManifest } from '../../backup/manifest.ts';
import { extractTree } from '../../backup/sources/tree-archive.ts';

const ID = '20261121T020000Z-abcdef';
const valid = {
  format: 'ceerion-backup/1',
  id: ID,
  completedAt: '2026-11-21T02:01:00.000Z',
  key: { provider: 'local', keyId: 'k', version: '1', wrapped: 'AAAA' },
  objects: [{ kind: 'database', name: 'db.dump.zst', key: `backups/${ID}/db.dump.zst`, ciphertextSha256: 'a'.repeat(64) }],
  database: { rowCounts: { t: 1 } },
  signature: 'b'.repeat(64),
};

test('parseManifest: random bytes, random JSON and mutated manifests give ManifestError or a manifest', () => {
  const accept = (raw: Buffer) => {
    try {
      const m = parseManifest(raw, ID);
      assert.equal(m.id, ID);
    } catch (err) {
      assert.ok(err instanceof ManifestError, String(err));
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), (b) => accept(Buffer.from(b))), { numRuns: 3000 });
  fc.assert(fc.property(fc.jsonValue(), (v) => accept(Buffer.from(JSON.stringify(v)))), { numRuns: 3000 });
  const keys = Object.keys(valid);
  fc.assert(
    fc.property(fc.constantFrom(...keys), fc.jsonValue(), (k, v) => accept(Buffer.from(JSON.stringify({ ...valid, [k]: v })))),
    { numRuns: 3000 },
  );
  assert.equal(parseManifest(Buffer.from(JSON.stringify(valid)), ID).objects.length, 1);
});

test('extractTree: random and mutated tar bytes reject with an error and write nothing outside the destination', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ceerion-tar-fuzz-'));
  try {
    // A small valid tar to mutate: one header block for "a/b.txt" (5 bytes) plus data and the end blocks.
    const header = Buffer.alloc(512);
    header.write('a/b.txt');
    header.write('0000644\0', 100);
    header.write('0000000\0', 108);
    header.write('0000000\0', 116);
    header.write('00000000005\0', 124);
    header.write('00000000000\0', 136);
    header.write('        ', 148);
    header.write('0', 156);
    header.write('ustar\x0000', 257);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    const data = Buffer.alloc(512);
    data.write('hello');
    const tar = Buffer.concat([header, data, Buffer.alloc(1024)]);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b)),
          fc.array(fc.tuple(fc.nat(tar.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }).map((flips) => {
            const b = Buffer.from(tar);
            for (const [i, v] of flips) b[i] = v;
            return b;
          }),
        ),
        async (bytes) => {
          const dest = path.join(root, `d${n++}`);
          try {
            await extractTree(Readable.from([bytes]), dest);
          } catch (err) {
            assert.ok(err instanceof Error);
          }
          // Whatever happened, nothing appeared beside the destination folders.
          for (const name of await readdir(root)) assert.match(name, /^d\d+$/);
        },
      ),
      { numRuns: 1500 },
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
