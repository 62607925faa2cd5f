/**
 * The JSON Dovecot's push_notification Lua script (lmtp-indexer/dovecot/push-notification.lua)
 * POSTs to /push, and its validator. Pure: bytes were already parsed as JSON by the route; this
 * checks every field's type and size and normalises flags and Message-IDs, so what reaches the
 * database is well-formed, and garbage is a PushValidationError naming the first bad field.
 *
 * Wire format (v1), one POST per IMAP command or delivery:
 *   { "v": 1, "user": "alice@example.com", "separator": ".",
 *     "events": [ { "name": "MessageNew", "mailbox": "INBOX", "uid": 7, "uid_validity": 1700000000,
 *                   "message_id": "<a@b>", "flags": ["\\Seen"], "keywords": ["$Junk"] }, … ] }
 * Per event name (what Dovecot 2.3.19 provides):
 *   MessageNew, MessageAppend   mailbox, uid, uid_validity, message_id (absent when the message has
 *                               none), flags, keywords: the message's flags when saved
 *   FlagsSet, FlagsClear        mailbox, uid, uid_validity, flags, keywords: only those added/removed
 *   MessageExpunge              mailbox, uid, uid_validity
 *   MailboxRename               mailbox (new name), mailbox_old
 * Other well-formed names (a newer script, Dovecot's other events) are counted and skipped, so the
 * script can grow before the receiver does.
 */

/** Limits on one POST. The script sends at most 5,000 events per POST. */
export const PUSH_LIMITS = {
  maxBodyBytes: 8 * 1024 * 1024,
  maxEvents: 5_000,
  maxUserChars: 320,
  /** Dovecot's own cap on a mailbox name is 4,096 bytes (MAILBOX_LIST_NAME_MAX_LENGTH). */
  maxMailboxChars: 4_096,
  maxMessageIdChars: 2_048,
  maxFlags: 256,
  maxFlagChars: 256,
} as const;

interface Located {
  mailbox: string;
  uidValidity: number;
  uid: number;
}

export interface SavedEvent extends Located {
  name: 'MessageNew' | 'MessageAppend';
  /** Normalised to `<…>` like mailparser does for the index; null when the message has none. */
  messageId: string | null;
  /** System flags and keywords together, without \Recent (it belongs to one session). */
  flags: string[];
}

export interface FlagsEvent extends Located {
  name: 'FlagsSet' | 'FlagsClear';
  /** Only the flags and keywords added (FlagsSet) or removed (FlagsClear). */
  flags: string[];
}

export interface ExpungeEvent extends Located {
  name: 'MessageExpunge';
}

export interface RenameEvent {
  name: 'MailboxRename';
  mailbox: string;
  oldMailbox: string;
}

export type PushEvent = SavedEvent | FlagsEvent | ExpungeEvent | RenameEvent;

export interface PushBatch {
  /** The Dovecot user, lower case: the account the rows belong to. */
  user: string;
  /** The mail namespace's hierarchy separator (renaming "A" renames "A<sep>B"). */
  separator: string;
  events: PushEvent[];
  /** Well-formed events of kinds the receiver does not handle. */
  skipped: number;
}

export class PushValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PushValidationError';
  }
}

const UINT32_MAX = 4_294_967_295;
const SYSTEM_FLAGS = new Map(['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft', '\\Recent'].map((f) => [f.toLowerCase(), f]));
// IMAP atoms: no controls, spaces or the specials; a system flag is one backslash and a known name.
const KEYWORD = /^[^\x00-\x20\x7f(){%*"\\\]]+$/;
const EVENT_NAME = /^[A-Z][A-Za-z]{0,63}$/;

type Obj = Record<string, unknown>;

function fail(where: string, what: string): never {
  throw new PushValidationError(`${where}: ${what}`);
}

const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function text(o: Obj, key: string, where: string, max: number, opts: { optional?: boolean } = {}): string | undefined {
  const v = o[key];
  if (v === undefined && opts.optional) return undefined;
  if (typeof v !== 'string') fail(`${where}.${key}`, 'expected a string');
  if (v.length === 0 || v.length > max) fail(`${where}.${key}`, `expected 1..${max} characters`);
  // Control characters never belong in a mailbox name or user name; NUL would also break pg.
  if (/[\x00-\x1f\x7f]/.test(v)) fail(`${where}.${key}`, 'control characters are not allowed');
  return v;
}

function uint32(o: Obj, key: string, where: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > UINT32_MAX) fail(`${where}.${key}`, `expected an integer 1..${UINT32_MAX}`);
  return v;
}

/** `\seen` → `\Seen`; keywords as given. Unknown backslash flags and non-atoms are errors. */
export function normaliseFlag(flag: string, where: string): string {
  if (flag.length === 0 || flag.length > PUSH_LIMITS.maxFlagChars) fail(where, `expected 1..${PUSH_LIMITS.maxFlagChars} characters`);
  if (flag.startsWith('\\')) return SYSTEM_FLAGS.get(flag.toLowerCase()) ?? fail(where, `unknown system flag ${JSON.stringify(flag)}`);
  if (!KEYWORD.test(flag)) fail(where, `not an IMAP keyword: ${JSON.stringify(flag)}`);
  return flag;
}

function flagList(o: Obj, key: string, where: string): string[] {
  const v = o[key];
  if (v === undefined) return [];
  // Dovecot's Lua pushes an empty table for "no flags", which a JSON encoder may write as {}.
  if (isObject(v) && Object.keys(v).length === 0) return [];
  if (!Array.isArray(v)) fail(`${where}.${key}`, 'expected an array of strings');
  if (v.length > PUSH_LIMITS.maxFlags) fail(`${where}.${key}`, `more than ${PUSH_LIMITS.maxFlags} flags`);
  return v.map((f, i) => (typeof f === 'string' ? normaliseFlag(f, `${where}.${key}[${i}]`) : fail(`${where}.${key}[${i}]`, 'expected a string')));
}

/** Flags and keywords as one list: no \Recent, no duplicates (keywords compare case-insensitively, as in IMAP). */
export function mergeFlags(...lists: string[][]): string[] {
  const seen = new Map<string, string>();
  for (const f of lists.flat()) if (f !== '\\Recent' && !seen.has(f.toLowerCase())) seen.set(f.toLowerCase(), f);
  return [...seen.values()];
}

/**
 * A Message-ID as the index stores it: mailparser trims the header and wraps it in `<…>`, so the
 * same happens here; folding whitespace is dropped. Empty → null.
 */
export function normaliseMessageId(raw: string): string | null {
  const v = raw.replace(/\r?\n[ \t]+/g, ' ').trim();
  if (!v) return null;
  return `${v.startsWith('<') ? '' : '<'}${v}${v.endsWith('>') ? '' : '>'}`;
}

function located(e: Obj, where: string): Located {
  return { mailbox: text(e, 'mailbox', where, PUSH_LIMITS.maxMailboxChars)!, uidValidity: uint32(e, 'uid_validity', where), uid: uint32(e, 'uid', where) };
}

function parseEvent(e: unknown, where: string): PushEvent | null {
  if (!isObject(e)) fail(where, 'expected an object');
  const name = e.name;
  if (typeof name !== 'string' || !EVENT_NAME.test(name)) fail(`${where}.name`, 'expected an event name');
  switch (name) {
    case 'MessageNew':
    case 'MessageAppend': {
      const at = located(e, where);
      let messageId: string | null = null;
      if (e.message_id !== undefined) {
        if (typeof e.message_id !== 'string' || e.message_id.length > PUSH_LIMITS.maxMessageIdChars) fail(`${where}.message_id`, `expected a string of at most ${PUSH_LIMITS.maxMessageIdChars} characters`);
        if (e.message_id.includes('\0')) fail(`${where}.message_id`, 'NUL is not allowed');
        messageId = normaliseMessageId(e.message_id);
      }
      return { name, ...at, messageId, flags: mergeFlags(flagList(e, 'flags', where), flagList(e, 'keywords', where)) };
    }
    case 'FlagsSet':
    case 'FlagsClear':
      return { name, ...located(e, where), flags: mergeFlags(flagList(e, 'flags', where), flagList(e, 'keywords', where)) };
    case 'MessageExpunge':
      return { name, ...located(e, where) };
    case 'MailboxRename':
      return { name, mailbox: text(e, 'mailbox', where, PUSH_LIMITS.maxMailboxChars)!, oldMailbox: text(e, 'mailbox_old', where, PUSH_LIMITS.maxMailboxChars)! };
    default:
      return null;
  }
}

/** Validates a parsed POST body; throws PushValidationError with the first problem found. */
export function parsePushBatch(body: unknown): PushBatch {
  if (!isObject(body)) fail('body', 'expected a JSON object');
  if (body.v !== 1) fail('v', 'expected 1 (the only version there is)');
  const user = text(body, 'user', 'body', PUSH_LIMITS.maxUserChars)!.toLowerCase();
  if (/\s/.test(user)) fail('body.user', 'whitespace is not allowed');
  const separator = text(body, 'separator', 'body', 1, { optional: true }) ?? '.';
  if (!Array.isArray(body.events)) fail('body.events', 'expected an array');
  if (body.events.length > PUSH_LIMITS.maxEvents) fail('body.events', `more than ${PUSH_LIMITS.maxEvents} events`);
  const events: PushEvent[] = [];
  let skipped = 0;
  body.events.forEach((e, i) => {
    const parsed = parseEvent(e, `events[${i}]`);
    if (parsed) events.push(parsed);
    else skipped++;
  });
  return { user, separator, events, skipped };
}
