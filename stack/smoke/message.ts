/**
 * Pure parts of the smoke test: the messages it sends and what it looks for in the stored copies
 * (header fields, DKIM `d=`, our Authentication-Results).
 */
import { randomBytes } from 'node:crypto';
import { withoutFromLine } from '../starter-model.ts';

export interface Composed {
  subject: string;
  text: string;
}

/** A plain text message; `marker` goes in the subject and the body so both IMAP and search find it. */
export function composeText(opts: { from: string; to: string; subject: string; body: string; date?: Date; domain: string }): string {
  const id = `${randomBytes(8).toString('hex')}@${opts.domain}`;
  return [
    `From: ${opts.from}`,
    `To: ${opts.to}`,
    `Subject: ${opts.subject}`,
    `Date: ${(opts.date ?? new Date()).toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${id}>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 7bit',
    '',
    opts.body,
    '',
  ].join('\r\n');
}

/**
 * The EICAR test file: every antivirus engine detects it, and it is harmless. Built from two halves
 * so this source file itself is not flagged by a scanner.
 */
export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$' + 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';

/** A message carrying EICAR as a base64 attachment (how it would arrive in the wild). */
export function composeEicar(opts: { from: string; to: string; subject: string; domain: string }): string {
  const boundary = `b${randomBytes(8).toString('hex')}`;
  const head = composeText({ ...opts, body: '' }).split('\r\n\r\n')[0]!.replace('Content-Type: text/plain; charset=utf-8', `Content-Type: multipart/mixed; boundary="${boundary}"`);
  return [
    head,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    'The attachment is the EICAR antivirus test file.',
    `--${boundary}`,
    'Content-Type: application/octet-stream; name="eicar.com"',
    'Content-Disposition: attachment; filename="eicar.com"',
    'Content-Transfer-Encoding: base64',
    '',
    Buffer.from(EICAR, 'latin1').toString('base64'),
    `--${boundary}--`,
    '',
  ].join('\r\n');
}

/** Unfolded header fields of a raw message, in order (name as written, value trimmed). */
export function headerFields(raw: string): Array<{ name: string; value: string }> {
  const end = raw.search(/\r?\n\r?\n/);
  const block = end < 0 ? raw : raw.slice(0, end);
  const out: Array<{ name: string; value: string }> = [];
  for (const line of block.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && out.length > 0) out[out.length - 1]!.value += ` ${line.trim()}`;
    else {
      const colon = line.indexOf(':');
      if (colon > 0) out.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() });
    }
  }
  return out;
}

export const fieldsNamed = (raw: string, name: string): string[] =>
  headerFields(raw)
    .filter((f) => f.name.toLowerCase() === name.toLowerCase())
    .map((f) => f.value);

/** `tag=value` pairs of a DKIM-Signature (whitespace inside values removed, as RFC 6376 allows). */
export function dkimTags(value: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const part of value.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    tags[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1).replace(/\s+/g, '');
  }
  return tags;
}

/** A DKIM-Signature by `domain` (d= compared case-insensitively); undefined when none. */
export function dkimSignatureFor(raw: string, domain: string): Record<string, string> | undefined {
  return fieldsNamed(raw, 'DKIM-Signature')
    .map(dkimTags)
    .find((t) => t.d?.toLowerCase() === domain.toLowerCase());
}

/** The host our milter names in its trace header (`ceerion-milter 0.1.0 on HOST; …`). */
export function milterHost(raw: string): string | undefined {
  for (const v of fieldsNamed(raw, 'X-Ceerion-Milter')) {
    const m = /\bon\s+([^\s;]+)/.exec(v);
    if (m) return m[1];
  }
  return undefined;
}

/**
 * Our Authentication-Results: the one whose authserv-id is the host in our trace header (the
 * milter deletes incoming copies claiming that id, so only ours can carry it). Without a trace
 * header, any A-R with an SPF result is taken, and `verified` says the id could not be checked.
 */
export function ourAuthResults(raw: string): { value: string; verified: boolean } | undefined {
  const all = fieldsNamed(raw, 'Authentication-Results');
  const host = milterHost(raw);
  if (host) {
    const mine = all.find((v) => v.split(';')[0]!.trim().toLowerCase() === host.toLowerCase());
    return mine === undefined ? undefined : { value: mine, verified: true };
  }
  const any = all.find((v) => /\bspf=/.test(v));
  return any === undefined ? undefined : { value: any, verified: false };
}

/** `spf=none dkim=none dmarc=none`: the method results of an A-R value, for a short detail line. */
export function resultSummary(ar: string): string {
  return [...ar.matchAll(/\b(spf|dkim|dmarc|arc)=([a-z]+)/g)].map((m) => `${m[1]}=${m[2]}`).join(' ');
}

/** A corpus message with our marker added as the first header line and the subject tagged. */
export function tagSample(raw: Buffer, markerWord: string): string {
  const text = withoutFromLine(raw).toString('latin1').replace(/\r?\n/g, '\r\n');
  return `X-Ceerion-Smoke: ${markerWord}\r\n${text}`;
}
