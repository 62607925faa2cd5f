/**
 * Dovecot's script protocol, the request vnd.dovecot.pipe sends to a program socket
 * (sieve_pipe_socket_dir) instead of forking the program. Pure: bytes in, request out, no I/O.
 *
 *   VERSION\tscript\t4\t0\n        protocol 4.0 (Dovecot 2.3; 3.0 in 2.2 has the same shape)
 *   env_USER=alice\n               zero or more environment lines (USER, HOME, HOST, SENDER, ...)
 *   -\n                            or `noreply\n`: the client does not read an answer
 *   spam\n                         the program's arguments, one per line
 *   \n                             end of the header
 *   <the message, CRLF>            until the client shuts its side down (EOF)
 *
 * The answer is the program's output followed by `+\n` (success) or `-\n` (failure), then close.
 * Values are tab-escaped (Dovecot's str_tabescape): \001 1 = \001, \001 t = tab, \001 r = CR,
 * \001 n = LF, \001 0 = NUL.
 */

export interface ScriptRequest {
  major: number;
  minor: number;
  /** env_ lines, unescaped, without the env_ prefix. */
  env: Record<string, string>;
  /** `noreply`: nobody reads the +/- answer. */
  noreply: boolean;
  args: string[];
}

export class ScriptProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScriptProtocolError';
  }
}

export const SCRIPT_SUCCESS = Buffer.from('+\n');
export const SCRIPT_FAILURE = Buffer.from('-\n');

const SUPPORTED_MAJORS = new Set([3, 4]);
const MAX_LINES = 256;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

const UTF8 = new TextDecoder('utf-8', { fatal: true });

const UNESCAPES: Record<string, string> = { '1': '\x01', t: '\t', r: '\r', n: '\n', '0': '\0' };

/** Dovecot's str_tabunescape; a \001 not followed by a known letter is an error (not silently kept). */
export function tabUnescape(text: string): string {
  if (!text.includes('\x01')) return text;
  return text.replace(/\x01(.?)/gs, (_m, c: string) => {
    const out = UNESCAPES[c];
    if (out === undefined) throw new ScriptProtocolError('bad tab-escape in the request header');
    return out;
  });
}

/** The inverse, for clients (tests and the benchmark speak the protocol too). */
export function tabEscape(text: string): string {
  return text.replace(/[\x01\t\r\n\0]/g, (c) => `\x01${({ '\x01': '1', '\t': 't', '\r': 'r', '\n': 'n', '\0': '0' } as Record<string, string>)[c]}`);
}

/** What a client sends before the message: the header of `args` with `env`. */
export function encodeScriptHeader(req: { env?: Record<string, string>; args: string[]; noreply?: boolean; major?: number }): Buffer {
  const lines = [`VERSION\tscript\t${req.major ?? 4}\t0`];
  for (const [k, v] of Object.entries(req.env ?? {})) lines.push(`env_${tabEscape(`${k}=${v}`)}`);
  lines.push(req.noreply ? 'noreply' : '-');
  for (const a of req.args) lines.push(tabEscape(a));
  return Buffer.from(`${lines.join('\n')}\n\n`, 'utf8');
}

/**
 * Parses the header at the start of `buf`. Returns null while it is incomplete (read more), the
 * request and the offset where the message starts once the blank line has arrived, and throws a
 * ScriptProtocolError for anything else: a wrong first line, a header over `maxBytes`, too many
 * lines, a malformed env line, bytes that are not UTF-8.
 */
export function parseScriptHeader(buf: Buffer, maxBytes: number): { request: ScriptRequest; bodyOffset: number } | null {
  const end = findHeaderEnd(buf, maxBytes);
  if (end === -1) {
    if (buf.length > maxBytes) throw new ScriptProtocolError(`request header longer than ${maxBytes} bytes`);
    // Reject a wrong first line as soon as it is complete, not only when the header ends.
    const nl = buf.indexOf(0x0a);
    if (nl !== -1) parseVersion(buf.subarray(0, nl).toString('latin1'));
    else if (buf.length >= 8 && !buf.subarray(0, 8).equals(Buffer.from('VERSION\t'))) throw new ScriptProtocolError('not a Dovecot script request (no VERSION line)');
    return null;
  }
  let text: string;
  try {
    // fatal: invalid bytes throw. A U+FFFD written in the header is valid UTF-8 and is kept.
    text = UTF8.decode(buf.subarray(0, end));
  } catch {
    throw new ScriptProtocolError('request header is not UTF-8');
  }
  const lines = text.split('\n');
  if (lines.length > MAX_LINES) throw new ScriptProtocolError(`request header has more than ${MAX_LINES} lines`);
  const { major, minor } = parseVersion(lines[0]!);
  const env: Record<string, string> = {};
  let i = 1;
  for (; i < lines.length && lines[i]!.startsWith('env_'); i++) {
    const value = tabUnescape(lines[i]!.slice(4));
    const eq = value.indexOf('=');
    const name = value.slice(0, eq);
    if (eq < 1 || !ENV_NAME.test(name)) throw new ScriptProtocolError(`malformed environment line ${JSON.stringify(lines[i]!.slice(0, 80))}`);
    env[name] = value.slice(eq + 1);
  }
  const mode = lines[i];
  if (mode !== '-' && mode !== 'noreply') throw new ScriptProtocolError(`expected "-" or "noreply" after the environment, got ${JSON.stringify((mode ?? '').slice(0, 80))}`);
  const args = lines.slice(i + 1).map(tabUnescape);
  return { request: { major, minor, env, noreply: mode === 'noreply', args }, bodyOffset: end + 2 };
}

function parseVersion(line: string): { major: number; minor: number } {
  const m = /^VERSION\tscript\t(\d{1,3})\t(\d{1,3})$/.exec(line);
  if (!m) throw new ScriptProtocolError(`not a Dovecot script request: ${JSON.stringify(line.slice(0, 80))}`);
  const major = Number(m[1]);
  if (!SUPPORTED_MAJORS.has(major)) throw new ScriptProtocolError(`script protocol version ${major} is not supported (3 or 4)`);
  return { major, minor: Number(m[2]) };
}

/** Index of the first "\n\n" (the header's end), looking no further than maxBytes. */
function findHeaderEnd(buf: Buffer, maxBytes: number): number {
  const limit = Math.min(buf.length, maxBytes + 2);
  const at = buf.subarray(0, limit).indexOf('\n\n');
  return at;
}
