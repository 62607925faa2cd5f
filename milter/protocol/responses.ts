/**
 * Responses the milter sends (SMFIR_*), as typed values, with an encoder (server side) and a
 * parser (our milter client, used by tests and the benchmark).
 */
import { MacroStage, Resp, type MacroStageCode } from './constants.ts';
import { cstrings, readCString, readCStrings } from './cstring.ts';
import { MilterProtocolError } from './errors.ts';
import { encodeFrame, type RawFrame } from './framing.ts';
import { validateReplyCode } from './replycode.ts';

export type MacroRequest = Partial<Record<MacroStageCode, string[]>>;

export type Verdict =
  | { kind: 'continue' }
  | { kind: 'accept' }
  | { kind: 'reject' }
  | { kind: 'tempfail' }
  | { kind: 'discard' }
  | { kind: 'replycode'; reply: string };

export type Modification =
  | { kind: 'addheader'; name: string; value: string }
  | { kind: 'insheader'; index: number; name: string; value: string }
  | { kind: 'chgheader'; index: number; name: string; value: string }
  | { kind: 'addrcpt'; rcpt: string }
  | { kind: 'addrcptPar'; rcpt: string; args: string }
  | { kind: 'delrcpt'; rcpt: string }
  | { kind: 'chgfrom'; from: string; args?: string }
  | { kind: 'quarantine'; reason: string }
  | { kind: 'replbody'; chunk: Buffer };

export type Response =
  | Verdict
  | Modification
  | { kind: 'skip' }
  | { kind: 'progress' }
  | { kind: 'shutdown' }
  | { kind: 'connFail' }
  | { kind: 'optneg'; version: number; actions: number; protocol: number; macros?: MacroRequest };

export type ResponseKind = Response['kind'];

const SIMPLE: Record<string, number> = {
  continue: Resp.CONTINUE,
  accept: Resp.ACCEPT,
  reject: Resp.REJECT,
  tempfail: Resp.TEMPFAIL,
  discard: Resp.DISCARD,
  skip: Resp.SKIP,
  progress: Resp.PROGRESS,
  shutdown: Resp.SHUTDOWN,
  connFail: Resp.CONN_FAIL,
};

function indexed(code: number, index: number, name: string, value: string): Buffer {
  const idx = Buffer.allocUnsafe(4);
  idx.writeUInt32BE(index >>> 0, 0);
  return encodeFrame(code, Buffer.concat([idx, cstrings(name, value)]));
}

function encodeOptneg(r: Extract<Response, { kind: 'optneg' }>): Buffer {
  const parts: Buffer[] = [Buffer.allocUnsafe(12)];
  parts[0]!.writeUInt32BE(r.version >>> 0, 0);
  parts[0]!.writeUInt32BE(r.actions >>> 0, 4);
  parts[0]!.writeUInt32BE(r.protocol >>> 0, 8);
  for (const [stage, names] of Object.entries(r.macros ?? {})) {
    if (!names || names.length === 0) continue;
    const s = Buffer.allocUnsafe(4);
    s.writeUInt32BE(Number(stage), 0);
    parts.push(s, cstrings(names.join(' ')));
  }
  return encodeFrame(Resp.OPTNEG, Buffer.concat(parts));
}

export function encodeResponse(r: Response): Buffer {
  const simple = SIMPLE[r.kind];
  if (simple !== undefined) return encodeFrame(simple);
  switch (r.kind) {
    case 'replycode':
      validateReplyCode(r.reply);
      return encodeFrame(Resp.REPLYCODE, cstrings(r.reply));
    case 'addheader':
      return encodeFrame(Resp.ADDHEADER, cstrings(r.name, r.value));
    case 'insheader':
      return indexed(Resp.INSHEADER, r.index, r.name, r.value);
    case 'chgheader':
      return indexed(Resp.CHGHEADER, r.index, r.name, r.value);
    case 'addrcpt':
      return encodeFrame(Resp.ADDRCPT, cstrings(r.rcpt));
    case 'addrcptPar':
      return encodeFrame(Resp.ADDRCPT_PAR, cstrings(r.rcpt, r.args));
    case 'delrcpt':
      return encodeFrame(Resp.DELRCPT, cstrings(r.rcpt));
    case 'chgfrom':
      return encodeFrame(Resp.CHGFROM, r.args === undefined ? cstrings(r.from) : cstrings(r.from, r.args));
    case 'quarantine':
      return encodeFrame(Resp.QUARANTINE, cstrings(r.reason));
    case 'replbody':
      return encodeFrame(Resp.REPLBODY, r.chunk);
    case 'optneg':
      return encodeOptneg(r);
    default:
      throw new TypeError(`cannot encode response ${(r as Response).kind}`);
  }
}

const SIMPLE_BY_CODE = new Map(Object.entries(SIMPLE).map(([k, v]) => [v, k]));

function parseIndexed(p: Buffer, what: string): [number, string, string] {
  if (p.length < 4) throw new MilterProtocolError(`short ${what}`);
  const [name, off] = readCString(p, 4, what);
  const [value, end] = readCString(p, off, what);
  if (end !== p.length) throw new MilterProtocolError('trailing bytes', what);
  return [p.readUInt32BE(0), name, value];
}

function parseOptnegReply(p: Buffer): Response {
  if (p.length < 12) throw new MilterProtocolError('short optneg reply');
  const macros: MacroRequest = {};
  let off = 12;
  while (off < p.length) {
    if (off + 4 > p.length) throw new MilterProtocolError('short symlist');
    const stage = p.readUInt32BE(off);
    if (stage > MacroStage.EOH) throw new MilterProtocolError('bad symlist stage', String(stage));
    const [list, next] = readCString(p, off + 4, 'symlist');
    macros[stage as MacroStageCode] = list.split(' ').filter(Boolean);
    off = next;
  }
  return { kind: 'optneg', version: p.readUInt32BE(0), actions: p.readUInt32BE(4), protocol: p.readUInt32BE(8), macros };
}

export function parseResponse(frame: RawFrame): Response {
  const simple = SIMPLE_BY_CODE.get(frame.code);
  const p = frame.payload;
  if (simple !== undefined) return { kind: simple } as Response;
  switch (frame.code) {
    case Resp.REPLYCODE: {
      const [reply] = readCString(p, 0, 'replycode');
      validateReplyCode(reply);
      return { kind: 'replycode', reply };
    }
    case Resp.ADDHEADER: {
      const [name, value] = readCStrings(p, 'addheader');
      if (name === undefined || value === undefined) throw new MilterProtocolError('malformed addheader');
      return { kind: 'addheader', name, value };
    }
    case Resp.INSHEADER: {
      const [index, name, value] = parseIndexed(p, 'insheader');
      return { kind: 'insheader', index, name, value };
    }
    case Resp.CHGHEADER: {
      const [index, name, value] = parseIndexed(p, 'chgheader');
      return { kind: 'chgheader', index, name, value };
    }
    case Resp.ADDRCPT:
      return { kind: 'addrcpt', rcpt: readCString(p, 0, 'addrcpt')[0] };
    case Resp.ADDRCPT_PAR: {
      const [rcpt, args] = readCStrings(p, 'addrcpt_par');
      return { kind: 'addrcptPar', rcpt: rcpt ?? '', args: args ?? '' };
    }
    case Resp.DELRCPT:
      return { kind: 'delrcpt', rcpt: readCString(p, 0, 'delrcpt')[0] };
    case Resp.CHGFROM: {
      const [from, args] = readCStrings(p, 'chgfrom');
      return { kind: 'chgfrom', from: from ?? '', ...(args !== undefined ? { args } : {}) };
    }
    case Resp.QUARANTINE:
      return { kind: 'quarantine', reason: readCString(p, 0, 'quarantine')[0] };
    case Resp.REPLBODY:
      return { kind: 'replbody', chunk: p };
    case Resp.OPTNEG:
      return parseOptnegReply(p);
    default:
      throw new MilterProtocolError('unknown response', `0x${frame.code.toString(16)}`);
  }
}

/** True for the responses that end a stage (as opposed to modifications and progress). */
export function isFinalResponse(r: Response): boolean {
  return r.kind in SIMPLE && r.kind !== 'progress' ? true : r.kind === 'replycode' || r.kind === 'optneg';
}
