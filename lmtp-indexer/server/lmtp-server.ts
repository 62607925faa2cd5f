/**
 * The LMTP server Postfix delivers to: nodemailer's `smtp-server` in LMTP mode (RFC 2033:
 * LHLO, one reply per recipient after DATA, PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES,
 * SIZE; it has no CHUNKING). We add the transaction: recipient lookup at RCPT, the body spooled
 * and hashed, and the DeliveryPipeline's per-recipient answers.
 *
 * Shutdown: stop accepting, say 421 to connections that are between transactions (Postfix caches
 * LMTP connections), let transactions in progress finish for `shutdownGraceMs`, then close the
 * rest. A transaction cut off there gets no answer, so Postfix retries it, and the duplicate check
 * answers the recipients Dovecot already has.
 */
import { randomBytes } from 'node:crypto';
import { chmod } from 'node:fs/promises';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { LmtpConfig } from '../../core/config/lmtp.ts';
import { formatListen, parseListen } from '../../core/listen.ts';
import type { Logger } from '../../core/log.ts';
import { prepareSocketPath } from '../../core/unix-socket.ts';
import type { RecipientReply } from '../types.ts';
import type { DeliveryOutcome, DeliveryPipeline, Envelope } from './delivery.ts';
import { installReplyPassThrough } from './reply-text.ts';
import { prepareSpoolDir, spoolMessage } from './spool.ts';
import { postfixQueueId } from './queue-id.ts';
import type { LmtpMetrics } from './metrics.ts';

installReplyPassThrough();

/** Answer for a recipient at RCPT: undefined accepts. */
export type RecipientCheck = (address: string, log: Logger) => Promise<RecipientReply | undefined>;

export interface LmtpServerOptions {
  config: LmtpConfig;
  hostname: string;
  log: Logger;
  delivery: DeliveryPipeline;
  recipientCheck?: RecipientCheck;
  metrics?: LmtpMetrics;
}

/** An Error smtp-server turns into a reply line; message keeps the enhanced code first. */
function replyError(reply: RecipientReply): Error & { responseCode: number } {
  const err = new Error(reply.enhanced ? `${reply.enhanced} ${reply.message}` : reply.message) as Error & { responseCode: number };
  err.responseCode = reply.code;
  return err;
}

/** MAIL FROM parameters Dovecot understands, taken from what smtp-server parsed. */
function mailParams(session: SMTPServerSession): Envelope['mailParams'] {
  const out: Envelope['mailParams'] = {};
  const from = session.envelope.mailFrom;
  const args = (from && typeof from === 'object' ? from.args : undefined) as Record<string, string | boolean> | false | undefined;
  if (args) {
    if (typeof args.BODY === 'string') out.BODY = args.BODY.toUpperCase();
    if (args.SMTPUTF8) out.SMTPUTF8 = true;
  }
  return out;
}

export class LmtpServer {
  private readonly server: SMTPServer;
  private readonly inFlight = new Map<string, Promise<unknown>>();
  private address = '';

  constructor(private readonly opts: LmtpServerOptions) {
    const { config } = opts;
    this.server = new SMTPServer({
      lmtp: true,
      name: config.serverName ?? opts.hostname,
      banner: 'CEERION LMTP indexer',
      size: config.maxMessageBytes,
      maxRecipients: config.maxRecipients,
      socketTimeout: config.socketTimeoutMs,
      closeTimeout: Math.max(1, config.shutdownGraceMs),
      // Postfix's LMTP client on loopback or a unix socket: no TLS, no AUTH.
      disabledCommands: ['AUTH', 'STARTTLS'],
      authOptional: true,
      rejectOversized: true,
      hideENHANCEDSTATUSCODES: false,
      // We don't carry NOTIFY/ORCPT to Dovecot: Postfix then reports DSN success itself ("relayed").
      hideDSN: true,
      hideSTARTTLS: true,
      logger: false,
      onConnect: (session, cb) => {
        this.sessionLog(session).debug({ remote: session.remoteAddress }, 'lmtp connection');
        cb();
      },
      onRcptTo: (address, session, cb) => void this.onRcptTo(address, session).then(() => cb(), cb),
      onData: (stream, session, cb) => {
        const id = `${session.id}.${session.transaction}`;
        const work = this.onData(stream, session).then(
          (replies) => cb(null, replies),
          (err: Error) => cb(err),
        );
        this.inFlight.set(id, work);
        void work.finally(() => this.inFlight.delete(id));
      },
    });
    this.server.on('error', (err) => opts.log.error({ err }, 'lmtp server error'));
  }

  private sessionLog(session: SMTPServerSession): Logger {
    return this.opts.log.child({ conn: session.id, txn: session.transaction });
  }

  private async onRcptTo(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    if (!this.opts.recipientCheck) return;
    const reply = await this.opts.recipientCheck(address.address, this.sessionLog(session));
    if (reply) throw replyError(reply);
  }

  private async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<Array<string | Error>> {
    const ref = randomBytes(5).toString('hex');
    let log = this.sessionLog(session).child({ ref });
    const started = performance.now();
    const spool = await spoolMessage(stream, this.opts.config.spoolDir).catch((err: Error) => {
      log.error({ err }, 'could not spool the message');
      throw replyError({ code: 451, enhanced: '4.3.0', message: `Local error while receiving (ref ${ref}), try again later` });
    });
    // Every line about this message carries Postfix's queue id (mail:logs --queue-id).
    const qid = postfixQueueId(spool.head);
    if (qid) log = log.child({ qid });
    try {
      if (stream.sizeExceeded) {
        // smtp-server answers 552 for every recipient itself; nothing was relayed.
        return [];
      }
      const envelope: Envelope = {
        mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        mailParams: mailParams(session),
        recipients: session.envelope.rcptTo.map((r) => ({ address: r.address })),
      };
      let outcome: DeliveryOutcome;
      try {
        outcome = await this.opts.delivery.deliver(envelope, spool, log);
      } catch (err) {
        log.error({ err }, 'delivery failed; every recipient gets 451');
        this.opts.metrics?.failed.inc();
        throw replyError({ code: 451, enhanced: '4.3.0', message: `Local error in processing (ref ${ref}), try again later` });
      }
      const seconds = (performance.now() - started) / 1000;
      this.opts.metrics?.observe(outcome, seconds);
      log.info(
        {
          from: envelope.mailFrom,
          rcpts: envelope.recipients.map((r, i) => `${r.address}=${outcome.replies[i]!.code}`),
          size: spool.size,
          sha256: spool.sha256.slice(0, 16),
          duplicates: outcome.duplicates,
          index: outcome.index,
          ms: Math.round(seconds * 1000),
        },
        'delivered',
      );
      return outcome.replies.map((r) => (r.code >= 200 && r.code < 300 ? `${r.enhanced ?? '2.0.0'} ${r.message}` : replyError(r)));
    } finally {
      await spool.remove();
    }
  }

  async listen(): Promise<string> {
    await prepareSpoolDir(this.opts.config.spoolDir);
    const addr = parseListen(this.opts.config.listen);
    if (addr.kind === 'unix') await prepareSocketPath(addr.path);
    await new Promise<void>((resolve, reject) => {
      this.server.server.once('error', reject);
      const done = () => {
        this.server.server.off('error', reject);
        resolve();
      };
      if (addr.kind === 'unix') this.server.listen(addr.path, done);
      else this.server.listen(addr.port, addr.host, done);
    });
    if (addr.kind === 'unix') {
      await chmod(addr.path, parseInt(this.opts.config.socketMode, 8));
      this.address = formatListen(addr);
    } else {
      const bound = this.server.server.address();
      this.address = formatListen({ kind: 'tcp', host: addr.host, port: typeof bound === 'object' && bound ? bound.port : addr.port });
    }
    return this.address;
  }

  get listenAddress(): string {
    return this.address;
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Connections with no transaction in progress (Postfix's cached ones) are told 421 at once.
    for (const connection of this.server.connections) {
      const session = (connection as unknown as { session?: SMTPServerSession }).session;
      const busy = session !== undefined && [...this.inFlight.keys()].some((k) => k.startsWith(`${session.id}.`));
      if (!busy) {
        connection.send(421, 'Server shutting down');
        connection.close();
      }
    }
    await Promise.allSettled([...this.inFlight.values()]);
    await closed;
  }
}
