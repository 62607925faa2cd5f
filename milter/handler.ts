/**
 * The typed interface between a milter session and what it serves: one method per protocol stage.
 * The session owns the socket, framing, negotiation and replies; a handler only decides.
 */
import type { Logger } from '../core/log.ts';
import type { FamilyCode } from './protocol/constants.ts';
import type { MacroRequest, Modification, Verdict } from './protocol/responses.ts';

export interface ConnectInfo {
  hostname: string;
  family: FamilyCode;
  port: number;
  address: string;
}

/** What the session gives a handler at every stage. */
export interface StageContext {
  readonly connId: string;
  /** Macro lookup across stages, newest first, as libmilter's smfi_getsymval does. */
  macro(name: string): string | undefined;
  /** Logger carrying `conn` and, once known, the Postfix queue id `qid`. */
  readonly log: Logger;
  /** Aborted when the MTA goes away or the server shuts down hard. */
  readonly signal: AbortSignal;
  /** SMFIP_HDR_LEADSPC was negotiated: header values arrive with the space after the colon. */
  readonly headerLeadingSpace: boolean;
}

/** What a handler wants negotiated: the session intersects it with what the MTA offers. */
export interface HandlerNeeds {
  /** SMFIF_* actions the handler may use at end of message. */
  actions: number;
  /** Stages whose commands the handler never needs (negotiated as SMFIP_NO*). */
  skip: Set<Stage>;
  /** Stages the handler never answers other than `continue` (negotiated as SMFIP_NR_*, one round trip fewer). */
  noReply: Set<Stage>;
  /** Macros requested per stage in the OPTNEG reply (SMFIR_SETSYMLIST). */
  macros: MacroRequest;
}

export type Stage = 'connect' | 'helo' | 'mail' | 'rcpt' | 'data' | 'header' | 'eoh' | 'body' | 'unknown';

export type BodyReply = Verdict | { kind: 'skip' };

export interface EndOfMessageReply {
  modifications: Modification[];
  verdict: Verdict;
}

export type Awaitable<T> = T | Promise<T>;

/**
 * One instance serves one MTA connection; per-message state is rebuilt after each final answer
 * (`endOfMessage`, a final verdict at MAIL/DATA/headers/body, or `abort`).
 */
export interface MilterHandler {
  readonly needs: HandlerNeeds;
  connect(ctx: StageContext, info: ConnectInfo): Awaitable<Verdict>;
  helo(ctx: StageContext, hostname: string): Awaitable<Verdict>;
  envFrom(ctx: StageContext, sender: string, args: string[]): Awaitable<Verdict>;
  envRcpt(ctx: StageContext, recipient: string, args: string[]): Awaitable<Verdict>;
  data(ctx: StageContext): Awaitable<Verdict>;
  header(ctx: StageContext, name: string, value: string): Awaitable<Verdict>;
  endOfHeaders(ctx: StageContext): Awaitable<Verdict>;
  body(ctx: StageContext, chunk: Buffer): Awaitable<BodyReply>;
  endOfMessage(ctx: StageContext): Awaitable<EndOfMessageReply>;
  unknown(ctx: StageContext, command: string): Awaitable<Verdict>;
  /** The MTA dropped the current message (SMFIC_ABORT); no reply is sent. */
  abort(ctx: StageContext): void;
  /** The connection ended (QUIT, error or shutdown). */
  close(ctx: StageContext): void;
}

export type MilterHandlerFactory = (connId: string) => MilterHandler;

export const CONTINUE: Verdict = Object.freeze({ kind: 'continue' });
