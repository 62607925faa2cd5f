/**
 * One log line, understood: our services write pino JSON (level, time, qid/queueId…); the daemons
 * write text in their own formats, from which a time and a severity are read where they have one:
 *
 *   postfix   `Nov 22 00:57:54 mail ceerion-postfix/smtpd[19543]: warning: …`   (syslog time, local)
 *   dovecot   `Nov 22 00:57:54 imap-login: Info: …` / `Warning:` / `Error:` / `Fatal:` / `Panic:`
 *   postgres  `2026-11-22 00:57:47.999 UTC [19159] LOG:  …` / `WARNING:` / `ERROR:` / `FATAL:`
 *   redis     `19160:C 22 Nov 2026 00:57:47.985 # …` (`.` debug, `-` verbose, `*` notice, `#` warning)
 *   clamd     `Sun Nov 22 00:57:48 2026 -> ERROR: …`
 *
 * Levels are pino's numbers (trace 10, debug 20, info 30, warn 40, error 50, fatal 60). A text line
 * without a severity word counts as info: `--level warn` then hides it, `--level info` shows it.
 * Nothing here throws on any input (the fuzz test feeds it arbitrary strings).
 */

export const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
const LEVEL_NAMES = new Map(Object.entries(LEVELS).map(([k, v]) => [v, k]));

export function levelName(n: number): string {
  return LEVEL_NAMES.get(n) ?? String(n);
}

/** `warn`, `WARNING`, `40` → 40; undefined when it is no level. */
export function parseLevel(text: string): number | undefined {
  const t = text.trim().toLowerCase();
  if (/^\d{1,3}$/.test(t)) return Number(t);
  if (t === 'warning') return LEVELS.warn;
  return Object.hasOwn(LEVELS, t) ? LEVELS[t] : undefined;
}

export interface ParsedLine {
  service: string;
  raw: string;
  /** A pino line's object; undefined for text. */
  json?: Record<string, unknown>;
  /** Milliseconds since the epoch, when the line carries a time we can read. */
  time?: number;
  level: number;
}

const MONTHS: Record<string, number> = { jan: 0, feb: 1, mar: 2, apr: 3, may: 4, jun: 5, jul: 6, aug: 7, sep: 8, oct: 9, nov: 10, dec: 11 };

function month(name: string): number | undefined {
  return MONTHS[name.toLowerCase()];
}

/** A valid local time, or undefined (Date rolls 31 Feb over to March; we refuse such dates). */
function localTime(y: number, mo: number, d: number, h: number, mi: number, s: number, ms = 0): number | undefined {
  const dt = new Date(y, mo, d, h, mi, s, ms);
  if (dt.getMonth() !== mo || dt.getDate() !== d || h > 23 || mi > 59 || s > 60) return undefined;
  return dt.getTime();
}

const fraction = (f: string | undefined): number => (f ? Math.round(Number(`0.${f}`) * 1000) : 0);

/** The time at the start of a text line, in any of the formats above; `now` dates a syslog line. */
export function textTime(line: string, now: number): number | undefined {
  let m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(?:\s?(Z|UTC|GMT|[+-]\d{2}:?\d{2}))?/.exec(line);
  if (m) {
    const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
    const local = localTime(y, mo - 1, d, h, mi, s, fraction(m[7]));
    if (local === undefined || !m[8]) return local;
    const utc = Date.UTC(y, mo - 1, d, h, mi, s, fraction(m[7]));
    if (/^(Z|UTC|GMT)$/.test(m[8])) return utc;
    const off = /([+-])(\d{2}):?(\d{2})/.exec(m[8])!;
    return utc - (off[1] === '-' ? -1 : 1) * (Number(off[2]) * 60 + Number(off[3])) * 60_000;
  }
  m = /^\d+:[XCSM] (\d{1,2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?/.exec(line);
  if (m) {
    const mo = month(m[2]!);
    return mo === undefined ? undefined : localTime(Number(m[3]), mo, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]), fraction(m[7]));
  }
  m = /^[A-Za-z]{3} ([A-Za-z]{3}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})\b/.exec(line);
  if (m) {
    const mo = month(m[1]!);
    return mo === undefined ? undefined : localTime(Number(m[6]), mo, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]));
  }
  m = /^([A-Za-z]{3}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?/.exec(line);
  if (m) {
    const mo = month(m[1]!);
    if (mo === undefined) return undefined;
    // Syslog times have no year: this year, unless that puts the line in the future.
    const year = new Date(now).getFullYear();
    const t = localTime(year, mo, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), fraction(m[6]));
    if (t !== undefined && t > now + 86_400_000) return localTime(year - 1, mo, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), fraction(m[6]));
    return t;
  }
  return undefined;
}

const REDIS_LEVELS: Record<string, number> = { '.': LEVELS.debug!, '-': LEVELS.debug!, '*': LEVELS.info!, '#': LEVELS.warn! };

/** The severity a text line states, as a pino level (info when it states none). */
export function textLevel(line: string): number {
  const redis = /^\d+:[XCSM] \d{1,2} [A-Za-z]{3} \d{4} [\d:.]+ ([.\-*#]) /.exec(line);
  if (redis) return REDIS_LEVELS[redis[1]!]!;
  const m = /(?:^|[\s:>\]])(panic|fatal|error|warning|warn|debug\d?)(?=:)/i.exec(line);
  if (!m) return LEVELS.info!;
  const word = m[1]!.toLowerCase();
  if (word === 'panic' || word === 'fatal') return LEVELS.fatal!;
  if (word === 'error') return LEVELS.error!;
  if (word.startsWith('warn')) return LEVELS.warn!;
  return LEVELS.debug!;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A pino line's time: epoch milliseconds (pino's default) or an ISO string (isoTime). */
function jsonTime(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string') {
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : t;
  }
  return undefined;
}

export function parseLine(service: string, raw: string, now: number): ParsedLine {
  if (raw.startsWith('{')) {
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      v = undefined;
    }
    if (isRecord(v)) {
      const time = jsonTime(v.time);
      const level = typeof v.level === 'number' ? v.level : typeof v.level === 'string' ? (parseLevel(v.level) ?? LEVELS.info!) : LEVELS.info!;
      return { service, raw, json: v, level, ...(time !== undefined ? { time } : {}) };
    }
  }
  const time = textTime(raw, now);
  return { service, raw, level: textLevel(raw), ...(time !== undefined ? { time } : {}) };
}

export interface LogFilter {
  /** File names (service names) to show; undefined: all. */
  services?: ReadonlySet<string>;
  /** Lowest pino level shown. */
  minLevel?: number;
  /** A Postfix queue id (the milter's `qid`, policyd's `queueId`, text lines containing it). */
  queueId?: string;
}

/** The JSON fields that carry a Postfix queue id in our logs (milter `qid` from the `i` macro). */
export const QUEUE_ID_FIELDS = ['qid', 'queueId', 'queue_id'] as const;

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Whether `raw` holds `word` not as part of a longer run of letters and digits. */
export function containsWord(raw: string, word: string): boolean {
  if (!word) return false;
  return new RegExp(`(?<![A-Za-z0-9])${escapeRe(word)}(?![A-Za-z0-9])`).test(raw);
}

export function matches(line: ParsedLine, filter: LogFilter): boolean {
  if (filter.services && !filter.services.has(line.service)) return false;
  if (filter.minLevel !== undefined && line.level < filter.minLevel) return false;
  if (filter.queueId !== undefined) {
    const id = filter.queueId;
    // A field match, or the id anywhere in the line (the trace header's `queue-id=…`, the LMTP
    // indexer's Received-derived fields, Postfix's own `4XyZ1Q: from=<…>` lines).
    const field = line.json !== undefined && QUEUE_ID_FIELDS.some((f) => line.json![f] === id);
    if (!field && !containsWord(line.raw, id)) return false;
  }
  return true;
}
