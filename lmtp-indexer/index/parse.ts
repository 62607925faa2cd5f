/**
 * Reads a delivered message into what the index keeps (ParsedMessage), streaming it through
 * mailparser's MailParser with bounded memory. The message is delivered whatever happens here:
 * this never rejects, and a limit or a parser failure only makes the index entry partial, with
 * the reason in `problems`.
 *
 * How the limits are kept (mailparser 3.9.30 is pinned; the tests pin this behaviour):
 * - the root header block is cut at maxHeaderBytes on the raw bytes before mailparser sees
 *   them (whole lines kept, the rest of the block skipped), so a header bomb costs nothing
 *   and the headers that fit are still read; a nested part's header over the limit trips the
 *   splitter's own maxHeadSize, which is an error: the rest of the message is not read;
 * - MailParser.processChunk is wrapped as a gate: past maxParts parts or maxDepth nesting it
 *   drops every further chunk (the tree read so far stays valid) and the input is no longer fed;
 * - MailParser collects inline text parts in memory, so their raw body bytes are capped at
 *   1.5 × maxTextBytes (plain) and 1 × maxTextBytes (HTML); attachments are consumed as streams,
 *   counting bytes only.
 * The input is always read to its end (the tail discarded after a limit) so that a producer
 * piping into it is never stalled.
 */
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import mailparser from 'mailparser';
import type { AddressObject, AttachmentStream, EmailAddress, HeaderLines, Headers, MessageText } from 'mailparser';
import type { LmtpConfig } from '../../core/config/lmtp.ts';
import type { AttachmentInfo, ParsedMessage } from '../types.ts';
import { HeaderCap } from './header-cap.ts';
import { capUtf8, cleanText } from './text.ts';

export { capUtf8, cleanText } from './text.ts';

export type ParseLimits = Pick<LmtpConfig['index'], 'maxTextBytes' | 'snippetChars' | 'maxParts' | 'maxDepth' | 'maxHeaderBytes'>;

/**
 * Raw (still transfer-encoded) bytes of inline parts kept, all parts together, per byte of
 * maxTextBytes. Plain text: base64 is 4/3 of the text. HTML: html-to-text needs ~50 bytes of
 * memory per byte of HTML (2 MB of HTML peaks near 130 MB RSS), so HTML gets less and yields
 * less text than maxTextBytes.
 */
const RAW_PLAIN_FACTOR = 1.5;
const RAW_HTML_FACTOR = 1;
/** Header-derived strings longer than this are cut: nobody searches a 200 KB Message-ID. */
const MAX_FIELD_CHARS = 998;
const MAX_LIST_ITEMS = 1000;
/**
 * mailparser's first stage (ChunkedPassthrough) concatenates its buffer with every write until it
 * holds 64 KiB: small writes (a line at a time) cost quadratic copying. Writes are gathered to that size.
 */
const WRITE_BYTES = 64 * 1024;

// html-to-text is mailparser's own dependency (pnpm keeps it out of our node_modules); used for
// HTML parts mailparser leaves unconverted (an HTML-only part inside a multipart).
const requireFromMailparser = createRequire(createRequire(import.meta.url).resolve('mailparser'));
const { htmlToText } = requireFromMailparser('html-to-text') as {
  htmlToText(html: string, options?: Record<string, unknown>): string;
};
const HTML_OPTIONS = { wordwrap: false, selectors: [{ selector: 'a', options: { ignoreHref: true } }, { selector: 'img', format: 'skip' }] };

/** The parts of MailParser 3.9.30 the gate needs; not in its type definitions. A 'node' chunk is the MIME node itself. */
interface SplitterChunk {
  type: 'node' | 'body' | 'data';
  value?: Buffer;
  /** 'body' and 'data' chunks: the node they belong to. */
  node?: unknown;
  parentNode?: unknown;
  multipart?: string | false;
  _boundary?: Buffer | false;
  contentType?: string | false;
}
interface ParserInternals {
  splitter?: { processLine?: (line: Buffer | false, final: boolean, next: () => void) => void };
  processChunk(data: SplitterChunk, done: (err?: Error | null) => void): void;
  curnode: { isAttachment?: boolean; decoder?: unknown; contentType?: string } | false;
  getTextContent(): { text?: string; html?: string };
}

const field = (s: string | null | undefined): string | null => {
  const v = cleanText(s ?? '').trim();
  return v ? Array.from(v.slice(0, MAX_FIELD_CHARS * 2)).slice(0, MAX_FIELD_CHARS).join('') : null;
};

/** `Key: value` raw header line (binary string, folded) → unfolded UTF-8 value. */
function rawValue(line: string): string {
  const utf8 = Buffer.from(line, 'binary').toString('utf8');
  return utf8.slice(utf8.indexOf(':') + 1).replace(/\r?\n[ \t]*/g, ' ').replace(/\s+/g, ' ').trim();
}

/** Addresses of an address header, groups flattened. */
function addresses(value: unknown): EmailAddress[] {
  const objects = ([] as unknown[]).concat(value ?? []) as AddressObject[];
  const flat: EmailAddress[] = [];
  const walk = (list: EmailAddress[] | undefined): void => {
    for (const a of list ?? []) {
      if (flat.length >= MAX_LIST_ITEMS) return;
      if (a.group) walk(a.group);
      else flat.push(a);
    }
  };
  for (const o of objects) walk(o?.value);
  return flat;
}

function isoDate(value: string | undefined): string | null {
  if (!value) return null;
  const d = new Date(value);
  const year = d.getUTCFullYear();
  // PostgreSQL's timestamptz and ISO 8601 both want a four-digit year.
  return Number.isNaN(d.getTime()) || year < 1 || year > 9999 ? null : d.toISOString();
}

const authResult = (header: string, method: string): string | null =>
  new RegExp(`(?:^|[\\s;])${method}\\s*=\\s*([A-Za-z]+)`, 'i').exec(header)?.[1]?.toLowerCase() ?? null;

function spamScore(score: string | undefined, status: string | undefined): number | null {
  const raw = score ?? /\bscore\s*=\s*(-?\d+(?:\.\d+)?)/i.exec(status ?? '')?.[1];
  const n = raw === undefined ? NaN : Number.parseFloat(raw);
  return Number.isFinite(n) && Math.abs(n) < 1e30 ? n : null;
}

/** Parses `input` for the index. Resolves always, with what could be read. */
export function parseForIndex(input: Readable, limits: ParseLimits): Promise<ParsedMessage> {
  return new Promise((resolve) => new IndexParse(input, limits, resolve).start());
}

/** How long the parser may take after the last input byte before we stop waiting for it. */
const PARSER_STALL_MS = 2_000;

class IndexParse {
  private readonly problems = new Set<string>();
  private readonly parser: InstanceType<typeof mailparser.MailParser>;
  private readonly internals: ParserInternals;
  private readonly headerCap: HeaderCap;
  private headers: Headers = new Map();
  private headerLines: HeaderLines = [];
  private readonly attachments: AttachmentInfo[] = [];
  private body = '';
  private html = '';
  /** Input not yet handed to mailparser: it is fed in WRITE_BYTES pieces. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private parts = 0;
  private rawPlainBytes = 0;
  private rawHtmlBytes = 0;
  private gateClosed = false;
  /** Multipart nodes without a boundary, read as text/plain. */
  private readonly unbounded = new Set<unknown>();
  private parserEnded = false;
  private parserDone = false;
  private inputDone = false;
  private settled = false;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    private readonly input: Readable,
    private readonly limits: ParseLimits,
    private readonly resolve: (m: ParsedMessage) => void,
  ) {
    this.headerCap = new HeaderCap(limits.maxHeaderBytes);
    this.parser = new mailparser.MailParser({
      skipTextToHtml: true,
      skipTextLinks: true,
      skipImageLinks: true,
      // Splitter limits (passed through by MailParser): the root block is already cut to
      // maxHeaderBytes, so this trips only on a nested part; parts are counted by the gate.
      maxHeadSize: limits.maxHeaderBytes + 1024,
      maxChildNodes: Number.MAX_SAFE_INTEGER,
    } as ConstructorParameters<typeof mailparser.MailParser>[0]);
    this.internals = this.parser as unknown as ParserInternals;
    const original = this.internals.processChunk.bind(this.parser);
    this.internals.processChunk = (data, done) => this.gate(data, done, original);
  }

  start(): void {
    const p = this.parser;
    p.on('headers', (h: Headers) => (this.headers = h));
    p.on('headerLines', (l: HeaderLines) => (this.headerLines = l));
    p.on('data', (item: AttachmentStream | MessageText) => this.onItem(item));
    p.on('error', (err: Error) => this.parserFailed(err));
    p.on('end', () => this.finishParser());
    p.on('close', () => this.finishParser());
    const input = this.input;
    if (input.readableEnded || input.destroyed) return this.inputEnded();
    input.on('data', (chunk: Buffer | string) => this.feed(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
    input.on('end', () => this.inputEnded());
    input.on('error', (err: Error) => {
      this.problem(`the message could not be read to its end (${err.message})`);
      this.inputEnded();
    });
    input.on('close', () => this.inputEnded());
  }

  private feed(chunk: Buffer): void {
    if (this.parserEnded) return; // after a limit: read on, discard
    for (const piece of this.headerCap.push(chunk)) {
      this.pending.push(piece);
      this.pendingBytes += piece.length;
    }
    if (this.headerCap.cut) this.problem(`the header is larger than ${this.limits.maxHeaderBytes} bytes; only its first lines were read`);
    if (this.pendingBytes >= WRITE_BYTES && !this.parser.write(this.takePending()) && !this.parserEnded) {
      this.input.pause();
      this.parser.once('drain', () => this.input.resume());
    }
  }

  private takePending(): Buffer {
    const data = Buffer.concat(this.pending);
    [this.pending, this.pendingBytes] = [[], 0];
    return data;
  }

  private inputEnded(): void {
    if (this.inputDone) return;
    this.inputDone = true;
    // Safety net: mailparser has been seen to never finish on some malformed nestings (an
    // rfc822 part whose header trips the splitter's limit mid-line). The input is all here, so a
    // parser that has not finished soon never will: index what was read rather than hang the
    // delivery waiting for it.
    this.watchdog = setTimeout(() => {
      if (this.settled) return;
      this.problem('the MIME parser stalled on this message; what it had read was indexed');
      this.parserDone = true;
      this.parser.destroy();
      this.maybeResolve();
    }, PARSER_STALL_MS);
    if (!this.parserEnded) {
      this.pending.push(...this.headerCap.end());
      const rest = this.takePending();
      if (rest.length) this.parser.write(rest);
      this.endParser();
    }
    this.maybeResolve();
  }

  private endParser(): void {
    if (this.parserEnded) return;
    this.parserEnded = true;
    if (!this.parserDone) this.parser.end();
    // Paused for the parser's backpressure: nobody else will resume it now.
    this.input.resume();
  }

  /** Runs before MailParser sees each splitter chunk; drops what is past a limit. */
  private gate(data: SplitterChunk, done: (err?: Error | null) => void, original: ParserInternals['processChunk']): void {
    if (this.gateClosed) return void setImmediate(done);
    if (data.type === 'node') {
      this.parts++;
      let depth = 0;
      for (let n = data as { parentNode?: unknown }; n.parentNode; n = n.parentNode as { parentNode?: unknown }) depth++;
      if (this.parts > this.limits.maxParts) return this.closeGate(`more than ${this.limits.maxParts} MIME parts; the rest was not indexed`, done);
      if (depth > this.limits.maxDepth) return this.closeGate(`MIME parts nested deeper than ${this.limits.maxDepth}; the rest was not indexed`, done);
      if (data.multipart && !data._boundary) {
        // Without a boundary nothing inside can be found: read the body as text rather than
        // dropping it. The splitter types its lines 'data' (multipart), converted below.
        this.problem('a multipart part has no boundary; its body was read as plain text');
        data.multipart = false;
        data.contentType = 'text/plain';
        this.unbounded.add(data);
      }
    } else if (data.type === 'data' && this.unbounded.has(data.node)) {
      data.type = 'body';
    }
    if (data.type === 'body' && data.value) {
      const node = this.internals.curnode;
      if (node && node.decoder && !node.isAttachment) {
        const html = node.contentType === 'text/html';
        const before = html ? this.rawHtmlBytes : this.rawPlainBytes;
        const room = Math.floor(this.limits.maxTextBytes * (html ? RAW_HTML_FACTOR : RAW_PLAIN_FACTOR)) - before;
        if (html) this.rawHtmlBytes += data.value.length;
        else this.rawPlainBytes += data.value.length;
        if (data.value.length > room) {
          this.problem(`the ${html ? 'HTML' : 'text'} parts are longer than the index keeps; only their start was indexed`);
          // Keep what fits of this chunk (one long line can be the whole body), drop the rest.
          if (room <= 0) return void setImmediate(done);
          data.value = data.value.subarray(0, room);
        }
      }
    }
    try {
      original(data, done);
    } catch (err) {
      // A throw here would surface from a setImmediate inside mailparser: an uncaught exception.
      this.closeGate(`the message could not be parsed (${(err as Error).message})`, done);
    }
  }

  private closeGate(problem: string, done: (err?: Error | null) => void): void {
    this.problem(problem);
    this.gateClosed = true;
    // Up to a megabyte of input may already sit in mailparser's buffers; the splitter would still
    // build a node for every part in it (a nesting bomb costs memory quadratic in its depth).
    // Past the gate nothing it produces is used, so it only scans lines from here on.
    const splitter = this.internals.splitter;
    if (splitter && typeof splitter.processLine === 'function') splitter.processLine = (_line, _final, next) => next();
    this.endParser();
    setImmediate(done);
  }

  private onItem(item: AttachmentStream | MessageText): void {
    if (item.type === 'text') {
      this.body = item.text ?? '';
      this.html = typeof item.html === 'string' ? item.html : '';
      return;
    }
    const info: AttachmentInfo = { name: field(item.filename), contentType: field(item.contentType) ?? 'application/octet-stream', size: 0 };
    this.attachments.push(info);
    // release() lets mailparser go on; it must run once, however the stream ends.
    let released = false;
    const release = (): void => void (released || ((released = true), item.release()));
    item.content.on('data', (chunk: Buffer) => (info.size += chunk.length));
    item.content.on('end', release);
    item.content.on('close', release);
    item.content.on('error', (err: Error) => {
      this.problem(`an attachment could not be decoded (${err.message})`);
      release();
    });
  }

  private parserFailed(err: Error): void {
    if (this.parserDone) return;
    const limit = (err as { code?: string }).code === 'EMAXLEN';
    this.problem(limit ? `a MIME part's header is larger than the limit; the rest was not indexed` : `the message could not be parsed (${err.message})`);
    // Keep the text of the parts read so far; getTextContent may emit 'error' again: ignored above.
    this.parserDone = true;
    try {
      const partial = this.internals.getTextContent();
      this.body ||= partial.text ?? '';
      this.html ||= partial.html ?? '';
    } catch {
      // nothing more to keep
    }
    this.parser.destroy();
    this.endParser();
    this.maybeResolve();
  }

  private finishParser(): void {
    this.parserDone = true;
    this.maybeResolve();
  }

  private maybeResolve(): void {
    if (this.settled || !this.parserDone || !this.inputDone) return;
    this.settled = true;
    clearTimeout(this.watchdog);
    try {
      this.resolve(this.build());
    } catch (err) {
      // Never expected. The message is delivered anyway: an entry with nothing read but the reason.
      this.problem(`the index entry could not be built (${(err as Error).message})`);
      [this.body, this.html, this.headers, this.headerLines, this.attachments.length] = ['', '', new Map(), [], 0];
      this.resolve(this.build());
    }
  }

  private problem(text: string): void {
    this.problems.add(text);
  }

  private first(key: string): string | undefined {
    const line = this.headerLines.find((l) => l.key === key);
    return line ? rawValue(line.line) : undefined;
  }

  private build(): ParsedMessage {
    const h = this.headers;
    const str = (key: string): string | null => {
      const v = h.get(key);
      return field(typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : null);
    };
    const from = addresses(h.get('from'))[0];
    const to = addresses(h.get('to'));
    const cc = addresses(h.get('cc'));
    const references = ([] as unknown[]).concat(h.get('references') ?? []).slice(0, MAX_LIST_ITEMS).map((r) => field(typeof r === 'string' ? r : null)).filter((r): r is string => r !== null);
    const spamStatusRaw = this.first('x-spam-status');
    const auth = field(this.first('authentication-results'));
    const received = this.first('received') ?? '';
    const subject = str('subject');

    let body = this.body;
    if (!body.trim() && this.html) {
      try {
        body = htmlToText(capUtf8(this.html, this.limits.maxTextBytes * RAW_HTML_FACTOR), HTML_OPTIONS);
      } catch (err) {
        this.problem(`the HTML could not be read (${(err as Error).message})`);
      }
    }
    body = cleanText(body);
    const collapsed = body.slice(0, this.limits.snippetChars * 8).replace(/\s+/g, ' ').trim();
    const snippet = Array.from(collapsed).slice(0, this.limits.snippetChars).join('');
    const people = [from?.name, from?.address, ...to.flatMap((a) => [a.name, a.address]), ...cc.flatMap((a) => [a.name, a.address])];
    const head = [subject, ...people, ...this.attachments.map((a) => a.name)].filter((s): s is string => !!s).map(cleanText).join('\n');
    const full = head ? `${head}\n${body}` : body;
    const text = capUtf8(full, this.limits.maxTextBytes);
    if (text.length < full.length) this.problem(`the text is longer than ${this.limits.maxTextBytes} bytes; only its start was indexed`);
    const list = (as: EmailAddress[]) => as.map((a) => field(a.address)).filter((a): a is string => a !== null);

    return {
      messageId: str('message-id'),
      inReplyTo: str('in-reply-to'),
      references,
      fromAddress: field(from?.address),
      fromName: field(from?.name),
      to: list(to),
      cc: list(cc),
      subject,
      sentAt: isoDate(this.first('date')),
      attachments: this.attachments,
      spamScore: spamScore(this.first('x-spam-score'), spamStatusRaw),
      spamStatus: field(spamStatusRaw?.split(/[\s,;]/)[0]),
      authResults: auth,
      spf: auth && authResult(auth, 'spf'),
      dkim: auth && authResult(auth, 'dkim'),
      dmarc: auth && authResult(auth, 'dmarc'),
      queueId: /\bwith\s+[A-Za-z0-9]+\s+id\s+([A-Za-z0-9]{5,32})\b/i.exec(received)?.[1] ?? null,
      text,
      snippet,
      problems: [...this.problems],
    };
  }
}
