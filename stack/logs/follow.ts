/**
 * Reading var/log/*.log: the last N lines of each file, then (following) whatever is appended,
 * merged across files in time order (merge.ts) batch by batch.
 *
 * Following is polling (every `pollMs`, woken early by fs.watch on the directory when it works):
 * fs.watch alone misses events on some filesystems and says nothing reliable about rotation.
 * Each poll, per file:
 * - the open descriptor is read to its end first, so lines written to a file just before it was
 *   rotated (renamed away) are not lost;
 * - a different inode at the path means rotation: the new file is read from its start;
 * - a size below our position means truncation (copytruncate): read again from the start. A file
 *   truncated and regrown past our position between two polls cannot be told from appends; the
 *   poll interval keeps that window short.
 * - a log file that appears later (a service started after us) is read from its start.
 * A line without its newline yet waits for the rest (capped at MAX_LINE, then shown as is).
 */
import { watch, type FSWatcher } from 'node:fs';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { parseLine } from './line.ts';
import { mergeStreams, stamp, type StampState, type TimedLine } from './merge.ts';

const CHUNK = 64 * 1024;
const MAX_LINE = 1024 * 1024;

export class FileTail {
  private fh: FileHandle | undefined;
  private ino: number | undefined;
  private pos = 0;
  private partial: Buffer = Buffer.alloc(0);
  readonly stampState: StampState = {};

  constructor(
    readonly file: string,
    readonly service: string,
  ) {}

  /** Opens the file and returns its last `n` complete lines; reading continues from its end. */
  async openAtTail(n: number): Promise<string[]> {
    if (!(await this.reopen())) return [];
    const size = (await this.fh!.stat()).size;
    const lines = n > 0 ? await lastLines(this.fh!, size, n) : [];
    this.pos = size;
    // An unfinished last line: keep it, the rest is on its way.
    this.partial = await readRange(this.fh!, size - (await trailingPartialLength(this.fh!, size)), size);
    return lines;
  }

  /** Opens a file that appeared while following: all of it is new. */
  async openAtStart(): Promise<void> {
    await this.reopen();
  }

  /** New complete lines since the last call (see the header for rotation and truncation). */
  async poll(): Promise<string[]> {
    const st = await stat(this.file).catch(() => undefined);
    if (!this.fh) {
      if (!st) return [];
      await this.reopen();
    }
    const out = await this.drain();
    if (st && st.ino !== this.ino) {
      const rest = this.flushPartial();
      if (rest !== undefined) out.push(rest);
      await this.reopen();
      out.push(...(await this.drain()));
    } else if (st && st.size < this.pos) {
      this.pos = 0;
      this.partial = Buffer.alloc(0);
      out.push(...(await this.drain()));
    }
    return out;
  }

  /** The unfinished last line, if any (printed when not following). */
  flushPartial(): string | undefined {
    if (this.partial.length === 0) return undefined;
    const line = decode(this.partial);
    this.partial = Buffer.alloc(0);
    return line;
  }

  async close(): Promise<void> {
    await this.fh?.close().catch(() => {});
    this.fh = undefined;
  }

  private async reopen(): Promise<boolean> {
    await this.close();
    try {
      this.fh = await open(this.file, 'r');
    } catch {
      return false;
    }
    this.ino = (await this.fh.stat()).ino;
    this.pos = 0;
    this.partial = Buffer.alloc(0);
    return true;
  }

  private async drain(): Promise<string[]> {
    if (!this.fh) return [];
    const out: string[] = [];
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const { bytesRead } = await this.fh.read(buf, 0, CHUNK, this.pos);
      if (bytesRead === 0) return out;
      this.pos += bytesRead;
      let data = Buffer.concat([this.partial, buf.subarray(0, bytesRead)]);
      for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a)) {
        out.push(decode(data.subarray(0, nl)));
        data = data.subarray(nl + 1);
      }
      if (data.length > MAX_LINE) {
        out.push(decode(data));
        data = Buffer.alloc(0);
      }
      this.partial = Buffer.from(data);
    }
  }
}

const decode = (b: Buffer): string => b.toString('utf8').replace(/\r$/, '');

async function readRange(fh: FileHandle, from: number, to: number): Promise<Buffer> {
  const buf = Buffer.alloc(Math.max(0, to - from));
  if (buf.length > 0) await fh.read(buf, 0, buf.length, from);
  return buf;
}

/** Bytes after the last newline (0 when the file ends with one). */
async function trailingPartialLength(fh: FileHandle, size: number): Promise<number> {
  for (let end = size; end > 0; ) {
    const from = Math.max(0, end - CHUNK);
    const nl = (await readRange(fh, from, end)).lastIndexOf(0x0a);
    if (nl >= 0) return size - (from + nl + 1);
    if (size - from > MAX_LINE) return 0;
    end = from;
  }
  return size;
}

/** The last `n` complete lines, reading backwards in chunks (a large log is not read whole). */
async function lastLines(fh: FileHandle, size: number, n: number): Promise<string[]> {
  const end = size - (await trailingPartialLength(fh, size));
  let from = end;
  let data = Buffer.alloc(0);
  let newlines = 0;
  // n lines need n+1 newlines before them (or the start of the file).
  while (from > 0 && newlines <= n) {
    const start = Math.max(0, from - CHUNK);
    const chunk = await readRange(fh, start, from);
    for (const b of chunk) if (b === 0x0a) newlines++;
    data = Buffer.concat([chunk, data]);
    from = start;
  }
  const lines = data.toString('utf8').split('\n');
  lines.pop(); // after the final newline: nothing
  return lines.slice(-n).map((l) => l.replace(/\r$/, ''));
}

export interface FollowOptions {
  dir: string;
  /** Only these services' files (name = file name without .log). */
  services?: ReadonlySet<string>;
  /** Last lines per file shown first. */
  lines: number;
  follow: boolean;
  pollMs?: number;
  /** Each merged batch, in time order. */
  onLines: (lines: TimedLine[]) => void;
  signal?: AbortSignal;
  now?: () => number;
}

/** Reads the history, then follows until `signal` aborts (or returns after the history). */
export async function followLogs(opts: FollowOptions): Promise<void> {
  const now = opts.now ?? Date.now;
  const tails = new Map<string, FileTail>();
  const discover = async (): Promise<FileTail[]> => {
    const names = (await readdir(opts.dir).catch(() => [] as string[])).filter((n) => n.endsWith('.log')).sort();
    const found: FileTail[] = [];
    for (const name of names) {
      const service = name.slice(0, -'.log'.length);
      if (tails.has(service) || (opts.services && !opts.services.has(service))) continue;
      const tail = new FileTail(path.join(opts.dir, name), service);
      tails.set(service, tail);
      found.push(tail);
    }
    return found;
  };
  const emit = (batches: Array<[FileTail, string[]]>, mode: 'history' | 'follow', fallback?: Map<FileTail, number>): void => {
    const at = now();
    const streams = batches.map(([tail, raw]) => stamp(raw.map((r) => parseLine(tail.service, r, at)), tail.stampState, fallback?.get(tail) ?? at, mode));
    const merged = mergeStreams(streams);
    if (merged.length > 0) opts.onLines(merged);
  };

  try {
    const first = await discover();
    const history: Array<[FileTail, string[]]> = [];
    // History lines with no time of their own (nor a line before them that has one) sort at the
    // file's last write: the best guess there is.
    const mtimes = new Map<FileTail, number>();
    for (const tail of first) {
      const mtime = (await stat(tail.file).catch(() => undefined))?.mtimeMs;
      if (mtime !== undefined) mtimes.set(tail, mtime);
      history.push([tail, await tail.openAtTail(opts.lines)]);
    }
    if (!opts.follow) {
      for (const entry of history) {
        const rest = entry[0].flushPartial();
        if (rest !== undefined) entry[1].push(rest);
      }
      emit(history, 'history', mtimes);
      return;
    }
    emit(history, 'history', mtimes);
    await pollLoop(opts, async () => {
      for (const tail of await discover()) await tail.openAtStart();
      const batches: Array<[FileTail, string[]]> = [];
      for (const tail of tails.values()) batches.push([tail, await tail.poll()]);
      emit(batches, 'follow');
    });
  } finally {
    for (const t of tails.values()) await t.close();
  }
}

async function pollLoop(opts: FollowOptions, tick: () => Promise<void>): Promise<void> {
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(opts.dir, () => wake?.());
    watcher.on('error', () => {});
  } catch {
    watcher = undefined; // polling alone still works
  }
  try {
    while (!opts.signal?.aborted) {
      await tick();
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          opts.signal?.removeEventListener('abort', done);
          wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, opts.pollMs ?? 250);
        wake = done;
        opts.signal?.addEventListener('abort', done, { once: true });
      });
    }
  } finally {
    watcher?.close();
  }
}
