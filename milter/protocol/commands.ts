/**
 * Commands the MTA sends (SMFIC_*), as typed values, with a parser and an encoder.
 * The server parses them; our milter client (tests, benchmark) encodes them.
 */
import { Cmd, Family, MAX_BODY_CHUNK, type FamilyCode } from './constants.ts';
import { cstrings, readCString, readCStrings } from './cstring.ts';
import { MilterProtocolError } from './errors.ts';
import { encodeFrame, type RawFrame } from './framing.ts';

export type Macros = Array<[name: string, value: string]>;

export type Command =
  | { kind: 'optneg'; version: number; actions: number; protocol: number }
  | { kind: 'macro'; forCommand: number; macros: Macros }
  | { kind: 'connect'; hostname: string; family: FamilyCode; port: number; address: string }
  | { kind: 'helo'; hostname: string }
  | { kind: 'mail'; sender: string; args: string[] }
  | { kind: 'rcpt'; recipient: string; args: string[] }
  | { kind: 'data' }
  | { kind: 'header'; name: string; value: string }
  | { kind: 'eoh' }
  | { kind: 'body'; chunk: Buffer }
  | { kind: 'eom'; chunk: Buffer }
  | { kind: 'abort' }
  | { kind: 'quit' }
  | { kind: 'quitNewConnection' }
  | { kind: 'unknown'; command: string };

export type CommandKind = Command['kind'];

const FAMILIES = new Set<string>(Object.values(Family));

function empty(kind: 'data' | 'eoh' | 'abort' | 'quit' | 'quitNewConnection') {
  return (): Command => ({ kind });
}

function envelope(payload: Buffer, what: string): [string, string[]] {
  const parts = readCStrings(payload, what);
  if (parts.length === 0) throw new MilterProtocolError('empty envelope command', what);
  return [parts[0]!, parts.slice(1)];
}

function parseMacro(payload: Buffer): Command {
  // An empty macro packet (no command byte, or a command byte and no pairs) is legal.
  if (payload.length === 0) return { kind: 'macro', forCommand: 0, macros: [] };
  const forCommand = payload[0]!;
  const strings = readCStrings(payload.subarray(1), 'macro');
  if (strings.length % 2 !== 0) throw new MilterProtocolError('macro without value', strings.at(-1));
  const macros: Macros = [];
  for (let i = 0; i < strings.length; i += 2) {
    const name = strings[i]!;
    if (name === '') throw new MilterProtocolError('macro with no name');
    macros.push([name, strings[i + 1]!]);
  }
  return { kind: 'macro', forCommand, macros };
}

function parseConnect(payload: Buffer): Command {
  const [hostname, off] = readCString(payload, 0, 'connect hostname');
  if (off >= payload.length) throw new MilterProtocolError('short connect', 'no family');
  const family = String.fromCharCode(payload[off]!);
  if (!FAMILIES.has(family)) throw new MilterProtocolError('bad connect family', JSON.stringify(family));
  if (family === Family.UNKNOWN) return { kind: 'connect', hostname, family: Family.UNKNOWN, port: 0, address: '' };
  if (off + 3 > payload.length) throw new MilterProtocolError('short connect', 'no port');
  const port = payload.readUInt16BE(off + 1);
  const [address, end] = readCString(payload, off + 3, 'connect address');
  if (end !== payload.length) throw new MilterProtocolError('trailing bytes', 'connect');
  return { kind: 'connect', hostname, family: family as FamilyCode, port, address };
}

function twoStrings(payload: Buffer, what: string): [string, string] {
  const parts = readCStrings(payload, what);
  if (parts.length !== 2) throw new MilterProtocolError(`malformed ${what}`, `${parts.length} strings`);
  return [parts[0]!, parts[1]!];
}

const parsers: Record<number, (payload: Buffer) => Command> = {
  [Cmd.OPTNEG]: (p) => {
    if (p.length < 12) throw new MilterProtocolError('short optneg', `${p.length} bytes`);
    return { kind: 'optneg', version: p.readUInt32BE(0), actions: p.readUInt32BE(4), protocol: p.readUInt32BE(8) };
  },
  [Cmd.MACRO]: parseMacro,
  [Cmd.CONNECT]: parseConnect,
  [Cmd.HELO]: (p) => ({ kind: 'helo', hostname: readCStrings(p, 'helo')[0] ?? '' }),
  [Cmd.MAIL]: (p) => {
    const [sender, args] = envelope(p, 'mail');
    return { kind: 'mail', sender, args };
  },
  [Cmd.RCPT]: (p) => {
    const [recipient, args] = envelope(p, 'rcpt');
    return { kind: 'rcpt', recipient, args };
  },
  [Cmd.DATA]: empty('data'),
  [Cmd.HEADER]: (p) => {
    const [name, value] = twoStrings(p, 'header');
    if (name === '') throw new MilterProtocolError('header with no name');
    return { kind: 'header', name, value };
  },
  [Cmd.EOH]: empty('eoh'),
  [Cmd.BODY]: (p) => {
    if (p.length > MAX_BODY_CHUNK) throw new MilterProtocolError('body chunk too large', `${p.length} bytes`);
    return { kind: 'body', chunk: p };
  },
  [Cmd.BODYEOB]: (p) => ({ kind: 'eom', chunk: p }),
  [Cmd.ABORT]: empty('abort'),
  [Cmd.QUIT]: empty('quit'),
  [Cmd.QUIT_NC]: empty('quitNewConnection'),
  [Cmd.UNKNOWN]: (p) => ({ kind: 'unknown', command: readCStrings(p, 'unknown')[0] ?? '' }),
};

export function parseCommand(frame: RawFrame): Command {
  const parse = parsers[frame.code];
  if (!parse) throw new MilterProtocolError('unknown command', `0x${frame.code.toString(16)}`);
  return parse(frame.payload);
}

function u32s(...values: number[]): Buffer {
  const b = Buffer.allocUnsafe(values.length * 4);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, i * 4));
  return b;
}

export function encodeCommand(cmd: Command): Buffer {
  switch (cmd.kind) {
    case 'optneg':
      return encodeFrame(Cmd.OPTNEG, u32s(cmd.version, cmd.actions, cmd.protocol));
    case 'macro':
      return encodeFrame(Cmd.MACRO, Buffer.concat([Buffer.from([cmd.forCommand]), cstrings(...cmd.macros.flat())]));
    case 'connect': {
      const head = Buffer.concat([cstrings(cmd.hostname), Buffer.from(cmd.family, 'latin1')]);
      if (cmd.family === Family.UNKNOWN) return encodeFrame(Cmd.CONNECT, head);
      const port = Buffer.allocUnsafe(2);
      port.writeUInt16BE(cmd.port, 0);
      return encodeFrame(Cmd.CONNECT, Buffer.concat([head, port, cstrings(cmd.address)]));
    }
    case 'helo':
      return encodeFrame(Cmd.HELO, cstrings(cmd.hostname));
    case 'mail':
      return encodeFrame(Cmd.MAIL, cstrings(cmd.sender, ...cmd.args));
    case 'rcpt':
      return encodeFrame(Cmd.RCPT, cstrings(cmd.recipient, ...cmd.args));
    case 'data':
      return encodeFrame(Cmd.DATA);
    case 'header':
      return encodeFrame(Cmd.HEADER, cstrings(cmd.name, cmd.value));
    case 'eoh':
      return encodeFrame(Cmd.EOH);
    case 'body':
      return encodeFrame(Cmd.BODY, cmd.chunk);
    case 'eom':
      return encodeFrame(Cmd.BODYEOB, cmd.chunk);
    case 'abort':
      return encodeFrame(Cmd.ABORT);
    case 'quit':
      return encodeFrame(Cmd.QUIT);
    case 'quitNewConnection':
      return encodeFrame(Cmd.QUIT_NC);
    case 'unknown':
      return encodeFrame(Cmd.UNKNOWN, cstrings(cmd.command));
  }
}
