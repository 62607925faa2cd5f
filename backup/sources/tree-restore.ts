/**
 * Reading back what tree-archive.ts wrote: a safe extract (restore) and the drill's sample check.
 *
 * A restore tar comes from an object store and must be treated as hostile, even though it is
 * authenticated: a compromised host may have uploaded it. So:
 *  - names must be relative and free of `..` (rejected, not rewritten: a tar that tries is broken);
 *  - nothing is ever written through a symlink: every parent directory is checked with lstat, files
 *    are created with O_EXCL | O_NOFOLLOW after removing whatever non-directory was there;
 *  - a symlink is created only if its target stays inside destDir. Targets must be relative and may
 *    only start with `..` components (`../cur/x`, not `a/../../x`): after a symlink, `..` goes to the
 *    parent of the link's *target*, so `p/../x` with `p -> .` would escape while looking harmless.
 *    With `..` only in front, and the link's own parents being real directories, the target stays
 *    inside by counting alone, and so does any chain of such links;
 *  - modes are masked with 0o777 (no setuid from a backup), owners are not restored.
 * Errors are TarEntryError, naming the entry.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants as fsc, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { SampledFile } from './tree-archive.ts';

/** One entry as tar-stream hands it over: `header` plus a readable of its content. */
type TarEntry = tar.Extract extends AsyncIterable<infer E> ? E : never;

export class TarEntryError extends Error {
  constructor(readonly entry: string, message: string, options?: { cause?: unknown }) {
    super(`tar entry "${entry}": ${message}`, options);
    this.name = 'TarEntryError';
  }
}

export interface ExtractOptions {
  /** Restore only the entries (by normalised name, e.g. `user/cur/x`) it returns true for. */
  filter?: (path: string) => boolean;
}

/**
 * Restores the tar under destDir (created if missing). Reads `tar` to the end; on error it is
 * destroyed. Directory modes and mtimes are set last, deepest first, so a read-only directory
 * does not block its own contents and writing a file does not bump its folder's mtime.
 */
export async function extractTree(tarStream: Readable, destDir: string, opts: ExtractOptions = {}): Promise<{ files: number; bytes: number }> {
  // Nothing is awaited before eachEntry has put its error handler on the stream: a download that
  // fails while destDir is still being created must reject here, not crash the process.
  const tree = new SafeTree(destDir);
  let files = 0;
  let bytes = 0;
  await eachEntry(tarStream, async (entry, name) => {
    const h = entry.header;
    if (!name || (opts.filter && !opts.filter(name))) return void entry.resume(); // "./" is destDir itself
    switch (h.type) {
      case 'directory':
        await tree.directory(name, h.mode ?? 0o755, h.mtime);
        return void entry.resume();
      case 'file':
      case 'contiguous-file':
        bytes += await tree.file(name, entry as AsyncIterable<Buffer>, h.mode ?? 0o644, h.mtime);
        files++;
        return;
      case 'symlink':
        await tree.symlink(name, h.linkname ?? '', h.mtime);
        return void entry.resume();
      default:
        // Hard links could point at any earlier name, devices and fifos have no business in a backup.
        throw new TarEntryError(h.name, `unsupported entry type ${h.type}`);
    }
  });
  await tree.finishDirectories();
  return { files, bytes };
}

/**
 * Hashes the sampled files as they pass (reading the whole tar: the decrypting stream upstream
 * only proves integrity once it has reached its last chunk), and optionally restores them under
 * restoreDir, with the same protections as extractTree.
 */
export async function verifyTreeSample(
  tarStream: Readable,
  sample: SampledFile[],
  opts: { restoreDir?: string } = {},
): Promise<{ checked: number; mismatched: string[]; missing: string[] }> {
  const wanted = new Map(sample.map((s) => [s.path, s]));
  const tree = opts.restoreDir === undefined ? undefined : new SafeTree(opts.restoreDir);
  const seen = new Set<string>();
  const mismatched = new Set<string>();
  await eachEntry(tarStream, async (entry, name) => {
    const want = wanted.get(name);
    if (!want) return void entry.resume();
    seen.add(name);
    if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
      mismatched.add(name);
      return void entry.resume();
    }
    const hash = createHash('sha256');
    const size = tree ? await tree.file(name, entry as AsyncIterable<Buffer>, entry.header.mode ?? 0o644, entry.header.mtime, hash) : await hashOnly(entry, hash);
    if (size !== want.size || hash.digest('hex') !== want.sha256) mismatched.add(name);
  });
  await tree?.ready; // restoreDir could not be created, even if no sampled file came by
  const missing = [...wanted.keys()].filter((p) => !seen.has(p)).sort();
  return { checked: seen.size, mismatched: [...mismatched].sort(), missing };
}

/** Runs `fn` for each entry in turn; `fn` must consume the entry (read it or `resume()` it). */
async function eachEntry(src: Readable, fn: (entry: TarEntry, name: string) => Promise<void>): Promise<void> {
  const extract = tar.extract();
  // A cut-short tar destroys the entry being read too; the extractor's error says why.
  let tarError: Error | undefined;
  extract.on('error', (err: Error) => (tarError ??= err));
  const onError = (err: Error) => extract.destroy(err);
  src.on('error', onError);
  src.pipe(extract);
  try {
    for await (const entry of extract) {
      try {
        await fn(entry, entryName(entry.header.name));
      } catch (err) {
        if (err instanceof TarEntryError) throw err;
        const why = tarError ?? err;
        throw new TarEntryError(entry.header.name, errText(why), { cause: why });
      }
    }
  } catch (err) {
    src.unpipe(extract);
    src.destroy();
    throw err;
  } finally {
    src.off('error', onError);
  }
}

/** `user/cur/x` from `user/cur/x`, `./user/cur/x` or `user/cur/`; throws on anything that could escape. */
export function entryName(raw: string): string {
  if (raw.includes('\0')) throw new TarEntryError(raw, 'NUL in name');
  if (raw.startsWith('/')) throw new TarEntryError(raw, 'absolute path');
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new TarEntryError(raw, '".." in path');
  return parts.join('/');
}

async function hashOnly(entry: TarEntry, hash: Hash): Promise<number> {
  let n = 0;
  for await (const chunk of entry as AsyncIterable<Buffer>) {
    hash.update(chunk);
    n += chunk.length;
  }
  return n;
}

/** A destination directory that is only ever written inside. */
class SafeTree {
  /** Relative paths known to be real directories (not symlinks) under root. */
  private readonly dirs = new Set<string>(['']);
  private readonly pendingDirs: Array<{ rel: string; mode: number; mtime?: Date }> = [];

  private root = '';
  /** The folder exists; every method waits for it (and fails with its error). */
  readonly ready: Promise<void>;

  constructor(dir: string) {
    this.ready = (async () => {
      await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
      // destDir itself may be a symlink the operator chose; what is below it is ours to check.
      this.root = await fsp.realpath(dir);
    })();
    this.ready.catch(() => {}); // awaited by every use; a tar with no entries still reaches finishDirectories
  }

  async directory(rel: string, mode: number, mtime?: Date): Promise<void> {
    await this.ready;
    await this.ensureDir(rel);
    this.pendingDirs.push({ rel, mode: mode & 0o777, mtime });
  }

  /** Writes the entry's content; returns its size. */
  async file(rel: string, body: AsyncIterable<Buffer>, mode: number, mtime?: Date, hash?: Hash): Promise<number> {
    await this.ready;
    const abs = await this.replaceable(rel);
    const fh = await fsp.open(abs, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    let n = 0;
    try {
      for await (const chunk of body) {
        hash?.update(chunk);
        await fh.write(chunk);
        n += chunk.length;
      }
      await fh.chmod(mode & 0o777); // after writing: a 0o444 file must still be writable by us
      if (mtime) await fh.utimes(mtime, mtime);
    } finally {
      await fh.close();
    }
    return n;
  }

  async symlink(rel: string, target: string, mtime?: Date): Promise<void> {
    await this.ready;
    if (!target) throw new Error('symlink without a target');
    if (target.includes('\0')) throw new Error('NUL in symlink target');
    if (path.posix.isAbsolute(target)) throw new Error(`symlink to absolute path ${target} would leave the restore folder`);
    const parts = target.split('/').filter((p) => p !== '' && p !== '.');
    const ups = parts.findIndex((p) => p !== '..');
    const leading = ups === -1 ? parts.length : ups;
    if (parts.slice(leading).includes('..')) throw new Error(`symlink target ${target} has ".." after a name`);
    const depth = rel.split('/').length - 1; // directories between root and the link
    if (leading > depth) throw new Error(`symlink to ${target} would leave the restore folder`);
    const abs = await this.replaceable(rel);
    await fsp.symlink(target, abs);
    if (mtime) await fsp.lutimes(abs, mtime, mtime);
  }

  /** Sets directory modes and mtimes, deepest first (a child's changes bump its parent's mtime). */
  async finishDirectories(): Promise<void> {
    await this.ready;
    const list = [...this.pendingDirs].sort((a, b) => b.rel.split('/').length - a.rel.split('/').length);
    for (const d of list) {
      const abs = path.join(this.root, d.rel);
      try {
        await fsp.chmod(abs, d.mode);
        if (d.mtime) await fsp.utimes(abs, d.mtime, d.mtime);
      } catch (err) {
        throw new TarEntryError(d.rel, errText(err), { cause: err }); // after the walk: name the folder
      }
    }
  }

  /** The absolute path for a new file or link at rel, with its parents made, and nothing there. */
  private async replaceable(rel: string): Promise<string> {
    await this.ensureDir(path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel));
    const abs = path.join(this.root, rel);
    const st = await fsp.lstat(abs).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (st?.isDirectory()) throw new Error('a directory of that name exists');
    // A later entry replaces an earlier one (tar semantics); unlinking a symlink never follows it.
    if (st) await fsp.unlink(abs);
    return abs;
  }

  /** mkdir -p that refuses to pass through anything but real directories. */
  private async ensureDir(rel: string): Promise<void> {
    if (this.dirs.has(rel)) return;
    let sofar = '';
    for (const part of rel.split('/')) {
      sofar = sofar ? `${sofar}/${part}` : part;
      if (this.dirs.has(sofar)) continue;
      const abs = path.join(this.root, sofar);
      const st = await fsp.lstat(abs).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      if (!st) await fsp.mkdir(abs, { mode: 0o700 }); // tightened until the entry's own mode is applied
      else if (st.isSymbolicLink()) throw new Error(`${sofar} is a symlink; nothing is written through one`);
      else if (!st.isDirectory()) throw new Error(`${sofar} exists and is not a directory`);
      this.dirs.add(sofar);
    }
  }
}

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ? `${e.code}: ${e.message}` : String(e?.message ?? err);
}
