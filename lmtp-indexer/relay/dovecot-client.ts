/**
 * Relays one message to Dovecot's LMTP server (RFC 2033) and returns Dovecot's answer for each
 * recipient, so the indexer can pass it back to Postfix unchanged (a quota-full 552 stays 552).
 *
 * Connections are reused (session-pool.ts), as Postfix's own connection cache does; `reuse: false`
 * gives one connection per delivery.
 *
 * The safety rule of the product: mail must never be lost. Whatever goes wrong on our side of the
 * conversation (Dovecot down, silent, disconnecting, talking nonsense, or our own body source
 * failing) becomes a 451 for every recipient that has no final answer yet, so Postfix keeps the
 * message and retries. A 5xx reaches Postfix only when Dovecot itself sent it. Status codes follow
 * RFC 3463: 4.4.1 "no answer from host" (connect refused, socket missing, connect timeout),
 * 4.4.2 "bad connection" (established, then timed out or dropped), 4.5.0 for invalid replies,
 * 4.3.0 for a greeting/LHLO refusal and for our own body source failing.
 */
import type { Readable } from 'node:stream';
import type { ListenAddress } from '../../core/listen.ts';
import type { Logger } from '../../core/log.ts';
import type { RecipientReply } from '../types.ts';
import { deferral, LmtpSession, RelayFailure } from './lmtp-session.ts';
import { toRecipientReply, type SmtpReply } from './reply-codec.ts';
import { poolFor } from './session-pool.ts';

export { closeIdleDovecotConnections } from './session-pool.ts';

/**
 * ESMTP parameters, either as written (`['BODY=8BITMIME', 'SMTPUTF8']`) or as a map
 * (`{ BODY: '8BITMIME', SMTPUTF8: true }`, the shape smtp-server hands the LMTP server).
 */
export type EsmtpParams = readonly string[] | Readonly<Record<string, string | true>>;

export interface RelayRecipient {
  address: string;
  /** RCPT parameters such as `ORCPT=rfc822;a@b`; sent only when Dovecot advertised their extension. */
  params?: EsmtpParams;
}

export interface DeliverOptions {
  address: ListenAddress;
  lhloName: string;
  /** Envelope sender without <>; '' for the null sender. */
  mailFrom: string;
  /** MAIL parameters such as `BODY=8BITMIME`, `SMTPUTF8`, `SIZE=123`; see pickParams. */
  mailParams?: EsmtpParams;
  recipients: Array<string | RelayRecipient>;
  /** The message as received, not dot-stuffed. Called at most once, and only after Dovecot's 354. */
  body: () => Readable;
  /** Limit for connecting, for each reply, and for each wait on socket backpressure. */
  timeoutMs: number;
  log: Logger;
  /** Reuse idle connections to this Dovecot (default true); false: one connection per delivery. */
  reuse?: boolean;
}

/** The LHLO keyword each parameter needs (RFC 1652, 1870, 6531, 3461, 4954). */
const PARAM_EXTENSION: Readonly<Record<string, string>> = {
  BODY: '8BITMIME',
  SIZE: 'SIZE',
  SMTPUTF8: 'SMTPUTF8',
  RET: 'DSN',
  ENVID: 'DSN',
  NOTIFY: 'DSN',
  ORCPT: 'DSN',
  AUTH: 'AUTH',
};

/** LHLO capabilities: keyword (upper case) → its arguments. The first line is the server's name. */
export function parseCapabilities(lhlo: SmtpReply): Map<string, string[]> {
  const caps = new Map<string, string[]>();
  for (const line of lhlo.lines.slice(1)) {
    const [keyword, ...args] = line.trim().split(/\s+/);
    if (keyword) caps.set(keyword.toUpperCase(), args);
  }
  return caps;
}

/**
 * The parameters the server advertised support for. Dovecot answers an unadvertised one with
 * `555 5.5.4 Unsupported parameters` (2.3 does not advertise SMTPUTF8, SIZE or DSN), which would
 * bounce the mail for our mistake, so those are dropped as Postfix's own client drops them.
 * BODY=BINARYMIME always goes: it needs BDAT, and we send DATA.
 */
export function pickParams(params: readonly string[], caps: ReadonlyMap<string, readonly string[]>): { kept: string[]; dropped: string[] } {
  const kept: string[] = [];
  const dropped: string[] = [];
  for (const p of params) {
    const [name = '', value = ''] = p.split('=', 2);
    const keyword = name.toUpperCase();
    const needs = PARAM_EXTENSION[keyword] ?? keyword;
    const ok = caps.has(needs) && !(keyword === 'BODY' && value.toUpperCase() === 'BINARYMIME');
    (ok ? kept : dropped).push(p);
  }
  return { kept, dropped };
}

function paramList(params: EsmtpParams | undefined): string[] {
  if (params === undefined) return [];
  if (Array.isArray(params)) return [...(params as readonly string[])];
  return Object.entries(params).map(([k, v]) => (v === true ? k : `${k}=${v}`));
}

function checkLine(value: string, what: string, extra?: RegExp): void {
  if (typeof value !== 'string' || /[\r\n\0]/.test(value) || extra?.test(value)) throw new TypeError(`${what} would break the LMTP command line: ${JSON.stringify(value)}`);
}

/** True for 2xx, false for 4xx/5xx; a 3xx where none belongs is not an answer we can pass on. */
function accepted(reply: SmtpReply, stage: string, where: string): boolean {
  if (reply.code >= 200 && reply.code < 300) return true;
  if (reply.code >= 400) return false;
  throw deferral('protocol', '4.5.0', `Dovecot LMTP at ${where} answered ${stage} with ${reply.code}; will retry`);
}

/** Greeting or LHLO not OK: Dovecot's 4xx is passed on, a 5xx becomes a 451 so the mail is kept. */
function refusal(reply: SmtpReply, stage: string, where: string): RelayFailure {
  const r = toRecipientReply(reply);
  if (reply.code >= 400 && reply.code < 500) return new RelayFailure('refused', r);
  return deferral('refused', '4.3.0', `Dovecot LMTP at ${where} refused the session at ${stage}: ${r.code} ${r.enhanced ?? ''} ${r.message}`.replace(/ +/g, ' '));
}

interface Rcpt {
  address: string;
  params: string[];
}

async function handshake(s: LmtpSession, lhloName: string): Promise<void> {
  await s.connect();
  const greeting = await s.next('greeting');
  if (greeting.code !== 220) throw refusal(greeting, 'greeting', s.where);
  s.send(`LHLO ${lhloName}\r\n`);
  const lhlo = await s.next('LHLO');
  if (lhlo.code !== 250) throw refusal(lhlo, 'LHLO', s.where);
  s.caps = parseCapabilities(lhlo);
}

/** One transaction (MAIL … end of DATA) on a session that has done its handshake. */
async function converse(s: LmtpSession, opts: DeliverOptions, mailParams: string[], rcpts: Rcpt[], results: Array<RecipientReply | undefined>, log: Logger): Promise<void> {
  const caps = s.caps!;

  const params = (list: readonly string[], what: string): string => {
    const { kept, dropped } = pickParams(list, caps);
    if (dropped.length > 0) log.debug({ dropped, what }, 'LMTP parameters Dovecot did not advertise were left out');
    return kept.map((p) => ` ${p}`).join('');
  };
  const mailCmd = `MAIL FROM:<${opts.mailFrom}>${params(mailParams, 'MAIL')}\r\n`;
  const rcptCmds = rcpts.map((r) => `RCPT TO:<${r.address}>${params(r.params, 'RCPT')}\r\n`);
  const pipelining = caps.has('PIPELINING');

  // RFC 2920: MAIL and every RCPT in one write, then the replies in order. Without PIPELINING,
  // one command at a time; RCPTs are not sent at all after MAIL failed.
  if (pipelining) s.send(mailCmd + rcptCmds.join(''));
  else s.send(mailCmd);
  const mail = await s.next('MAIL FROM');
  const mailOk = accepted(mail, 'MAIL FROM', s.where);
  // Set now: should the pipelined RCPT replies then fail to come, Dovecot's MAIL answer still stands.
  if (!mailOk) for (const i of results.keys()) results[i] = toRecipientReply(mail);
  const ok: number[] = [];
  if (mailOk || pipelining) {
    for (const [i, cmd] of rcptCmds.entries()) {
      if (!pipelining) s.send(cmd);
      const reply = await s.next(`RCPT TO:<${rcpts[i]!.address}>`);
      // After a failed MAIL the RCPT replies are read only to keep the stream in step.
      if (!mailOk) continue;
      if (accepted(reply, 'RCPT TO', s.where)) ok.push(i);
      else results[i] = toRecipientReply(reply);
    }
  }
  if (!mailOk || ok.length === 0) {
    if (opts.reuse === false) return;
    // The transaction is still open on Dovecot's side: RSET closes it so the connection can be reused.
    s.send('RSET\r\n');
    if ((await s.next('RSET')).code !== 250) s.close();
    return;
  }

  s.send('DATA\r\n');
  const data = await s.next('DATA');
  if (data.code !== 354) {
    if (accepted(data, 'DATA', s.where)) throw deferral('protocol', '4.5.0', `Dovecot LMTP at ${s.where} answered DATA with ${data.code}; will retry`);
    for (const i of ok) results[i] = toRecipientReply(data);
    return;
  }
  await s.sendBody(opts.body);
  // RFC 2033 §4.2: one reply per recipient accepted at RCPT, in RCPT order.
  for (const i of ok) {
    const reply = await s.next(`end of DATA (reply for <${rcpts[i]!.address}>)`);
    accepted(reply, 'end of DATA', s.where);
    results[i] = toRecipientReply(reply);
  }
}

/**
 * Delivers one message through Dovecot's LMTP. The result has one entry per input recipient, in
 * order: the RCPT rejection, or the reply after DATA, or a 451 when the conversation failed before
 * that recipient had a final answer. Rejects only for invalid options (TypeError), never for
 * network or protocol trouble.
 */
export async function deliverToDovecot(opts: DeliverOptions): Promise<RecipientReply[]> {
  checkLine(opts.lhloName, 'lhloName', /\s|^$/);
  checkLine(opts.mailFrom, 'mailFrom');
  const mailParams = paramList(opts.mailParams);
  for (const p of mailParams) checkLine(p, 'MAIL parameter', /\s|^$/);
  if (!(opts.timeoutMs > 0 && Number.isFinite(opts.timeoutMs))) throw new TypeError(`timeoutMs must be a positive number, got ${opts.timeoutMs}`);
  const rcpts: Rcpt[] = opts.recipients.map((r) => (typeof r === 'string' ? { address: r, params: [] } : { address: r.address, params: paramList(r.params) }));
  if (rcpts.length === 0) throw new TypeError('deliverToDovecot needs at least one recipient');
  for (const r of rcpts) {
    checkLine(r.address, 'recipient', /^$/);
    for (const p of r.params) checkLine(p, 'RCPT parameter', /\s|^$/);
  }

  const results: Array<RecipientReply | undefined> = rcpts.map(() => undefined);
  const pool = opts.reuse === false ? undefined : poolFor(opts.address, opts.lhloName, opts.timeoutMs);
  let session: LmtpSession | undefined;
  let log = opts.log;
  // A pooled connection Dovecot closed while it sat idle fails at MAIL, before anything was
  // accepted: that transaction is tried once more on a fresh connection.
  for (let attempt = 0; ; attempt++) {
    const reused = pool?.take();
    // Replies we can be owed at most: greeting, LHLO, MAIL, each RCPT, DATA, QUIT (each recipient
    // again after DATA, by which time the RCPT replies have been read).
    session = reused ?? new LmtpSession(opts.address, opts.timeoutMs, rcpts.length + 4);
    session.maxQueued = rcpts.length + 4;
    log = opts.log.child({ dovecot: session.where });
    try {
      if (!reused) await handshake(session, opts.lhloName);
      await converse(session, opts, mailParams, rcpts, results, log);
      session.transactions++;
      if (pool && session.reusable) pool.give(session);
      else await session.quit();
      break;
    } catch (err) {
      session.close();
      const failure = err instanceof RelayFailure ? err : deferral('internal', '4.3.0', `internal error relaying to Dovecot: ${(err as Error).message}; will retry`);
      const untouched = results.every((r) => r === undefined);
      if (reused && untouched && attempt === 0 && (failure.kind === 'closed' || failure.kind === 'protocol')) {
        log.debug({ reason: failure.reply.message }, 'pooled Dovecot connection was stale; retrying on a new one');
        continue;
      }
      const unanswered = results.filter((r) => r === undefined).length;
      if (failure.kind === 'internal') log.error({ err }, 'LMTP relay failed');
      else log.warn({ kind: failure.kind, reason: failure.reply.message, unanswered }, 'LMTP relay to Dovecot failed; unanswered recipients deferred');
      for (const [i, r] of results.entries()) results[i] = r ?? { ...failure.reply };
      break;
    }
  }
  log.debug({ results: results.map((r) => r && `${r.code} ${r.enhanced ?? ''}`.trim()) }, 'LMTP relay done');
  return results as RecipientReply[];
}

