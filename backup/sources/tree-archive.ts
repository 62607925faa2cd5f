/**
 * A folder tree as a streamed tar: the maildir snapshot (one root, entries named by relative path)
 * and the extras (several roots such as /etc/opendkim/keys and /etc/ceerion/ceerion.yaml, entries
 * named `keys/example.com.private`, `ceerion.yaml`). Restoring and checking lives in tree-restore.ts.
 *
 * The tree is live: Dovecot renames files new/ → cur/ and rewrites flags in file names while we walk,
 * so this is a fuzzy snapshot, not a point-in-time one. A file that vanishes before we open it is
 * skipped; a file that changes size while read keeps its declared size (read exactly that many
 * bytes, zero-padded if it shrank) so the tar stays well-formed, and is counted in `changed`.
 * Maildir files are written once and renamed, so in practice this only hits config files.
 *
 * Memory: one 64 KiB read at a time, and the walk only starts a new entry when the consumer has
 * room, so a slow uploader holds back the disk reads instead of buffering the tree.
 */
import { createHash } from 'node:crypto';
import { constants as fsc, promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { Logger } from '../../core/log.ts';

export { extractTree, verifyTreeSample } from './tree-restore.ts';

export interface SampledFile {
  /** Entry name in the tar (`user/cur/1700000000.M1P2.host:2,S`). */
  path: string;
  size: number;
  /** SHA-256 (hex) of the bytes stored in the tar. */
  sha256: string;
}

export interface TreeStats {
  /** Regular files stored (directories and symlinks are not counted). */
  files: number;
  /** Bytes of file content stored. */
  bytes: number;
  /** Files whose size or mtime changed while they were read; their tar entry is still well-formed. */
  changed: number;
  /** Entries left out: vanished before they could be read, or sockets, fifos and devices. */
  skipped: number;
  /** A deterministic-but-spread sample: the files whose path hashes lowest (see pathRank). */
  sample: SampledFile[];
}

export interface PackOptions {
  /** How many files to sample (0: none). */
  sampleFiles: number;
  log?: Logger;
  /** Aborting destroys the stream with the signal's reason and rejects `stats`. */
  signal?: AbortSignal;
}

const CHUNK = 64 * 1024;
/** What the tar stream buffers before the walk waits for the consumer. */
const HIGH_WATER_MARK = 256 * 1024;

/**
 * Streams `roots` as a tar. `stats` resolves once the walk has ended (every file hashed), which
 * may be before the consumer has read the tar's tail; it rejects, as the stream fails, on an
 * unreadable file or folder, a missing root, abort, or the consumer destroying the stream.
 */
export function packTree(roots: string[] | string, opts: PackOptions): { stream: Readable; stats: Promise<TreeStats> } {
  const list = (Array.isArray(roots) ? roots : [roots]).map((r) => path.resolve(r));
  if (list.length === 0) throw new Error('packTree: no roots given');
  // A single root (a string: the maildir) is stored relative to itself. A list (the extras) is
  // always stored under each root's name, even with one element, so that adding a second extra
  // later does not change where the first one's files are in the archive.
  const prefixed = Array.isArray(roots);
  if (prefixed) {
    const names = new Map<string, string>();
    for (const r of list) {
      const base = path.basename(r);
      const other = names.get(base);
      if (other !== undefined) throw new Error(`packTree: ${other} and ${r} would both be stored as "${base}"`);
      names.set(base, r);
    }
  }

  const pack = tar.pack();
  const stop = new AbortController();
  let wake: (() => void) | undefined;
  const stream = new Readable({
    highWaterMark: HIGH_WATER_MARK,
    read() {
      pack.resume();
      wake?.();
    },
    destroy(err, cb) {
      stop.abort(err ?? new Error('tar stream destroyed before the end'));
      pack.destroy(err);
      wake?.();
      cb(err);
    },
  });
  pack.on('data', (chunk: unknown) => {
    if (!stream.push(chunk)) pack.pause();
  });
  pack.on('end', () => stream.push(null));
  pack.on('error', (err: Error) => stream.destroy(err));

  /** Waits until the consumer has room: the walk never runs more than one entry ahead. */
  const room = async () => {
    while (stream.readableLength >= stream.readableHighWaterMark && !stop.signal.aborted) {
      await new Promise<void>((resolve) => (wake = resolve));
    }
    if (stop.signal.aborted) throw stop.signal.reason;
  };

  const onAbort = () => stream.destroy(opts.signal?.reason ?? new Error('aborted'));
  if (opts.signal?.aborted) queueMicrotask(onAbort);
  else opts.signal?.addEventListener('abort', onAbort, { once: true });
  // Until the stream closes, not just until the walk ends: the tar's tail may still be unread.
  stream.once('close', () => opts.signal?.removeEventListener('abort', onAbort));

  const walker = new Walker(pack, room, stop.signal, opts);
  const stats = (async () => {
    try {
      for (const root of list) await walker.root(root, prefixed ? path.basename(root) : '');
      pack.finalize();
      return walker.result();
    } catch (err) {
      const reason = stop.signal.aborted ? stop.signal.reason : err;
      stream.destroy(reason instanceof Error ? reason : new Error(String(reason)));
      throw reason;
    }
  })();
  stats.catch(() => {}); // the stream carries the error too; a caller reading only the stream must not crash
  return { stream, stats };
}

type Pack = ReturnType<typeof tar.pack>;
type Sink = ReturnType<Pack['entry']>;
type Header = Partial<tar.Header> & Pick<tar.Header, 'name'>;

class Walker {
  private files = 0;
  private bytes = 0;
  private changed = 0;
  private skipped = 0;
  private readonly sampler: Sampler;

  constructor(
    private readonly pack: Pack,
    private readonly room: () => Promise<void>,
    private readonly stop: AbortSignal,
    private readonly opts: PackOptions,
  ) {
    this.sampler = new Sampler(opts.sampleFiles);
  }

  result(): TreeStats {
    const { files, bytes, changed, skipped } = this;
    return { files, bytes, changed, skipped, sample: this.sampler.result() };
  }

  /** A configured root must exist (a typo in the config is an error), and may be a symlink (followed). */
  async root(abs: string, name: string): Promise<void> {
    const st = await fsp.stat(abs).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`backup source ${abs}: ${err.code ?? err.message}`, { cause: err });
    });
    if (st.isDirectory()) await this.directory(abs, name, st);
    else if (st.isFile()) await this.file(abs, name || path.basename(abs));
    else throw new Error(`backup source ${abs} is neither a file nor a directory`);
  }

  private async directory(abs: string, name: string, st: Stats): Promise<void> {
    let names: string[];
    try {
      names = await fsp.readdir(abs);
    } catch (err) {
      if (vanished(err)) return this.skip(abs, 'directory vanished before it was read');
      throw wrap(err, abs);
    }
    if (name) await this.entry({ name, type: 'directory', ...meta(st) });
    // Byte-wise order, so the tar's order (and with it the sample) does not depend on readdir or locale.
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const child of names) {
      const childAbs = path.join(abs, child);
      const childName = name ? `${name}/${child}` : child;
      let cst: Stats;
      try {
        cst = await fsp.lstat(childAbs);
      } catch (err) {
        if (vanished(err)) {
          this.skip(childAbs, 'vanished before it was read');
          continue;
        }
        throw wrap(err, childAbs);
      }
      if (cst.isDirectory()) await this.directory(childAbs, childName, cst);
      else if (cst.isFile()) await this.file(childAbs, childName);
      else if (cst.isSymbolicLink()) await this.symlink(childAbs, childName, cst);
      else this.skip(childAbs, 'not a regular file, directory or symlink');
    }
  }

  /** Stored as a link (its target text), never followed: a link to /etc must not pull /etc in. */
  private async symlink(abs: string, name: string, st: Stats): Promise<void> {
    let target: string;
    try {
      target = await fsp.readlink(abs);
    } catch (err) {
      if (vanished(err)) return this.skip(abs, 'symlink vanished before it was read');
      throw wrap(err, abs);
    }
    await this.entry({ name, type: 'symlink', linkname: target, ...meta(st) });
  }

  private async file(abs: string, name: string): Promise<void> {
    let fh: fsp.FileHandle;
    try {
      // O_NOFOLLOW: it may have been replaced by a symlink since lstat; O_NONBLOCK: or by a fifo.
      fh = await fsp.open(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    } catch (err) {
      if (vanished(err) || (err as NodeJS.ErrnoException).code === 'ELOOP') return this.skip(abs, 'vanished before it was opened');
      throw wrap(err, abs);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return this.skip(abs, 'replaced by a non-file before it was opened');
      // The header declares the size seen now; exactly that many bytes follow, whatever happens.
      const size = st.size;
      const hash = createHash('sha256');
      await this.room();
      let padded = false;
      const entryDone = this.startEntry({ name, type: 'file', size, ...meta(st) }, async (sink) => {
        let pos = 0;
        while (pos < size) {
          if (this.stop.aborted) throw this.stop.reason;
          const want = Math.min(CHUNK, size - pos);
          // A fresh buffer per read: tar-stream keeps a reference until the consumer has read it.
          const buf = Buffer.allocUnsafe(want);
          const { bytesRead } = await fh.read(buf, 0, want, pos);
          let chunk = buf.subarray(0, bytesRead);
          if (bytesRead === 0) {
            chunk = Buffer.alloc(want); // shrank: zeros up to the declared size
            padded = true;
          }
          hash.update(chunk);
          pos += chunk.length;
          if (!sink.write(chunk)) await this.drained(sink);
        }
      });
      await entryDone;
      const after = await fh.stat();
      if (padded || after.size !== size || after.mtimeMs !== st.mtimeMs) {
        this.changed++;
        this.opts.log?.debug({ path: abs, declared: size, now: after.size }, 'backup: file changed while it was read');
      }
      this.files++;
      this.bytes += size;
      this.sampler.offer({ path: name, size, sha256: hash.digest('hex') });
    } catch (err) {
      throw this.stop.aborted ? err : wrap(err, abs);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /** An entry without a body (directory, symlink). */
  private async entry(header: Header): Promise<void> {
    await this.room();
    await this.startEntry(header, async () => {});
  }

  /** Opens an entry, lets `body` write it, and resolves once tar-stream has taken all of it. */
  private startEntry(header: Header, body: (sink: Sink) => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const sink = this.pack.entry(header, (err) => (err ? reject(err) : resolve()));
      sink.on('error', () => {}); // reported through the entry callback; unheard, streamx would throw it
      if (header.type !== 'file') return;
      body(sink).then(
        () => sink.end(null),
        (err: unknown) => {
          sink.destroy(err as Error);
          reject(err);
        },
      );
    });
  }

  private drained(sink: Sink): Promise<void> {
    if (this.stop.aborted) return Promise.reject(this.stop.reason);
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        sink.off('drain', done);
        sink.off('close', done);
        this.stop.removeEventListener('abort', done);
        if (this.stop.aborted) reject(this.stop.reason);
        else resolve();
      };
      sink.on('drain', done);
      sink.on('close', done); // destroyed with the pack: stop, rather than wait for a drain that never comes
      this.stop.addEventListener('abort', done);
    });
  }

  private skip(abs: string, why: string): void {
    this.skipped++;
    this.opts.log?.debug({ path: abs }, `backup: skipped, ${why}`);
  }
}

/**
 * Keeps the K files whose path hashes lowest: deterministic for a given set of paths (whatever the
 * walk order), spread evenly over the tree (a hash does not care about folders), needs no total
 * count in advance, and is stable from one backup to the next (a file sampled once stays sampled
 * while it exists), so successive drills re-check the same mail.
 */
class Sampler {
  private kept: Array<SampledFile & { rank: string }> = [];

  constructor(private readonly k: number) {}

  offer(file: SampledFile): void {
    if (this.k <= 0) return;
    this.kept.push({ ...file, rank: pathRank(file.path) });
    if (this.kept.length >= 2 * this.k) this.trim(); // amortised: sort only every k offers
  }

  result(): SampledFile[] {
    this.trim();
    return this.kept.map(({ path: p, size, sha256 }) => ({ path: p, size, sha256 })).sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  private trim(): void {
    this.kept.sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0));
    this.kept.length = Math.min(this.kept.length, this.k);
  }
}

/** The sampling order of a path: SHA-256 of its entry name. */
export function pathRank(name: string): string {
  return createHash('sha256').update(name).digest('hex');
}

function meta(st: Stats): Pick<tar.Header, 'mode' | 'mtime' | 'uid' | 'gid'> {
  // Not st.mtime: Node rounds that Date to the nearest millisecond, so a time of …:59.9996 became
  // the next second in the tar's whole seconds. Truncated, as tar and the kernel do.
  return { mode: st.mode & 0o7777, mtime: new Date(Math.floor(st.mtimeMs)), uid: st.uid, gid: st.gid };
}

/** Gone between readdir and use: Dovecot moved or expunged it. */
function vanished(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function wrap(err: unknown, abs: string): Error {
  const e = err as NodeJS.ErrnoException;
  return new Error(`backup: ${abs}: ${e.code ?? e.message}`, { cause: err });
}
