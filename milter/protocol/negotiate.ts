/**
 * Option negotiation (SMFIC_OPTNEG). The MTA offers a version, the actions it allows and the
 * protocol flags it understands; we answer with the intersection of that and what the handler
 * needs. A lower MTA version (2–5) is accepted and simply gets fewer features.
 */
import type { HandlerNeeds, Stage } from '../handler.ts';
import { Action, Cmd, MILTER_VERSION, Proto } from './constants.ts';
import { MilterProtocolError } from './errors.ts';
import type { MacroRequest, Response } from './responses.ts';

export const SKIP_FLAG: Record<Stage, number> = {
  connect: Proto.NOCONNECT,
  helo: Proto.NOHELO,
  mail: Proto.NOMAIL,
  rcpt: Proto.NORCPT,
  data: Proto.NODATA,
  header: Proto.NOHDRS,
  eoh: Proto.NOEOH,
  body: Proto.NOBODY,
  unknown: Proto.NOUNKNOWN,
};

export const NO_REPLY_FLAG: Record<Stage, number> = {
  connect: Proto.NR_CONN,
  helo: Proto.NR_HELO,
  mail: Proto.NR_MAIL,
  rcpt: Proto.NR_RCPT,
  data: Proto.NR_DATA,
  header: Proto.NR_HDR,
  eoh: Proto.NR_EOH,
  body: Proto.NR_BODY,
  unknown: Proto.NR_UNKN,
};

/** The stage each SMFIC_* command belongs to (for its NO* / NR_* flag). */
export const COMMAND_STAGE: Partial<Record<number, Stage>> = {
  [Cmd.CONNECT]: 'connect',
  [Cmd.HELO]: 'helo',
  [Cmd.MAIL]: 'mail',
  [Cmd.RCPT]: 'rcpt',
  [Cmd.DATA]: 'data',
  [Cmd.HEADER]: 'header',
  [Cmd.EOH]: 'eoh',
  [Cmd.BODY]: 'body',
  [Cmd.UNKNOWN]: 'unknown',
};

export interface Negotiated {
  version: number;
  actions: number;
  protocol: number;
}

export interface Offer {
  version: number;
  actions: number;
  protocol: number;
}

/**
 * `useNoReply: false` answers every stage (config `milter.noReply`). With no-reply stages over
 * TCP, Postfix (Nagle on) would wait ~40 ms a message for our delayed ACK; the session avoids
 * that by answering such segments with PROGRESS (session.ts, ackSegments), and no-reply is then
 * the faster choice on both transports (bench/README.md).
 */
export function negotiate(
  offer: Offer,
  needs: HandlerNeeds,
  useNoReply = true,
): { reply: Response; negotiated: Negotiated } {
  if (offer.version < 2) throw new MilterProtocolError('unsupported milter version', String(offer.version));
  const version = Math.min(offer.version, MILTER_VERSION);
  // Leading space in header values lets later checks see headers byte for byte (DKIM "simple").
  let wanted = Proto.HDR_LEADSPC | Proto.SKIP;
  for (const stage of needs.skip) wanted |= SKIP_FLAG[stage];
  if (useNoReply) for (const stage of needs.noReply) wanted |= NO_REPLY_FLAG[stage];
  const protocol = wanted & offer.protocol;
  let actions = needs.actions & offer.actions & ~Action.SETSYMLIST;
  let macros: MacroRequest | undefined;
  const wantsMacros = Object.values(needs.macros).some((list) => list && list.length > 0);
  if (version >= 6 && wantsMacros && offer.actions & Action.SETSYMLIST) {
    actions |= Action.SETSYMLIST;
    macros = needs.macros;
  }
  return {
    reply: { kind: 'optneg', version, actions, protocol, ...(macros ? { macros } : {}) },
    negotiated: { version, actions, protocol },
  };
}

/** Which SMFIF_* action a modification needs; a modification not negotiated is dropped with a warning. */
export const ACTION_FOR: Record<string, number> = {
  addheader: Action.ADDHDRS,
  insheader: Action.ADDHDRS,
  chgheader: Action.CHGHDRS,
  addrcpt: Action.ADDRCPT,
  addrcptPar: Action.ADDRCPT_PAR,
  delrcpt: Action.DELRCPT,
  chgfrom: Action.CHGFROM,
  quarantine: Action.QUARANTINE,
  replbody: Action.CHGBODY,
};
