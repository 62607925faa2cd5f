// A raw LMTP client for tests: one transaction, pipelined as Postfix's lmtp client does
// (LHLO, then MAIL + every RCPT + DATA in one write), every reply line kept as sent.
import net from 'node:net';

export interface LmtpReply {
  code: number;
  /** The full last line, e.g. `250 2.0.0 OK`. */
  line: string;
  lines: string[];
}

export interface LmtpTranscript {
  greeting: LmtpReply;
  lhlo: LmtpReply;
  mail: LmtpReply;
  rcpts: LmtpReply[];
  /** Present when at least one RCPT was accepted (DATA was answered 354). */
  data?: LmtpReply;
  /** One per accepted recipient, in RCPT order. */
  results: LmtpReply[];
}

export interface LmtpTransaction {
  from: string;
  to: string[];
  /** The message; CRLF line ends, not dot-stuffed (done here). */
  message: string | Buffer;
  mailParams?: string;
}

type Target = { port: number; host?: string } | { path: string };

export async function lmtpSend(target: Target, tx: LmtpTransaction, timeoutMs = 60_000): Promise<LmtpTranscript> {
  const socket = 'path' in target ? net.connect(target.path) : net.connect(target.port, target.host ?? '127.0.0.1');
  const replies: LmtpReply[] = [];
  let waiters: Array<() => void> = [];
  let buf = '';
  let pending: string[] = [];
  let failure: Error | undefined;
  socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`LMTP timeout; replies so far: ${JSON.stringify(replies.map((r) => r.line))}`)));
  socket.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let i: number;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      pending.push(line);
      if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) {
        replies.push({ code: Number(line.slice(0, 3)), line, lines: pending });
        pending = [];
      }
    }
    for (const w of waiters.splice(0)) w();
  });
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', (err) => {
    failure = err;
    for (const w of waiters.splice(0)) w();
  });
  let taken = 0;
  const next = async (): Promise<LmtpReply> => {
    while (replies.length <= taken) {
      if (failure) throw failure;
      if (socket.destroyed) throw new Error(`LMTP connection closed; replies: ${JSON.stringify(replies.map((r) => r.line))}`);
      await new Promise<void>((r) => waiters.push(r));
    }
    return replies[taken++]!;
  };
  try {
    const greeting = await next();
    socket.write('LHLO client.test\r\n');
    const lhlo = await next();
    const params = tx.mailParams ? ` ${tx.mailParams}` : '';
    socket.write(`MAIL FROM:<${tx.from}>${params}\r\n${tx.to.map((r) => `RCPT TO:<${r}>\r\n`).join('')}DATA\r\n`);
    const mail = await next();
    const rcpts: LmtpReply[] = [];
    for (let i = 0; i < tx.to.length; i++) rcpts.push(await next());
    const data = await next();
    const results: LmtpReply[] = [];
    if (data.code === 354) {
      const body = Buffer.isBuffer(tx.message) ? tx.message : Buffer.from(tx.message, 'utf8');
      const text = body.toString('latin1').replace(/(^|\r\n)\./g, '$1..');
      socket.write(Buffer.from(text.endsWith('\r\n') ? text : `${text}\r\n`, 'latin1'));
      socket.write('.\r\n');
      for (const r of rcpts) if (r.code >= 200 && r.code < 300) results.push(await next());
    }
    socket.end('QUIT\r\n');
    await ended;
    return { greeting, lhlo, mail, rcpts, ...(data.code === 354 ? { data } : {}), results };
  } finally {
    socket.destroy();
  }
}
