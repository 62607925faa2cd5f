/**
 * The wire format of Dovecot's authentication policy protocol (see README.md next to this file):
 * the command comes from the query (`?command=allow|report`), the request is a flat JSON object
 * built from `auth_policy_request_attributes`, the answer is `{"status":N,"msg":"..."}`.
 *
 * Pure: bytes and a query string in, a typed request out (or an AuthPolicyRequestError with a
 * reason), and a response object to bytes. The HTTP session owns the socket and the body cap.
 */

/** Dovecot's default attributes make ~200-byte bodies; custom attributes stay far below this. */
export const MAX_BODY_BYTES = 16 * 1024;

export type AuthPolicyCommand = 'allow' | 'report';

export interface AuthPolicyRequest {
  command: AuthPolicyCommand;
  /** `login=%{requested_username}`; '' when the attribute is not configured. */
  login: string;
  /** `pwhash=%{hashed_password}`: hex of H(nonce || login || NUL || password), truncated. */
  pwhash: string;
  /** `remote=%{rip}`: the client address as Dovecot saw it (after trusted proxies). */
  remote: string;
  /** `device_id=%{client_id}`: the IMAP ID arguments when imap_id_retain is on. */
  deviceId: string;
  /** `protocol=%s`: imap, pop3, submission, ... */
  protocol: string;
  /** `session_id=%{session}`: Dovecot's session id, also in its own log lines. */
  sessionId: string;
  /** Dovecot 2.3.2+ always adds whether the connection used TLS. */
  tls?: boolean;
  /** Report only: whether the whole authentication succeeded. */
  success?: boolean;
  /** Report only: whether the failure came from this server's -1. */
  policyReject?: boolean;
}

export type ParseFailure =
  | 'missing-command'
  | 'unknown-command'
  | 'too-large'
  | 'not-json'
  | 'not-object'
  | 'bad-field'
  | 'missing-field';

export class AuthPolicyRequestError extends Error {
  override readonly name = 'AuthPolicyRequestError';
  constructor(
    readonly reason: ParseFailure,
    detail: string,
  ) {
    super(`${reason}: ${detail}`);
  }
}

/** Attribute name in the JSON → field of AuthPolicyRequest. Anything else is ignored. */
const STRING_FIELDS = {
  login: 'login',
  pwhash: 'pwhash',
  remote: 'remote',
  device_id: 'deviceId',
  protocol: 'protocol',
  session_id: 'sessionId',
} as const satisfies Record<string, keyof AuthPolicyRequest>;

const BOOLEAN_FIELDS = {
  tls: 'tls',
  success: 'success',
  policy_reject: 'policyReject',
} as const satisfies Record<string, keyof AuthPolicyRequest>;

const COMMANDS: ReadonlySet<string> = new Set<AuthPolicyCommand>(['allow', 'report']);

/** The command from the request URL's query (`/?command=allow`, or `...&command=allow`). */
export function parseCommand(query: string): AuthPolicyCommand {
  const values = new URLSearchParams(query.startsWith('?') ? query.slice(1) : query).getAll('command');
  if (values.length === 0) throw new AuthPolicyRequestError('missing-command', 'no command in the query');
  if (values.length > 1) throw new AuthPolicyRequestError('unknown-command', 'more than one command in the query');
  const command = values[0]!;
  if (!COMMANDS.has(command)) throw new AuthPolicyRequestError('unknown-command', `command ${JSON.stringify(command.slice(0, 40))}`);
  return command as AuthPolicyCommand;
}

// Lenient decoding: an undecodable byte becomes U+FFFD instead of a 400, because a 400 makes
// Dovecot fail open, and a client must not be able to skip the policy with a crafted user name.
const utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: false });

export function parseRequest(query: string, body: Uint8Array): AuthPolicyRequest {
  const command = parseCommand(query);
  if (body.byteLength > MAX_BODY_BYTES) throw new AuthPolicyRequestError('too-large', `body of ${body.byteLength} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(utf8.decode(body));
  } catch (err) {
    throw new AuthPolicyRequestError('not-json', (err as Error).message.slice(0, 120));
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new AuthPolicyRequestError('not-object', 'body is not a JSON object');
  const obj = json as Record<string, unknown>;
  const req: AuthPolicyRequest = { command, login: '', pwhash: '', remote: '', deviceId: '', protocol: '', sessionId: '' };
  for (const [attr, field] of Object.entries(STRING_FIELDS)) {
    const v = Object.hasOwn(obj, attr) ? obj[attr] : undefined;
    if (v === undefined) continue;
    if (typeof v !== 'string') throw new AuthPolicyRequestError('bad-field', `${attr} is not a string`);
    req[field] = v;
  }
  for (const [attr, field] of Object.entries(BOOLEAN_FIELDS)) {
    const v = Object.hasOwn(obj, attr) ? obj[attr] : undefined;
    if (v === undefined) continue;
    if (typeof v !== 'boolean') throw new AuthPolicyRequestError('bad-field', `${attr} is not a boolean`);
    req[field] = v;
  }
  // Dovecot always sends both with a report; without `success` a report says nothing.
  if (command === 'report' && req.success === undefined) throw new AuthPolicyRequestError('missing-field', 'report without success');
  return req;
}

export interface AuthPolicyResponse {
  /** -1 reject, 0 allow, N > 0 tarpit N seconds (ignored by Dovecot after a successful login). */
  status: number;
  /** Shown to the client on a reject (`NO [ALERT] msg` in IMAP); empty means Dovecot's default. */
  msg?: string;
}

export function encodeResponse(res: AuthPolicyResponse): Buffer {
  if (!Number.isInteger(res.status) || res.status < -1) throw new RangeError(`invalid policy status ${res.status}`);
  return Buffer.from(JSON.stringify({ status: res.status, msg: res.msg ?? '' }));
}
