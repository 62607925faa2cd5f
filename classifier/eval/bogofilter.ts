/**
 * The baseline: bogofilter (Robinson-Fisher Bayes, Berkeley DB wordlist) trained and scored on the
 * same folds as our models.
 *
 * Speed: every message is written to a temp file once; per fold one `-s -b` and one `-n -b`
 * process register the training files (names on stdin, so no argv limit) and one `-TT -b` process
 * scores the test files. That is three processes per fold instead of one per message; the whole
 * SpamAssassin corpus takes a few seconds. Folds run in parallel, each with its own database dir.
 *
 * `-C` skips /etc/bogofilter.cf so results do not depend on the host's config (bogofilter's
 * compiled-in defaults apply: robx 0.52, robs 0.0178, min_dev 0.375); `-y 0` turns token
 * timestamps off, which we do not need. `-TT` prints the spamicity with 16 decimals, as exact as
 * bogofilter gets; many messages still come out as exactly 0 or 1, which the metrics handle.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { MailClass } from '../types.ts';
import { mapLimit } from './corpus.ts';

export interface BogofilterOptions {
  /** Executable; default "bogofilter" from PATH. */
  bin?: string;
  /** Folds run at the same time; default the number of CPUs. */
  concurrency?: number;
  /** Parent of the temp directory; default os.tmpdir(). */
  tmpRoot?: string;
  /** Extra arguments for every run, e.g. ["-m", "0.1,0.1,0.52"] to try other parameters. */
  args?: readonly string[];
  onFold?: (fold: FoldTiming) => void;
}

export interface FoldTiming {
  fold: number;
  trainSize: number;
  testSize: number;
  trainMs: number;
  scoreMs: number;
}

export interface BogofilterRun {
  /** Out-of-fold spamicity of every message, in corpus order. */
  scores: Float64Array;
  folds: FoldTiming[];
  /** Sums over folds (process wall time). */
  trainMs: number;
  scoreMs: number;
  /** Whole run, temp files included; less than the sums when folds run in parallel. */
  wallMs: number;
}

interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}

function run(bin: string, args: readonly string[], stdin: string): Promise<Exec> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    // EPIPE if bogofilter dies before reading all names; the exit code reports the real problem.
    child.stdin.on('error', () => {});
    child.on('close', (code) =>
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
    );
    child.stdin.end(stdin);
  });
}

/** `bogofilter -V`'s first line, or undefined when the binary is missing. */
export async function bogofilterVersion(bin = 'bogofilter'): Promise<string | undefined> {
  try {
    const r = await run(bin, ['-V'], '');
    const first = (r.stdout + r.stderr).split('\n')[0]?.trim();
    return r.code === 0 && first ? first : undefined;
  } catch {
    return undefined;
  }
}

/** Registers files as spam (-s) or ham (-n). */
async function register(bin: string, common: string[], cls: MailClass, files: string[]): Promise<void> {
  // bogofilter -b with no names still creates the database, but there is nothing to do.
  if (files.length === 0) return;
  const r = await run(bin, [...common, cls === 'spam' ? '-s' : '-n', '-b'], files.join('\n') + '\n');
  if (r.code !== 0) throw new Error(`bogofilter ${cls === 'spam' ? '-s' : '-n'} exited ${r.code}: ${r.stderr.trim()}`);
}

/** Spamicity per file. Exit codes 0/1/2 are the last message's spam/ham/unsure; 3 is an error. */
async function classify(bin: string, common: string[], files: string[]): Promise<Map<string, number>> {
  const scores = new Map<string, number>();
  if (files.length === 0) return scores;
  const r = await run(bin, [...common, '-TT', '-b'], files.join('\n') + '\n');
  if (r.code > 2 || r.code < 0) throw new Error(`bogofilter -TT exited ${r.code}: ${r.stderr.trim()}`);
  for (const line of r.stdout.split('\n')) {
    if (!line) continue;
    // "<file name> <score>": our file names have no spaces, but split at the last one regardless.
    const sp = line.lastIndexOf(' ');
    const score = Number(line.slice(sp + 1));
    if (sp < 0 || !Number.isFinite(score)) throw new Error(`unexpected bogofilter output line: ${line}`);
    scores.set(line.slice(0, sp), score);
  }
  return scores;
}

export async function bogofilterCrossValidate(
  corpus: ReadonlyArray<{ raw: Buffer; label: MailClass }>,
  assignment: ArrayLike<number>,
  k: number,
  opts: BogofilterOptions = {},
): Promise<BogofilterRun> {
  if (assignment.length !== corpus.length) throw new RangeError('assignment and corpus differ in length');
  const bin = opts.bin ?? 'bogofilter';
  const t0 = performance.now();
  const root = await mkdtemp(path.join(opts.tmpRoot ?? os.tmpdir(), 'ceerion-bogofilter-'));
  try {
    const msgDir = path.join(root, 'msgs');
    await mkdir(msgDir);
    const files = corpus.map((_, i) => path.join(msgDir, `${i}.eml`));
    await mapLimit(corpus, 32, (m, i) => writeFile(files[i]!, m.raw));

    const scores = new Float64Array(corpus.length).fill(NaN);
    const folds: FoldTiming[] = [];
    const doFold = async (fold: number): Promise<void> => {
      const db = path.join(root, `db-${fold}`);
      await mkdir(db);
      const common = ['-C', '-y', '0', '-d', db, ...(opts.args ?? [])];
      const spam: string[] = [];
      const ham: string[] = [];
      const test: number[] = [];
      for (let i = 0; i < corpus.length; i++) {
        if (assignment[i] === fold) test.push(i);
        else (corpus[i]!.label === 'spam' ? spam : ham).push(files[i]!);
      }
      const a = performance.now();
      await register(bin, common, 'spam', spam);
      await register(bin, common, 'ham', ham);
      const b = performance.now();
      const got = await classify(bin, common, test.map((i) => files[i]!));
      const c = performance.now();
      for (const i of test) {
        const s = got.get(files[i]!);
        if (s === undefined) throw new Error(`bogofilter gave no score for ${files[i]}`);
        scores[i] = s;
      }
      // The fold's database is done with; free the disk space now rather than at the end.
      await rm(db, { recursive: true, force: true });
      const t: FoldTiming = { fold, trainSize: spam.length + ham.length, testSize: test.length, trainMs: b - a, scoreMs: c - b };
      folds.push(t);
      opts.onFold?.(t);
    };
    const foldIds = Array.from({ length: k }, (_, f) => f);
    await mapLimit(foldIds, Math.max(1, opts.concurrency ?? os.availableParallelism()), doFold);
    folds.sort((x, y) => x.fold - y.fold);
    return {
      scores,
      folds,
      trainMs: folds.reduce((s, f) => s + f.trainMs, 0),
      scoreMs: folds.reduce((s, f) => s + f.scoreMs, 0),
      wallMs: performance.now() - t0,
    };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
