// Helpers for the tree archive tests: temp dirs, a maildir-like fixture, hashing a tree on disk,
// reading a tar back into headers, and building (hostile) tars by hand.
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { TestContext } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import tar from 'tar-stream';

export async function tmpDir(t: TestContext, label = 'tree'): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `ceerion-${label}-`));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export const USERS = Array.from({ length: 10 }, (_, i) => `user${i}@example.com`);

/**
 * 2,000 small messages over 10 users, laid out like a Dovecot maildir (Maildir/cur, new, tmp, and a
 * subfolder), with names like Dovecot's. `order: 'reverse'` creates them in the opposite order,
 * to show the archive does not depend on creation (readdir) order.
 */
export async function makeMaildir(root: string, opts: { order?: 'forward' | 'reverse' } = {}): Promise<string[]> {
  const files: string[] = [];
  USERS.forEach((user, u) => {
    const layout: Array<[string, number]> = [['Maildir/cur', 110], ['Maildir/new', 50], ['Maildir/tmp', 10], ['Maildir/.Sent/cur', 30]];
    for (const [folder, count] of layout) {
      for (let i = 0; i < count; i++) {
        const flags = folder.endsWith('cur') ? ':2,S' : '';
        files.push(`${user}/${folder}/${1700000000 + u * 1000 + i}.M${i}P${u}.mx.example.com,S=${100 + i}${flags}`);
      }
    }
  });
  // Content and mtime follow the file's place in the forward listing, whatever the creation order.
  const order = [...files.entries()];
  if (opts.order === 'reverse') order.reverse();
  for (const [i, rel] of order) {
    const abs = path.join(root, rel);
    await fsp.mkdir(path.dirname(abs), { recursive: true });
    await fsp.writeFile(abs, `Subject: message ${i} of ${rel}\r\n\r\n${'body line\r\n'.repeat(i % 37)}`);
    await fsp.utimes(abs, 1_700_000_000 + (i % 1000), 1_700_000_000 + (i % 1000));
  }
  return files;
}

export interface OnDisk {
  type: 'file' | 'symlink' | 'directory';
  sha256?: string;
  size?: number;
  mode: number;
  mtimeS: number;
  target?: string;
}

/** Everything under root (relative path → what it is), without following symlinks. */
export async function readTree(root: string): Promise<Map<string, OnDisk>> {
  const out = new Map<string, OnDisk>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(path.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(root, r);
      const st = await fsp.lstat(abs);
      const base = { mode: st.mode & 0o7777, mtimeS: Math.floor(st.mtimeMs / 1000) };
      if (st.isDirectory()) {
        out.set(r, { type: 'directory', ...base });
        await walk(r);
      } else if (st.isSymbolicLink()) out.set(r, { type: 'symlink', ...base, target: await fsp.readlink(abs) });
      else {
        const data = await fsp.readFile(abs);
        out.set(r, { type: 'file', ...base, size: data.length, sha256: sha256(data) });
      }
    }
  };
  await walk('');
  return out;
}

export async function toBuffer(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export interface ListedEntry {
  name: string;
  type: string;
  size: number;
  linkname?: string;
  sha256?: string;
  mtime?: Date;
}

/** The entries of a tar, in order, with a hash of each file's content. */
export async function listTar(data: Buffer): Promise<ListedEntry[]> {
  const out: ListedEntry[] = [];
  const extract = tar.extract();
  Readable.from([data]).pipe(extract);
  for await (const entry of extract) {
    const body = await toBuffer(entry);
    const h = entry.header;
    out.push({ name: h.name, type: h.type, size: h.size, ...(h.mtime ? { mtime: h.mtime } : {}), ...(h.type === 'symlink' ? { linkname: h.linkname } : {}), ...(h.type === 'file' ? { sha256: sha256(body) } : {}) });
  }
  return out;
}

export type HandEntry = Partial<tar.Header> & { name: string; body?: string | Buffer };

/** A tar built entry by entry, exactly as given (for hostile names, links and types). */
export async function buildTar(entries: HandEntry[], opts: { truncateTo?: number } = {}): Promise<Buffer> {
  const pack = tar.pack();
  const done = toBuffer(pack);
  for (const { body, ...header } of entries) {
    await new Promise<void>((resolve, reject) => {
      if (body !== undefined) pack.entry(header, body, (err) => (err ? reject(err) : resolve()));
      else pack.entry(header, (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  const data = await done;
  return opts.truncateTo === undefined ? data : data.subarray(0, opts.truncateTo);
}

export const bufferStream = (data: Buffer) => Readable.from([data]);

// A real collection before each reading, so garbage not yet collected does not count as held.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
export function liveBytes(): number {
  // Twice: V8 frees ArrayBuffer backing stores on a concurrent sweeper after a collection, and the
  // next collection first waits for that sweep, so only then is `arrayBuffers` up to date.
  gc();
  gc();
  const u = process.memoryUsage();
  return u.heapUsed + u.arrayBuffers;
}

export const MB = 1024 * 1024;
