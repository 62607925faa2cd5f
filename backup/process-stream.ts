/**
 * Child processes as streams (pg_dump, zstd), with one rule the plain stdio pipes do not give:
 * the output only ends cleanly once the process has exited with status 0. A zstd or pg_dump that
 * dies half-way closes its stdout just like one that finished, and a pipeline built on the raw
 * pipe would upload the truncated output as a good backup. Here the stream errors instead, with the
 * program's exit status and the tail of its stderr.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { Duplex, Readable } from 'node:stream';

/** How much of a failing program's stderr goes into the error message. */
const STDERR_KEEP = 4096;

export class ProcessError extends Error {
  constructor(
    readonly program: string,
    readonly status: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stderr: string,
  ) {
    super(`${program} ${signal ? `was killed by ${signal}` : `exited with status ${status}`}${stderr.trim() ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`);
    this.name = 'ProcessError';
  }
}

interface Watched {
  child: ChildProcess;
  /** Resolves on exit 0, rejects with ProcessError otherwise (or a spawn error such as ENOENT). */
  exited: Promise<void>;
}

function watch(command: string, args: string[], options: SpawnOptions): Watched {
  const child = spawn(command, args, { ...options, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    stderr = (stderr + s).slice(-STDERR_KEEP);
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new Error(`${command} is not installed (or not on PATH)`, { cause: err }) : err),
    );
    child.once('close', (status, signal) => (status === 0 ? resolve() : reject(new ProcessError(command, status, signal, stderr))));
  });
  exited.catch(() => undefined);
  return { child, exited };
}

/** A program's stdout that ends only after a clean exit; destroying it kills the program. */
export function spawnReadable(command: string, args: string[], options: SpawnOptions = {}): { stream: Readable; exited: Promise<void> } {
  const { child, exited } = watch(command, args, options);
  child.stdin!.end();
  const stdout = child.stdout!;
  const stream = new Readable({
    highWaterMark: 1024 * 1024,
    read() {
      stdout.resume();
    },
    destroy(err, cb) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      cb(err);
    },
  });
  stdout.on('data', (b: Buffer) => {
    if (!stream.push(b)) stdout.pause();
  });
  let ended = false;
  stdout.once('end', () => {
    ended = true;
  });
  stdout.once('error', (err) => stream.destroy(err));
  exited.then(
    () => {
      // 'close' comes after stdout's end, so everything read has been pushed by now.
      if (!ended) stream.destroy(new Error(`${command} exited before its output ended`));
      else stream.push(null);
    },
    (err: Error) => stream.destroy(err),
  );
  return { stream, exited };
}

/** A filter program (stdin → stdout) as a Duplex whose readable side ends only after a clean exit. */
export function spawnFilter(command: string, args: string[], options: SpawnOptions = {}): Duplex {
  const { child, exited } = watch(command, args, options);
  const stdin = child.stdin!;
  const stdout = child.stdout!;
  let ended = false;
  const duplex = new Duplex({
    readableHighWaterMark: 1024 * 1024,
    writableHighWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      // Our write callback waits for the pipe's: backpressure reaches the producer.
      if (stdin.write(chunk)) cb();
      else stdin.once('drain', () => cb());
    },
    final(cb) {
      stdin.end(cb);
    },
    read() {
      stdout.resume();
    },
    destroy(err, cb) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      cb(err);
    },
  });
  // EPIPE on stdin means the program died; its exit status explains why, so wait for that.
  stdin.on('error', () => undefined);
  stdout.on('data', (b: Buffer) => {
    if (!duplex.push(b)) stdout.pause();
  });
  stdout.once('end', () => {
    ended = true;
  });
  exited.then(
    () => {
      if (!ended) duplex.destroy(new Error(`${command} exited before its output ended`));
      else duplex.push(null);
    },
    (err: Error) => duplex.destroy(err),
  );
  return duplex;
}

/** Runs a program to completion; resolves with its stdout (for `pg_restore --list`, `--version`). */
export async function runProgram(command: string, args: string[], options: SpawnOptions & { input?: string } = {}): Promise<string> {
  const { child, exited } = watch(command, args, options);
  let out = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (s: string) => (out += s));
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(options.input ?? '');
  await exited;
  return out;
}
