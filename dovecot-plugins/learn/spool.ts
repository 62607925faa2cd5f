/**
 * The local spool: where dovecot-plugins/bin/ceerion-learn puts messages while the gateway socket
 * is absent, and where the gateway itself puts them while Redis is down. Maildir-style: a file is
 * written in tmp/ and renamed into new/, so a reader never sees half a file. The importer moves
 * files from new/ into the queue and deletes them; files it cannot parse go to bad/ for a look.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { silentLogger, type Logger } from '../../core/log.ts';
import { encodeSpoolFile, LearnJobError, parseSpoolFile, type LearnJob } from './job.ts';

/** Creates tmp/, new/ and bad/. `mode` lets the mail user write (the program runs as that user). */
export async function ensureSpool(dir: string, mode = 0o1777): Promise<void> {
  for (const sub of ['tmp', 'new', 'bad']) {
    const p = path.join(dir, sub);
    await mkdir(p, { recursive: true });
    if (sub !== 'bad') await chmod(p, mode);
  }
}

/** Writes a job durably (fsync before the rename): the gateway's fallback while Redis is down. */
export async function writeSpoolFile(dir: string, job: Pick<LearnJob, 'cls' | 'user' | 'message'>): Promise<string> {
  const name = `${Math.floor(Date.now() / 1000)}.${process.pid}.${randomBytes(6).toString('hex')}.${job.cls}`;
  const tmp = path.join(dir, 'tmp', name);
  const fh = await open(tmp, 'wx', 0o640);
  try {
    await fh.writeFile(encodeSpoolFile(job));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path.join(dir, 'new', name));
  return name;
}

export interface SpoolImportResult {
  imported: number;
  skipped: number;
  bad: number;
}

export interface SpoolImporterOptions {
  dir: string;
  maxMessageBytes: number;
  /** Queues one job; a rejection stops the scan (the file stays for the next one). */
  enqueue(job: LearnJob): Promise<unknown>;
  log?: Logger;
  now?: () => number;
}

export class SpoolImporter {
  private running: Promise<SpoolImportResult> | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: SpoolImporterOptions) {
    this.log = opts.log ?? silentLogger;
  }

  /** One pass over new/, oldest first. Concurrent calls share the pass in progress. */
  scan(): Promise<SpoolImportResult> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<SpoolImportResult> {
    const result: SpoolImportResult = { imported: 0, skipped: 0, bad: 0 };
    const newDir = path.join(this.opts.dir, 'new');
    const names = (await readdir(newDir).catch(() => [] as string[])).sort();
    for (const name of names) {
      const file = path.join(newDir, name);
      const size = (await stat(file).catch(() => null))?.size;
      if (size === undefined) continue; // taken by another importer meanwhile
      let job: LearnJob;
      try {
        // A file the program cut at maxMessageBytes + 1 is over the limit: skip it unread.
        if (size > this.opts.maxMessageBytes + 4096) {
          const head = await readHead(file, 4096);
          const parsed = parseSpoolFile(head);
          this.log.warn({ file: name, user: parsed.user, bytes: size }, 'spooled message is over learn.maxMessageBytes; not learned');
          await unlink(file);
          result.skipped++;
          continue;
        }
        const parsed = parseSpoolFile(await readFile(file));
        if (parsed.message.length > this.opts.maxMessageBytes || parsed.message.length === 0) {
          this.log.warn({ file: name, user: parsed.user, bytes: parsed.message.length }, 'spooled message is empty or over learn.maxMessageBytes; not learned');
          await unlink(file);
          result.skipped++;
          continue;
        }
        job = { ...parsed, source: 'spool', receivedAt: (this.opts.now ?? Date.now)() };
      } catch (err) {
        if (!(err instanceof LearnJobError)) throw err;
        this.log.warn({ file: name, err: err.message }, 'not a learn spool file; moved to bad/');
        await rename(file, path.join(this.opts.dir, 'bad', name)).catch(() => undefined);
        result.bad++;
        continue;
      }
      await this.opts.enqueue(job);
      await unlink(file).catch(() => undefined);
      result.imported++;
    }
    if (result.imported || result.skipped || result.bad) this.log.info(result, 'learn spool imported');
    return result;
  }
}

async function readHead(file: string, bytes: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}
