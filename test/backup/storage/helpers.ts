// Shared by the storage tests: byte streams, a log that records, and a client middleware that
// counts (or rewrites) the S3 commands a store sends.
import type { S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import pino from 'pino';
import type { Logger } from '../../../core/log.ts';

export const MiB = 1024 * 1024;

/** `bytes` in chunks of `chunk` bytes, as a byte stream (not object mode). */
export function streamOf(bytes: Buffer, chunk = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let at = 0; at < bytes.length; at += chunk) yield bytes.subarray(at, at + chunk);
    })(),
    { objectMode: false },
  );
}

/** A stream that sends `first` and then waits (until the test destroys or aborts it). */
export function stalledStream(first: Buffer): PassThrough {
  const s = new PassThrough();
  s.write(first);
  return s;
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return Buffer.concat(chunks);
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
export const randomData = (n: number) => randomBytes(n);

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A pino logger whose lines (parsed) land in `lines`. */
export function recordingLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { log, lines };
}

/**
 * Records every command the client sends (`commands`), before the SDK serializes it; `rewrite`
 * may change a command's input or throw in place of the server.
 */
export function recordCommands(
  client: S3Client,
  rewrite?: (command: string, input: Record<string, unknown>) => Record<string, unknown> | void,
): { commands: string[]; count(name: string): number } {
  const commands: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = String(context.commandName);
      commands.push(name);
      const input = rewrite?.(name, args.input as Record<string, unknown>);
      return next(input ? { ...args, input } : args);
    },
    { step: 'initialize', name: `recordCommands${Math.random()}` },
  );
  return { commands, count: (name) => commands.filter((c) => c === name).length };
}
