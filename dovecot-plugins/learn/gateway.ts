/**
 * The learn gateway: the unix socket Dovecot's vnd.dovecot.pipe connects to (sieve_pipe_socket_dir)
 * instead of forking `ceerion-learn` for every moved message. One connection per message:
 * header (script-codec.ts), the message until EOF, then our `+\n` and close.
 *
 * A user's move waits for this answer, so it must come fast and always be `+`: the message is
 * handed to the sink (queue, or the spool while Redis is down) and anything that goes wrong (too
 * large, malformed, no user, sink down) is logged and still answered `+`. Training is best effort;
 * the move is not. Garbage that is not the script protocol at all gets `-` and a close.
 */
import { chmod, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { silentLogger, type Logger } from '../../core/log.ts';
import { checkClass, checkUser, LearnJobError, type LearnJob } from './job.ts';
import { parseScriptHeader, SCRIPT_FAILURE, SCRIPT_SUCCESS, ScriptProtocolError, type ScriptRequest } from './script-codec.ts';

/** Where a received job goes; resolves with what happened to it, for the log. */
export interface LearnSink {
  accept(job: LearnJob): Promise<'queued' | 'spooled'>;
}

export interface GatewayOptions {
  socket: string;
  socketMode: string;
  sink: LearnSink;
  maxMessageBytes: number;
  maxHeaderBytes: number;
  idleTimeoutMs: number;
  log?: Logger;
  now?: () => number;
}

export type GatewayOutcome = 'queued' | 'spooled' | 'too-large' | 'invalid' | 'sink-failed' | 'protocol-error' | 'timeout';

/** One Dovecot pipe request: owns the socket, the read state and the idle timer. */
class GatewaySession {
  private header: Buffer[] = [];
  private headerBytes = 0;
  private request: ScriptRequest | undefined;
  private body: Buffer[] = [];
  private bodyBytes = 0;
  private timer: NodeJS.Timeout;
  private done = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly opts: GatewayOptions,
    private readonly log: Logger,
    private readonly onOutcome: (o: GatewayOutcome) => void,
  ) {
    this.timer = setTimeout(() => this.finish('timeout', SCRIPT_FAILURE, 'no data from Dovecot within the idle timeout'), opts.idleTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => void this.onEnd());
    socket.on('error', (err) => this.finish('protocol-error', null, `socket error: ${err.message}`));
  }

  private onData(chunk: Buffer): void {
    if (this.done) return;
    this.timer.refresh();
    if (this.request) return this.addBody(chunk);
    this.header.push(chunk);
    this.headerBytes += chunk.length;
    const buf = this.header.length === 1 ? this.header[0]! : Buffer.concat(this.header, this.headerBytes);
    this.header = [buf];
    try {
      const parsed = parseScriptHeader(buf, this.opts.maxHeaderBytes);
      if (!parsed) return;
      this.request = parsed.request;
      this.header = [];
      this.addBody(buf.subarray(parsed.bodyOffset));
    } catch (err) {
      if (!(err instanceof ScriptProtocolError)) throw err;
      this.finish('protocol-error', SCRIPT_FAILURE, err.message);
    }
  }

  private addBody(chunk: Buffer): void {
    this.bodyBytes += chunk.length;
    // Past the limit keep counting (the size goes in the log) but stop keeping.
    if (this.bodyBytes <= this.opts.maxMessageBytes) this.body.push(chunk);
  }

  private async onEnd(): Promise<void> {
    if (this.done) return;
    if (!this.request) return this.finish('protocol-error', SCRIPT_FAILURE, 'connection ended inside the request header');
    const req = this.request;
    const user = req.env.USER ?? '';
    const fields = { user, args: req.args, bytes: this.bodyBytes };
    if (this.bodyBytes > this.opts.maxMessageBytes) return this.finish('too-large', SCRIPT_SUCCESS, `message of ${this.bodyBytes} bytes is over learn.maxMessageBytes; not learned`, fields);
    let job: LearnJob;
    try {
      if (this.bodyBytes === 0) throw new LearnJobError('no message');
      job = {
        cls: checkClass(req.args[0] ?? ''),
        user: checkUser(user),
        message: Buffer.concat(this.body, this.bodyBytes),
        source: 'pipe',
        receivedAt: (this.opts.now ?? Date.now)(),
      };
    } catch (err) {
      if (!(err instanceof LearnJobError)) throw err;
      return this.finish('invalid', SCRIPT_SUCCESS, `not learned: ${err.message}`, fields);
    }
    this.body = [];
    try {
      const where = await this.opts.sink.accept(job);
      this.finish(where, SCRIPT_SUCCESS, null, { ...fields, cls: job.cls });
    } catch (err) {
      this.finish('sink-failed', SCRIPT_SUCCESS, `training lost: ${(err as Error).message}`, fields);
    }
  }

  private finish(outcome: GatewayOutcome, answer: Buffer | null, problem: string | null, fields: Record<string, unknown> = {}): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.body = [];
    this.onOutcome(outcome);
    if (problem) this.log.warn({ outcome, ...fields }, problem);
    else this.log.debug({ outcome, ...fields }, 'learn request taken');
    if (answer && this.socket.writable) this.socket.end(answer);
    else this.socket.destroy();
  }
}

export class LearnGateway {
  private readonly server: net.Server;
  private readonly log: Logger;
  readonly outcomes = new Map<GatewayOutcome, number>();
  private lastRequestAt = 0;
  private open = 0;

  constructor(private readonly opts: GatewayOptions) {
    this.log = opts.log ?? silentLogger;
    // allowHalfOpen: Dovecot shuts down its side after the message and then reads our answer.
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => {
      this.open++;
      this.lastRequestAt = performance.now();
      socket.once('close', () => {
        this.open--;
        this.lastRequestAt = performance.now();
      });
      new GatewaySession(socket, opts, this.log, (o) => this.outcomes.set(o, (this.outcomes.get(o) ?? 0) + 1));
    });
  }

  /** A request is open or one ended within `quietMs`: Dovecot is in the middle of a MOVE. */
  busy(quietMs = 30): boolean {
    return this.open > 0 || performance.now() - this.lastRequestAt < quietMs;
  }

  /** Listens on the socket (replacing a stale one), mode as configured. */
  async start(): Promise<void> {
    const file = this.opts.socket;
    await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
    await unlink(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(file, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    await chmod(file, parseInt(this.opts.socketMode, 8));
    this.log.info({ socket: file }, 'learn gateway listening');
  }

  /**
   * Removes the socket first, so Dovecot falls back to the spooling program at once, then lets
   * requests in flight finish.
   */
  async stop(): Promise<void> {
    await unlink(this.opts.socket).catch(() => undefined);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
