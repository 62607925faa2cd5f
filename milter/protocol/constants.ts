/**
 * Sendmail milter protocol, version 6: wire codes.
 *
 * Names follow libmilter's mfdef.h so they can be looked up there; see README.md in this folder
 * for a summary of the protocol.
 */

/** The protocol version we speak. MTAs offering a lower version are accepted (see negotiate.ts). */
export const MILTER_VERSION = 6;

/** Commands, MTA → milter (SMFIC_*). */
export const Cmd = {
  ABORT: 0x41, // 'A' SMFIC_ABORT: abort the current message, keep the connection
  BODY: 0x42, // 'B' SMFIC_BODY: a body chunk (up to 65,535 bytes)
  CONNECT: 0x43, // 'C' SMFIC_CONNECT: hostname, family, port, address
  MACRO: 0x44, // 'D' SMFIC_MACRO: macros for the command that follows
  BODYEOB: 0x45, // 'E' SMFIC_BODYEOB: end of message
  HELO: 0x48, // 'H' SMFIC_HELO
  QUIT_NC: 0x4b, // 'K' SMFIC_QUIT_NC: quit, but a new connection follows on this socket
  HEADER: 0x4c, // 'L' SMFIC_HEADER: name, value
  MAIL: 0x4d, // 'M' SMFIC_MAIL: sender plus ESMTP arguments
  EOH: 0x4e, // 'N' SMFIC_EOH: end of headers
  OPTNEG: 0x4f, // 'O' SMFIC_OPTNEG: option negotiation
  QUIT: 0x51, // 'Q' SMFIC_QUIT: close the connection
  RCPT: 0x52, // 'R' SMFIC_RCPT: recipient plus ESMTP arguments
  DATA: 0x54, // 'T' SMFIC_DATA
  UNKNOWN: 0x55, // 'U' SMFIC_UNKNOWN: an SMTP command the MTA did not recognise
} as const;
export type CmdCode = (typeof Cmd)[keyof typeof Cmd];

/** Responses, milter → MTA (SMFIR_*). */
export const Resp = {
  ADDRCPT: 0x2b, // '+' SMFIR_ADDRCPT: add a recipient
  DELRCPT: 0x2d, // '-' SMFIR_DELRCPT: remove a recipient
  ADDRCPT_PAR: 0x32, // '2' SMFIR_ADDRCPT_PAR: add a recipient with ESMTP arguments
  SHUTDOWN: 0x34, // '4' SMFIR_SHUTDOWN: 421, close the connection
  ACCEPT: 0x61, // 'a' SMFIR_ACCEPT: accept, stop calling the milter for this message
  REPLBODY: 0x62, // 'b' SMFIR_REPLBODY: replace the body (one chunk)
  CONTINUE: 0x63, // 'c' SMFIR_CONTINUE
  DISCARD: 0x64, // 'd' SMFIR_DISCARD: accept and silently drop
  CHGFROM: 0x65, // 'e' SMFIR_CHGFROM: change the envelope sender
  CONN_FAIL: 0x66, // 'f' SMFIR_CONN_FAIL: cause a connection failure
  ADDHEADER: 0x68, // 'h' SMFIR_ADDHEADER: append a header
  INSHEADER: 0x69, // 'i' SMFIR_INSHEADER: insert a header at an index
  SETSYMLIST: 0x6c, // 'l' SMFIR_SETSYMLIST (only inside the OPTNEG reply)
  CHGHEADER: 0x6d, // 'm' SMFIR_CHGHEADER: change (empty value: delete) the index-th header of a name
  PROGRESS: 0x70, // 'p' SMFIR_PROGRESS: keep-alive while a check runs long
  QUARANTINE: 0x71, // 'q' SMFIR_QUARANTINE: put the message on hold, with a reason
  REJECT: 0x72, // 'r' SMFIR_REJECT: 5xx
  SKIP: 0x73, // 's' SMFIR_SKIP: skip the remaining body chunks
  TEMPFAIL: 0x74, // 't' SMFIR_TEMPFAIL: 4xx
  REPLYCODE: 0x79, // 'y' SMFIR_REPLYCODE: a full SMTP reply, 'ddd x.y.z text'
  OPTNEG: 0x4f, // 'O' the OPTNEG reply
} as const;
export type RespCode = (typeof Resp)[keyof typeof Resp];

/** Actions the milter may take at end of message (SMFIF_*), negotiated in OPTNEG. */
export const Action = {
  ADDHDRS: 0x01, // SMFIF_ADDHDRS
  CHGBODY: 0x02, // SMFIF_CHGBODY
  ADDRCPT: 0x04, // SMFIF_ADDRCPT
  DELRCPT: 0x08, // SMFIF_DELRCPT
  CHGHDRS: 0x10, // SMFIF_CHGHDRS (also needed for INSHEADER)
  QUARANTINE: 0x20, // SMFIF_QUARANTINE
  CHGFROM: 0x40, // SMFIF_CHGFROM
  ADDRCPT_PAR: 0x80, // SMFIF_ADDRCPT_PAR
  SETSYMLIST: 0x100, // SMFIF_SETSYMLIST
} as const;
export const ALL_ACTIONS = Object.values(Action).reduce((a, b) => a | b, 0);

/** Protocol flags (SMFIP_*): which commands the MTA skips (NO*) or sends without waiting (NR_*). */
export const Proto = {
  NOCONNECT: 0x1, // SMFIP_NOCONNECT
  NOHELO: 0x2, // SMFIP_NOHELO
  NOMAIL: 0x4, // SMFIP_NOMAIL
  NORCPT: 0x8, // SMFIP_NORCPT
  NOBODY: 0x10, // SMFIP_NOBODY
  NOHDRS: 0x20, // SMFIP_NOHDRS
  NOEOH: 0x40, // SMFIP_NOEOH
  NR_HDR: 0x80, // SMFIP_NR_HDR (a.k.a. SMFIP_NOHREPL): no reply to HEADER
  NOUNKNOWN: 0x100, // SMFIP_NOUNKNOWN
  NODATA: 0x200, // SMFIP_NODATA
  SKIP: 0x400, // SMFIP_SKIP: the MTA understands SMFIR_SKIP
  RCPT_REJ: 0x800, // SMFIP_RCPT_REJ: also send rejected recipients
  NR_CONN: 0x1000, // SMFIP_NR_CONN
  NR_HELO: 0x2000, // SMFIP_NR_HELO
  NR_MAIL: 0x4000, // SMFIP_NR_MAIL
  NR_RCPT: 0x8000, // SMFIP_NR_RCPT
  NR_DATA: 0x10000, // SMFIP_NR_DATA
  NR_UNKN: 0x20000, // SMFIP_NR_UNKN
  NR_EOH: 0x40000, // SMFIP_NR_EOH
  NR_BODY: 0x80000, // SMFIP_NR_BODY
  HDR_LEADSPC: 0x100000, // SMFIP_HDR_LEADSPC: header values keep their leading space
} as const;

/** Macro stages used in SETSYMLIST (SMFIM_*). */
export const MacroStage = {
  CONNECT: 0, // SMFIM_CONNECT
  HELO: 1, // SMFIM_HELO
  ENVFROM: 2, // SMFIM_ENVFROM
  ENVRCPT: 3, // SMFIM_ENVRCPT
  DATA: 4, // SMFIM_DATA
  EOM: 5, // SMFIM_EOM
  EOH: 6, // SMFIM_EOH
} as const;
export type MacroStageCode = (typeof MacroStage)[keyof typeof MacroStage];

/** CONNECT address families (SMFIA_*). */
export const Family = {
  UNKNOWN: 'U', // SMFIA_UNKNOWN: no port or address follow
  UNIX: 'L', // SMFIA_UNIX: the address is a socket path
  INET: '4', // SMFIA_INET
  INET6: '6', // SMFIA_INET6
} as const;
export type FamilyCode = (typeof Family)[keyof typeof Family];

/** Largest body chunk an MTA sends (MILTER_CHUNK_SIZE). */
export const MAX_BODY_CHUNK = 65535;
/** Default cap on a declared frame length; Postfix never sends more than a body chunk plus a little. */
export const DEFAULT_MAX_FRAME = 1024 * 1024;
