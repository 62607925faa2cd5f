// Minimal SMTP client for tests and benchmarks: just enough protocol to push
// messages into the private Postfix and see which reply each one got.
import net from 'node:net';

export interface SmtpReply {
  code: number;
  /** Reply text without the status codes; lines of a multi-line reply joined with "\n". */
  text: string;
}

export interface MailMessage {
  from: string;
  to: string[];
  /** Raw message (headers + body). LF or CRLF line endings; dot-stuffing is done here. */
  data: string;
}

export interface SmtpClientOptions {
  host?: string;
  /** Name sent with EHLO. */
  helo?: string;
  /** Idle socket timeout per command, default 60s (milter_content_timeout can be long). */
  timeoutMs?: number;
}

export interface SendMailOptions extends MailMessage, SmtpClientOptions {
  port: number;
}

export interface SmtpSession {
  /** The EHLO reply (multi-line: lists the server's extensions). */
  readonly ehlo: SmtpReply;
  /** Final reply to DATA, or the first failing reply to MAIL/RCPT (the transaction is then RSET). */
  send(msg: MailMessage): Promise<SmtpReply>;
  quit(): Promise<void>;
}

/** Parses the reply stream. Replies are queued so pipelined commands can be answered in order. */
class ReplyReader {
  private buf = '';
  private lines: string[] = [];
  private readonly ready: SmtpReply[] = [];
  private readonly waiters: Array<{ resolve: (r: SmtpReply) => void; reject: (e: Error) => void }> = [];
  private failure: Error | undefined;

  constructor(socket: net.Socket) {
    // setEncoding uses a StringDecoder, so UTF-8 split across chunks is safe.
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('SMTP connection closed by server')));
  }

  next(): Promise<SmtpReply> {
    const r = this.ready.shift();
    if (r) return Promise.resolve(r);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      const m = /^(\d{3})([ -]|$)(.*)$/.exec(line);
      if (!m) return this.fail(new Error(`malformed SMTP reply line: ${JSON.stringify(line)}`));
      this.lines.push(m[3] ?? '');
      if (m[2] === '-') continue; // more lines of the same reply follow
      const reply = { code: Number(m[1]), text: this.lines.join('\n') };
      this.lines = [];
      const w = this.waiters.shift();
      if (w) w.resolve(reply);
      else this.ready.push(reply);
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiters.splice(0)) w.reject(this.failure);
  }
}

/** CRLF-normalise, dot-stuff (RFC 5321 4.5.2) and terminate message content. */
export function encodeData(data: string): string {
  let body = data.replace(/\r?\n/g, '\r\n');
  if (!body.endsWith('\r\n')) body += '\r\n';
  return body.replace(/^\./gm, '..') + '.\r\n';
}

const isOk = (r: SmtpReply): boolean => r.code >= 200 && r.code < 400;

class Connection implements SmtpSession {
  ehlo: SmtpReply = { code: 0, text: '' };
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly reader: ReplyReader,
  ) {
    socket.once('close', () => (this.closed = true));
  }

  command(line: string): Promise<SmtpReply> {
    this.socket.write(`${line}\r\n`);
    return this.reader.next();
  }

  send(msg: MailMessage): Promise<SmtpReply> {
    // Serialise: interleaving two transactions on one socket would mix replies.
    const run = this.chain.then(() => this.transaction(msg));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async transaction(msg: MailMessage): Promise<SmtpReply> {
    if (msg.to.length === 0) throw new Error('sendMail: no recipients');
    // MAIL and RCPT may be pipelined (RFC 2920) - every server we talk to
    // (Postfix, the sink) supports it, and it saves round trips in benchmarks.
    // DATA is sent only after all envelope replies are in, so a rejected
    // recipient never leaves us committed to transmitting the content.
    const envelope = [`MAIL FROM:<${msg.from}>`, ...msg.to.map((r) => `RCPT TO:<${r}>`)];
    this.socket.write(envelope.map((l) => `${l}\r\n`).join(''));
    const replies: SmtpReply[] = [];
    for (let i = 0; i < envelope.length; i++) replies.push(await this.reader.next());
    const failed = replies.find((r) => !isOk(r));
    if (failed) {
      await this.resetAfterFailure(failed);
      return failed;
    }
    const dataReply = await this.command('DATA');
    if (dataReply.code !== 354) {
      await this.resetAfterFailure(dataReply);
      return dataReply;
    }
    this.socket.write(encodeData(msg.data));
    return this.reader.next();
  }

  private async resetAfterFailure(failed: SmtpReply): Promise<void> {
    // After 421 the server hangs up; RSET would only produce a spurious error.
    if (failed.code === 421 || this.closed) return;
    await this.command('RSET');
  }

  async quit(): Promise<void> {
    if (!this.closed) {
      try {
        await this.command('QUIT');
      } catch {
        // The server may already have closed the connection; nothing to do.
      }
    }
    await this.close();
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end();
      this.socket.setTimeout(1000, () => this.socket.destroy());
    });
  }
}

/** Connect, read the greeting and EHLO. Returns the failing reply instead if the server refuses. */
async function connect(port: number, opts: SmtpClientOptions): Promise<Connection | SmtpReply> {
  const socket = net.connect({ port, host: opts.host ?? '127.0.0.1' });
  const reader = new ReplyReader(socket);
  const timeoutMs = opts.timeoutMs ?? 60_000;
  socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`SMTP timeout after ${timeoutMs}ms idle`)));
  const conn = new Connection(socket, reader);
  try {
    const greeting = await reader.next();
    if (greeting.code !== 220) {
      await conn.close();
      return greeting;
    }
    const ehlo = await conn.command(`EHLO ${opts.helo ?? 'client.example.test'}`);
    if (ehlo.code !== 250) {
      await conn.quit();
      return ehlo;
    }
    conn.ehlo = ehlo;
    return conn;
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** One message over one connection: the final reply to DATA, or the first failing reply. */
export async function sendMail(opts: SendMailOptions): Promise<SmtpReply> {
  const conn = await connect(opts.port, opts);
  if (!(conn instanceof Connection)) return conn;
  try {
    return await conn.send(opts);
  } finally {
    await conn.quit();
  }
}

/** Keep one connection open and send several messages over it (like a real MTA with PIPELINING). */
export async function openSmtpSession(port: number, opts: SmtpClientOptions = {}): Promise<SmtpSession> {
  const conn = await connect(port, opts);
  if (!(conn instanceof Connection)) throw new Error(`SMTP session refused: ${conn.code} ${conn.text}`);
  return conn;
}
