// extractTree and verifyTreeSample against hand-built (hostile) tars: traversal names, escaping
// symlinks, writing through links, unsupported types, broken tars; then modes, mtimes, the filter,
// and the drill's sample check reporting mismatches and missing files by path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { extractTree, packTree, verifyTreeSample } from '../../../backup/sources/tree-archive.ts';
import { TarEntryError, entryName } from '../../../backup/sources/tree-restore.ts';
import { bufferStream, buildTar, readTree, sha256, tmpDir, toBuffer, type HandEntry } from './tree-fixtures.ts';

/** Extracts a hand-built tar into a fresh folder that sits next to a "victim" folder. */
async function extractHostile(t: import('node:test').TestContext, entries: HandEntry[]) {
  const base = await tmpDir(t, 'hostile');
  const dest = path.join(base, 'dest');
  const victim = path.join(base, 'victim');
  await fsp.mkdir(victim);
  await fsp.writeFile(path.join(victim, 'passwd'), 'root:x:0:0');
  const result = extractTree(bufferStream(await buildTar(entries)), dest);
  return { base, dest, victim, result };
}

const file = (name: string, body = 'x', extra: Partial<HandEntry> = {}): HandEntry => ({ name, type: 'file', body, ...extra });
const link = (name: string, linkname: string): HandEntry => ({ name, type: 'symlink', linkname });

async function assertRejectsEntry(promise: Promise<unknown>, entry: string, why: RegExp) {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof TarEntryError, String(err));
    assert.equal(err.entry, entry);
    assert.match(err.message, why);
    assert.ok(err.message.includes(`"${entry}"`), 'the message names the entry');
    return true;
  });
}

test('entry names: relative and normalised, or refused', () => {
  assert.equal(entryName('user/cur/x'), 'user/cur/x');
  assert.equal(entryName('./user//cur/./x'), 'user/cur/x');
  assert.equal(entryName('user/cur/'), 'user/cur');
  assert.equal(entryName('./'), '');
  assert.equal(entryName('..foo/bar..'), '..foo/bar..'); // dots inside a name are just a name
  for (const bad of ['/etc/passwd', '../x', 'a/../../x', 'a/..', 'a/b\0c']) assert.throws(() => entryName(bad), TarEntryError, bad);
});

const traversal: Array<[string, HandEntry[], string, RegExp]> = [
  ['parent directory', [file('../victim/passwd', 'owned')], '../victim/passwd', /"\.\." in path/],
  ['.. in the middle', [file('ok/../../victim/passwd', 'owned')], 'ok/../../victim/passwd', /"\.\." in path/],
  ['absolute path', [file('/tmp/ceerion-owned')], '/tmp/ceerion-owned', /absolute path/],
  ['directory named ..', [{ name: '../victim/sub', type: 'directory' }], '../victim/sub', /"\.\." in path/],
  ['absolute symlink', [link('l', '/etc'), file('l/passwd', 'owned')], 'l', /absolute path \/etc/],
  ['symlink to ..', [link('l', '..')], 'l', /would leave the restore folder/],
  ['deep symlink climbing too far', [link('a/b/l', '../../../victim')], 'a/b/l', /would leave the restore folder/],
  ['.. hidden behind a link to .', [link('p', '.'), link('q', 'p/../victim')], 'q', /"\.\." after a name/],
  ['file through an inside symlink', [{ name: 'real', type: 'directory' }, link('in', 'real'), file('in/x')], 'in/x', /in is a symlink/],
  ['hard link', [file('a'), { name: 'b', type: 'link', linkname: '../victim/passwd' }], 'b', /unsupported entry type link/],
  ['character device', [{ name: 'null', type: 'character-device', devmajor: 1, devminor: 3 }], 'null', /unsupported entry type character-device/],
  ['fifo', [{ name: 'pipe', type: 'fifo' }], 'pipe', /unsupported entry type fifo/],
];

for (const [label, entries, entry, why] of traversal) {
  test(`hostile tar refused: ${label}`, async (t) => {
    const { base, victim, result } = await extractHostile(t, entries);
    await assertRejectsEntry(result, entry, why);
    assert.equal(await fsp.readFile(path.join(victim, 'passwd'), 'utf8'), 'root:x:0:0');
    assert.deepEqual((await fsp.readdir(base)).sort(), ['dest', 'victim']); // nothing written beside dest
    await assert.rejects(fsp.lstat('/tmp/ceerion-owned'));
  });
}

test('symlinks that stay inside are restored as links; a later entry replaces a link without following it', async (t) => {
  const { dest, victim, result } = await extractHostile(t, [
    { name: 'u/cur', type: 'directory' },
    file('u/cur/msg', 'hello'),
    link('u/new/rel', '../cur/msg'),
    link('u/dangling', 'nowhere'),
    link('u/up-one', '../victim/passwd'), // from u/: dest/victim/passwd, inside (and dangling)
  ]);
  await result;
  assert.equal(await fsp.readlink(path.join(dest, 'u/new/rel')), '../cur/msg');
  assert.equal(await fsp.readFile(path.join(dest, 'u/new/rel'), 'utf8'), 'hello');
  assert.equal(await fsp.readlink(path.join(dest, 'u/dangling')), 'nowhere');
  assert.equal(await fsp.readlink(path.join(dest, 'u/up-one')), '../victim/passwd');

  // A file entry at a symlink's path unlinks the link and creates a file; the link's target is untouched.
  await fsp.symlink(path.join(victim, 'passwd'), path.join(dest, 'planted'));
  await extractTree(bufferStream(await buildTar([file('planted', 'replaced')])), dest);
  assert.equal((await fsp.lstat(path.join(dest, 'planted'))).isFile(), true);
  assert.equal(await fsp.readFile(path.join(victim, 'passwd'), 'utf8'), 'root:x:0:0');

  // A directory planted as a symlink in destDir is not written through either.
  await fsp.symlink(victim, path.join(dest, 'planted-dir'));
  await assertRejectsEntry(extractTree(bufferStream(await buildTar([file('planted-dir/passwd', 'owned')])), dest), 'planted-dir/passwd', /is a symlink/);
  assert.equal(await fsp.readFile(path.join(victim, 'passwd'), 'utf8'), 'root:x:0:0');
});

test('a file entry over an existing directory, and a directory over a file, are refused', async (t) => {
  const dest = await tmpDir(t);
  await assertRejectsEntry(extractTree(bufferStream(await buildTar([{ name: 'd', type: 'directory' }, file('d')])), dest), 'd', /a directory of that name exists/);
  await assertRejectsEntry(extractTree(bufferStream(await buildTar([file('f'), file('f/x')])), dest), 'f/x', /f exists and is not a directory/);
});

test('broken tars fail: truncated, garbage, and a source stream that errors', async (t) => {
  const good = await buildTar([file('a', 'x'.repeat(5000)), file('b', 'y')]);
  await assert.rejects(extractTree(bufferStream(good.subarray(0, 2048)), await tmpDir(t)), /unexpected end/i);
  await assert.rejects(extractTree(bufferStream(Buffer.alloc(4096, 0x41)), await tmpDir(t)), /invalid tar header/i);
  // The download fails mid-entry (after the first header and part of its content).
  const dest = await tmpDir(t);
  const broken = new PassThrough();
  broken.write(good.subarray(0, 1024));
  const extracting = extractTree(broken, dest);
  setImmediate(() => broken.destroy(new Error('S3 connection reset')));
  await assert.rejects(extracting, /S3 connection reset/);
  // A destination that cannot be created fails the restore, and the source is let go.
  const source = bufferStream(good);
  await assert.rejects(extractTree(source, '/dev/null/restore'), /ENOTDIR/);
  assert.equal(source.destroyed, true);
});

test('modes are masked with 0o777, mtimes restored for files, folders and links, owners ignored', async (t) => {
  const when = new Date('2024-02-29T12:34:56Z');
  const dirWhen = new Date('2023-01-01T00:00:00Z');
  const dest = await tmpDir(t);
  const tarData = await buildTar([
    { name: 'ro', type: 'directory', mode: 0o555, mtime: dirWhen },
    file('ro/setuid', '#!/bin/sh\n', { mode: 0o4755, mtime: when, uid: 4242, gid: 4242 }),
    file('ro/readonly', 'r', { mode: 0o444, mtime: when }),
    { ...link('ro/link', 'setuid'), mtime: when },
  ]);
  assert.deepEqual(await extractTree(bufferStream(tarData), dest), { files: 2, bytes: 11 });
  const tree = await readTree(dest);
  assert.deepEqual(tree.get('ro'), { type: 'directory', mode: 0o555, mtimeS: dirWhen.getTime() / 1000 });
  assert.equal(tree.get('ro/setuid')!.mode, 0o755);
  assert.equal(tree.get('ro/setuid')!.mtimeS, when.getTime() / 1000);
  assert.equal(tree.get('ro/readonly')!.mode, 0o444);
  assert.equal(tree.get('ro/link')!.mtimeS, when.getTime() / 1000);
  assert.equal((await fsp.stat(path.join(dest, 'ro/setuid'))).uid, process.getuid?.());
  await fsp.chmod(path.join(dest, 'ro'), 0o755); // so the temp dir can be removed when not root
});

test('filter restores a subset; parents are created as needed', async (t) => {
  const tarData = await buildTar([
    { name: 'alice', type: 'directory' },
    file('alice/cur/1', 'a1'),
    { name: 'bob', type: 'directory' },
    file('bob/cur/1', 'b1'),
    file('./bob/new/2', 'b2'),
  ]);
  const dest = await tmpDir(t);
  const seen: string[] = [];
  const r = await extractTree(bufferStream(tarData), dest, { filter: (p) => (seen.push(p), p === 'bob' || p.startsWith('bob/')) });
  assert.deepEqual(r, { files: 2, bytes: 4 });
  assert.deepEqual(seen, ['alice', 'alice/cur/1', 'bob', 'bob/cur/1', 'bob/new/2']);
  assert.deepEqual([...(await readTree(dest)).keys()], ['bob', 'bob/cur', 'bob/cur/1', 'bob/new', 'bob/new/2']);
});

test('verifyTreeSample reports mismatched and missing files by path, and restores the sample', async (t) => {
  const src = await tmpDir(t, 'src');
  for (let i = 0; i < 20; i++) {
    await fsp.mkdir(path.join(src, `u${i % 4}`, 'cur'), { recursive: true });
    await fsp.writeFile(path.join(src, `u${i % 4}`, 'cur', `m${i}`), `message ${i}`);
  }
  const first = packTree(src, { sampleFiles: 6 });
  const good = await toBuffer(first.stream);
  const { sample } = await first.stats;
  assert.equal(sample.length, 6);

  const restoreDir = await tmpDir(t, 'restore');
  assert.deepEqual(await verifyTreeSample(bufferStream(good), sample, { restoreDir }), { checked: 6, mismatched: [], missing: [] });
  for (const f of sample) assert.equal(sha256(await fsp.readFile(path.join(restoreDir, f.path))), f.sha256, f.path);
  assert.equal((await readTree(restoreDir)).size, 6 + new Set(sample.map((f) => path.dirname(f.path))).size + new Set(sample.map((f) => f.path.split('/')[0])).size);

  // The same sample against a later tree where one sampled file changed (same size) and one vanished.
  const [changed, gone] = [sample[0]!.path, sample[3]!.path];
  const original = await fsp.readFile(path.join(src, changed), 'utf8');
  await fsp.writeFile(path.join(src, changed), original.replace(/.$/, '#'));
  await fsp.unlink(path.join(src, gone));
  const second = packTree(src, { sampleFiles: 6 });
  const later = await toBuffer(second.stream);
  assert.deepEqual(await verifyTreeSample(bufferStream(later), sample), { checked: 5, mismatched: [changed], missing: [gone] });

  // A sampled path that comes back as something else than a file is a mismatch too.
  const odd = await buildTar([{ name: sample[1]!.path, type: 'directory' }]);
  assert.deepEqual(await verifyTreeSample(bufferStream(odd), sample.slice(0, 2)), { checked: 1, mismatched: [sample[1]!.path], missing: [sample[0]!.path] });
  await assert.rejects(verifyTreeSample(bufferStream(good.subarray(0, 1500)), sample), /unexpected end/i);
});
