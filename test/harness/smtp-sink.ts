// A tiny SMTP server that accepts every message and keeps it in memory. The
// private Postfix instances relay everything here, so tests can assert on what
// Postfix (after the milter) actually delivered.
import net from 'node:net';

export interface SinkMessage {
  from: string;
  rcpts: string[];
  /** Message content exactly as transmitted, CRLF line endings, dot-unstuffed, without the final ".". */
  data: string;
}

export interface SmtpSink {
  readonly port: number;
  readonly messages: SinkMessage[];
  /** Resolve once at least `count` messages arrived (returns them), reject after timeoutMs. */
  waitFor(count: number, timeoutMs?: number): Promise<SinkMessage[]>;
  close(): Promise<void>;
}

export async function startSmtpSink(): Promise<SmtpSink> {
  const messages: SinkMessage[] = [];
  const waiters = new Set<() => void>();
  const sockets = new Set<net.Socket>();

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // Postfix may drop cached connections at any time; that is not a test failure.
    socket.on('error', () => socket.destroy());
    handleSession(socket, (msg) => {
      messages.push(msg);
      for (const w of [...waiters]) w();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('smtp-sink: unexpected server address');

  return {
    port: address.port,
    messages,
    waitFor(count, timeoutMs = 10_000) {
      return new Promise<SinkMessage[]>((resolve, reject) => {
        const check = (): void => {
          if (messages.length < count) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(messages);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`smtp-sink: waited ${timeoutMs}ms for ${count} message(s), got ${messages.length}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close() {
      // Postfix's smtp client keeps idle connections in its connection cache;
      // server.close() alone would wait for them, so cut them off.
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * One SMTP session. Input is consumed only in complete lines, so pipelined
 * command batches and a DATA terminator split across TCP chunks both work
 * without special cases: an incomplete tail simply waits for the next chunk.
 */
function handleSession(socket: net.Socket, deliver: (msg: SinkMessage) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  let from: string | undefined;
  let rcpts: string[] = [];
  let inData = false;
  let dataLines: string[] = [];

  const reply = (text: string): void => {
    if (!socket.destroyed && !socket.writableEnded) socket.write(`${text}\r\n`);
  };
  const reset = (): void => {
    from = undefined;
    rcpts = [];
    dataLines = [];
    inData = false;
  };

  const onLine = (line: string): void => {
    if (inData) {
      if (line === '.') {
        deliver({ from: from ?? '', rcpts, data: dataLines.map((l) => `${l}\r\n`).join('') });
        reset();
        reply('250 2.0.0 Ok: queued');
        return;
      }
      // RFC 5321 4.5.2: the sender doubled any leading dot.
      dataLines.push(line.startsWith('.') ? line.slice(1) : line);
      return;
    }
    const verb = line.slice(0, 4).toUpperCase();
    switch (verb) {
      case 'EHLO':
        // 8BITMIME matters: without it Postfix would re-encode 8-bit bodies to
        // quoted-printable and tests would not see the bytes that were sent.
        reply('250-smtp-sink.localdomain');
        reply('250-PIPELINING');
        reply('250-SIZE 0');
        reply('250-8BITMIME');
        reply('250 SMTPUTF8');
        return;
      case 'HELO':
        reply('250 smtp-sink.localdomain');
        return;
      case 'MAIL': {
        const m = /^MAIL FROM:\s*<([^>]*)>/i.exec(line);
        if (!m) return reply('501 5.5.4 Syntax: MAIL FROM:<address>');
        if (from !== undefined) return reply('503 5.5.1 Error: nested MAIL command');
        from = m[1] ?? '';
        rcpts = [];
        return reply('250 2.1.0 Ok');
      }
      case 'RCPT': {
        const m = /^RCPT TO:\s*<([^>]*)>/i.exec(line);
        if (!m) return reply('501 5.5.4 Syntax: RCPT TO:<address>');
        if (from === undefined) return reply('503 5.5.1 Error: need MAIL command');
        rcpts.push(m[1] ?? '');
        return reply('250 2.1.5 Ok');
      }
      case 'DATA':
        if (from === undefined || rcpts.length === 0) return reply('503 5.5.1 Error: need RCPT command');
        inData = true;
        dataLines = [];
        return reply('354 End data with <CR><LF>.<CR><LF>');
      case 'RSET':
        reset();
        return reply('250 2.0.0 Ok');
      case 'NOOP':
        return reply('250 2.0.0 Ok');
      case 'QUIT':
        reply('221 2.0.0 Bye');
        socket.end();
        return;
      default:
        return reply('502 5.5.2 Error: command not recognized');
    }
  };

  socket.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) break;
      const end = nl > start && buf[nl - 1] === 0x0d ? nl - 1 : nl;
      // Decode whole lines only, so a UTF-8 character split across chunks survives.
      onLine(buf.toString('utf8', start, end));
      start = nl + 1;
    }
    buf = buf.subarray(start);
  });

  reply('220 smtp-sink.localdomain ESMTP');
}
