/**
 * A small SMTP client for the smoke test. Not nodemailer: the checks need what a mail library
 * hides on purpose: XCLIENT (to pose as an outside client), the exact reply of each stage (a 4xx at
 * RCPT vs. at end of data is the difference between two policy hooks), and many messages in one
 * pipelined session.
 *
 * Replies are read by a line parser that never touches the socket; the session queues waiters in
 * order, so pipelined commands get their replies in the order they were sent (RFC 2920).
 */
import net from 'node:net';

export interface SmtpReply {
  code: number;
  /** Every line's text after the code and separator, joined with '\n'. */
  text: string;
}

export const replyLine = (r: SmtpReply): string => `${r.code} ${r.text.replace(/\n/g, ' / ')}`;

/** Pure: feed bytes, get complete replies (multi-line `250-…` folded into one). */
export class ReplyParser {
  private buf = '';
  private lines: string[] = [];

  push(chunk: string): SmtpReply[] {
    this.buf += chunk;
    const out: SmtpReply[] = [];
    for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      const m = /^(\d{3})([ -]?)(.*)$/.exec(line);
      if (!m) throw new Error(`malformed SMTP reply line ${JSON.stringify(line)}`);
      this.lines.push(m[3]!);
      if (m[2] !== '-') {
        out.push({ code: Number(m[1]), text: this.lines.join('\n') });
        this.lines = [];
      }
    }
    return out;
  }
}

/** Dot-stuffing and CRLF line ends, plus the terminating `.` line. */
export function encodeData(message: string): string {
  const crlf = message.replace(/\r?\n/g, '\r\n');
  const body = crlf.endsWith('\r\n') ? crlf : `${crlf}\r\n`;
  return `${body.replace(/^\./gm, '..')}.\r\n`;
}

export interface SmtpSessionOptions {
  host: string;
  port: number;
  /** Per reply (default 30 s). */
  timeoutMs?: number;
}

export class SmtpSession {
  private readonly parser = new ReplyParser();
  private readonly ready: SmtpReply[] = [];
  private readonly waiters: Array<{ resolve: (r: SmtpReply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  private failure: Error | undefined;
  /** What EHLO advertised, upper-cased keywords (PIPELINING, AUTH PLAIN LOGIN, XCLIENT …). */
  extensions: string[] = [];

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      try {
        for (const r of this.parser.push(chunk)) this.deliver(r);
      } catch (err) {
        this.fail(err as Error);
      }
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed by the server')));
  }

  /** Connects and reads the greeting, which must be 220. */
  static async connect(opts: SmtpSessionOptions): Promise<SmtpSession> {
    const socket = net.connect({ host: opts.host, port: opts.port });
    const session = new SmtpSession(socket, opts.timeoutMs ?? 30_000);
    const greeting = await session.read().catch((err: Error) => {
      socket.destroy();
      throw new Error(`${opts.host}:${opts.port}: ${err.message}`);
    });
    if (greeting.code !== 220) {
      socket.destroy();
      throw new Error(`${opts.host}:${opts.port} greeted with ${replyLine(greeting)}`);
    }
    return session;
  }

  private deliver(r: SmtpReply): void {
    const w = this.waiters.shift();
    if (!w) return void this.ready.push(r);
    clearTimeout(w.timer);
    w.resolve(r);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  /** The next reply, in order. */
  read(): Promise<SmtpReply> {
    const r = this.ready.shift();
    if (r) return Promise.resolve(r);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`no reply within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.waiters.push({ resolve, reject, timer });
    });
  }

  write(text: string): void {
    this.socket.write(text, 'latin1');
  }

  async command(line: string): Promise<SmtpReply> {
    this.write(`${line}\r\n`);
    return this.read();
  }

  /** Several commands in one write (PIPELINING), one reply each. */
  async pipeline(lines: string[]): Promise<SmtpReply[]> {
    this.write(lines.map((l) => `${l}\r\n`).join(''));
    const out: SmtpReply[] = [];
    for (let i = 0; i < lines.length; i++) out.push(await this.read());
    return out;
  }

  async ehlo(name: string): Promise<void> {
    const r = await this.command(`EHLO ${name}`);
    if (r.code !== 250) throw new Error(`EHLO: ${replyLine(r)}`);
    this.extensions = r.text.split('\n').slice(1).map((l) => l.toUpperCase());
  }

  /** XCLIENT (Postfix): pose as another client; the server greets again, so EHLO follows. */
  async xclient(attrs: { addr: string; name?: string; helo?: string }, ehloName: string): Promise<void> {
    if (!this.extensions.some((e) => e.startsWith('XCLIENT'))) throw new Error('the server does not offer XCLIENT to this client (smtpd_authorized_xclient_hosts)');
    const parts = [`ADDR=${attrs.addr}`, `NAME=${attrs.name ?? '[UNAVAILABLE]'}`, ...(attrs.helo ? [`HELO=${attrs.helo}`] : [])];
    const r = await this.command(`XCLIENT ${parts.join(' ')}`);
    if (r.code !== 220) throw new Error(`XCLIENT: ${replyLine(r)}`);
    await this.ehlo(ehloName);
  }

  async authPlain(user: string, password: string): Promise<void> {
    const token = Buffer.from(`\0${user}\0${password}`, 'utf8').toString('base64');
    const r = await this.command(`AUTH PLAIN ${token}`);
    if (r.code !== 235) throw new Error(`AUTH PLAIN as ${user}: ${replyLine(r)}`);
  }

  /**
   * One message: MAIL, RCPT and DATA pipelined, then the content if DATA got 354. Resolves with
   * the reply that decided it (the first non-2xx before the content, else the end-of-data reply)
   * and the stage it came at.
   */
  async send(from: string, to: string, message: string): Promise<{ stage: 'mail' | 'rcpt' | 'data' | 'end-of-data'; reply: SmtpReply }> {
    const [mail, rcpt, data] = await this.pipeline([`MAIL FROM:<${from}>`, `RCPT TO:<${to}>`, 'DATA']);
    const early = mail!.code !== 250 ? { stage: 'mail' as const, reply: mail! } : rcpt!.code >= 300 ? { stage: 'rcpt' as const, reply: rcpt! } : undefined;
    if (data!.code !== 354) {
      await this.command('RSET');
      return early ?? { stage: 'data', reply: data! };
    }
    this.write(encodeData(message));
    return { stage: 'end-of-data', reply: await this.read() };
  }

  async quit(): Promise<void> {
    if (!this.failure) await this.command('QUIT').catch(() => undefined);
    this.socket.destroy();
  }

  close(): void {
    this.socket.destroy();
  }
}
