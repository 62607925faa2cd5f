/**
 * A learn job, what every way in (gateway, spool) produces and the worker consumes, and the two
 * encodings it has at rest: a spool file (written by dovecot-plugins/bin/ceerion-learn or by the
 * gateway while Redis is down) and a Redis stream entry. Pure: no I/O.
 */
import type { MailClass } from '../../classifier/types.ts';

export interface LearnJob {
  cls: MailClass;
  /** The Dovecot user whose move this was (USER from Dovecot). */
  user: string;
  message: Buffer;
  /** How it arrived: `pipe` (the gateway socket) or `spool` (the fallback program's file). */
  source: 'pipe' | 'spool';
  /** Unix ms when it was received. */
  receivedAt: number;
}

export class LearnJobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LearnJobError';
  }
}

/** Same rule as the classifier's user scope: 1-320 characters, no whitespace or control characters. */
const USER = /^[^\s\p{Cc}]{1,320}$/u;

export function checkUser(user: string): string {
  if (!USER.test(user)) throw new LearnJobError(`user ${JSON.stringify(user.slice(0, 80))} is empty, too long or has spaces or control characters`);
  return user;
}

export function checkClass(cls: string): MailClass {
  if (cls !== 'spam' && cls !== 'ham') throw new LearnJobError(`class must be spam or ham, not ${JSON.stringify(cls.slice(0, 40))}`);
  return cls;
}

const SPOOL_MAGIC = 'CEERION-LEARN 1\n';
const MAX_SPOOL_HEADER = 2048;

/** The spool file format the fallback program writes: a magic line, `name: value` lines, a blank line, the message. */
export function encodeSpoolFile(job: Pick<LearnJob, 'cls' | 'user' | 'message'>): Buffer {
  return Buffer.concat([Buffer.from(`${SPOOL_MAGIC}class: ${job.cls}\nuser: ${job.user}\n\n`, 'utf8'), job.message]);
}

/** Parses a spool file; throws LearnJobError for anything that is not one. */
export function parseSpoolFile(buf: Buffer): { cls: MailClass; user: string; message: Buffer } {
  if (!buf.subarray(0, SPOOL_MAGIC.length).equals(Buffer.from(SPOOL_MAGIC))) throw new LearnJobError('not a ceerion-learn spool file (no magic line)');
  const end = buf.subarray(0, MAX_SPOOL_HEADER).indexOf('\n\n', SPOOL_MAGIC.length - 1);
  if (end === -1) throw new LearnJobError('spool file header is unterminated or too long');
  const fields = new Map<string, string>();
  for (const line of buf.subarray(SPOOL_MAGIC.length, end).toString('utf8').split('\n')) {
    const m = /^([a-z]+): (.*)$/.exec(line);
    if (!m) throw new LearnJobError(`malformed spool header line ${JSON.stringify(line.slice(0, 80))}`);
    if (fields.has(m[1]!)) throw new LearnJobError(`spool header ${m[1]} given twice`);
    fields.set(m[1]!, m[2]!);
  }
  const cls = checkClass(fields.get('class') ?? '');
  const user = checkUser(fields.get('user') ?? '');
  return { cls, user, message: buf.subarray(end + 2) };
}

/** Fields of a stream entry (XADD), the message last. */
export function encodeEntry(job: LearnJob): (string | Buffer)[] {
  return ['v', '1', 'cls', job.cls, 'user', job.user, 'source', job.source, 'at', String(job.receivedAt), 'msg', job.message];
}

/** A stream entry's flat field list (as buffers) back into a job; throws LearnJobError when malformed. */
export function decodeEntry(fields: Buffer[]): LearnJob {
  const map = new Map<string, Buffer>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!.toString('latin1'), fields[i + 1]!);
  if (map.get('v')?.toString() !== '1') throw new LearnJobError('queue entry has no or an unknown version');
  const message = map.get('msg');
  if (!message || message.length === 0) throw new LearnJobError('queue entry has no message');
  const source = map.get('source')?.toString();
  return {
    cls: checkClass(map.get('cls')?.toString() ?? ''),
    user: checkUser(map.get('user')?.toString('utf8') ?? ''),
    message,
    source: source === 'spool' ? 'spool' : 'pipe',
    receivedAt: Number(map.get('at')?.toString() ?? 0) || 0,
  };
}
