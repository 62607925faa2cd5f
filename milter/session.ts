/**
 * One MTA connection. The session owns the socket, the codec, the negotiated options, the macros
 * and the timers; it hands the handler one command at a time and never dispatches the next frame
 * before the handler's answer for this one has settled.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../core/log.ts';
import type { MilterHandler, MilterHandlerFactory, Stage, StageContext } from './handler.ts';
import type { MilterMetrics } from './metrics.ts';
import { parseCommand, type Command } from './protocol/commands.ts';
import { Cmd, Proto } from './protocol/constants.ts';
import { MilterProtocolError } from './protocol/errors.ts';
import { FrameDecoder, type RawFrame } from './protocol/framing.ts';
import { COMMAND_STAGE, NO_REPLY_FLAG, negotiate, type Negotiated } from './protocol/negotiate.ts';
import { encodeResponse, type Modification, type Verdict } from './protocol/responses.ts';
import { encodeEndOfMessage } from './end-of-message.ts';
import { MacroStore } from './macros.ts';

export interface SessionOptions {
  connId: string;
  maxFrameBytes: number;
  idleTimeoutMs: number;
  progressIntervalMs: number;
  /** Negotiate SMFIP_NR_* for the stages the handler never answers (config `milter.noReply`). */
  useNoReply: boolean;
  /**
   * Answer every received segment that needs no reply with SMFIR_PROGRESS (for TCP). Postfix
   * leaves Nagle on for milter connections and writes the macro packet, each no-reply command and
   * the next command as separate small packets: each waits for the ACK of the one before, which
   * the kernel delays ~40 ms when no data goes back. Postfix skips PROGRESS frames while it waits
   * for a reply (milter8_event: SMFIR_PROGRESS → continue), so this only hurries the ACK.
   * libmilter-style MTAs (Sendmail, miltertest) read exactly one reply per command, so this is
   * done only once the `v` macro has shown the MTA is Postfix.
   */
  ackSegments: boolean;
  log: Logger;
  metrics: MilterMetrics;
}

/** Frames queued beyond this pause the socket (Postfix streams headers and body under NR_*). */
const MAX_QUEUED_FRAMES = 64;

const PROGRESS_FRAME = encodeResponse({ kind: 'progress' });
const CONTINUE_FRAME = encodeResponse({ kind: 'continue' });

type StageReply = Verdict | { kind: 'skip' };


const FINAL_VERDICTS = new Set(['accept', 'reject', 'tempfail', 'discard', 'replycode']);

export class MilterSession {
  readonly connId: string;
  private readonly decoder: FrameDecoder;
  private handler: MilterHandler;
  private negotiated: Negotiated | undefined;
  private readonly macros = new MacroStore();
  /** Frames waiting for the handler, in order; a protocol error found while framing goes last. */
  private readonly queue: Array<RawFrame | MilterProtocolError> = [];
  private running = false;
  private closed = false;
  private inMessage = false;
  private drainAfterMessage = false;
  private qid: string | undefined;
  /** Set from the `v` macro ("Postfix 3.7.11"): Postfix skips PROGRESS at every stage. */
  private mtaIsPostfix = false;
  private reconnects = 0;
  /** Frames arrived that nobody answers: owe the MTA an ACK-carrying PROGRESS (see ackSegments). */
  private owesAck = false;
  private readonly abort = new AbortController();
  private readonly ctx: StageContext;
  private log: Logger;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    private readonly socket: Socket,
    private readonly factory: MilterHandlerFactory,
    private readonly opts: SessionOptions,
  ) {
    this.connId = opts.connId;
    this.log = opts.log;
    this.decoder = new FrameDecoder(opts.maxFrameBytes);
    this.handler = factory(this.connId);
    this.closedPromise = new Promise((r) => (this.resolveClosed = r));
    const session = this;
    this.ctx = {
      connId: this.connId,
      macro: (name) => session.macro(name),
      get log() {
        return session.log;
      },
      signal: this.abort.signal,
      get headerLeadingSpace() {
        return ((session.negotiated?.protocol ?? 0) & Proto.HDR_LEADSPC) !== 0;
      },
    };
    // Milter traffic is many small request/response pairs: Nagle plus delayed ACK would stall each.
    socket.setNoDelay(true);
    socket.setTimeout(opts.idleTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('timeout', () => this.onIdle());
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'socket error'));
    socket.on('close', () => this.finish());
    opts.metrics.sessionOpened();
  }

  /** Resolves when the connection is gone. */
  get done(): Promise<void> {
    return this.closedPromise;
  }

  get busy(): boolean {
    return this.inMessage || this.running;
  }

  /** Graceful stop: close now if idle, otherwise right after the current message's final answer. */
  drain(): void {
    if (!this.inMessage && !this.running) this.close('shutdown');
    else this.drainAfterMessage = true;
  }

  /** Close after flushing what we wrote (a final reply must still reach the MTA). */
  close(reason: string): void {
    if (this.closed) return;
    this.log.debug({ reason }, 'closing milter connection');
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
    this.finish();
  }

  /** Drop the connection at once: protocol errors, idle timeouts, forced shutdown. */
  destroy(reason: string): void {
    if (this.closed) return;
    this.log.debug({ reason }, 'dropping milter connection');
    this.socket.destroy();
    this.finish();
  }

  macro(name: string): string | undefined {
    return this.macros.get(name);
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    let answered = false;
    let frames: RawFrame[];
    let failure: MilterProtocolError | undefined;
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof MilterProtocolError)) throw err;
      // The frames before the bad one still count (a macro with the queue id, say); then we close.
      frames = err.framesBefore;
      failure = err;
    }
    for (const frame of frames) {
      this.queue.push(frame);
      answered ||= this.expectsReply(frame.code);
    }
    if (failure) this.queue.push(failure);
    if (!answered) this.owesAck = true;
    if (this.queue.length > MAX_QUEUED_FRAMES) this.socket.pause();
    if (!this.running) void this.run();
  }

  /** Whether the MTA waits for our answer to this command (so our reply will carry the ACK). */
  private expectsReply(code: number): boolean {
    const stage = COMMAND_STAGE[code];
    if (stage) return !this.negotiated || (this.negotiated.protocol & NO_REPLY_FLAG[stage]) === 0;
    return code === Cmd.BODYEOB || code === Cmd.OPTNEG;
  }

  private onIdle(): void {
    // A handler still working is not idle: the MTA is waiting for us (PROGRESS keeps it waiting).
    if (this.running) return;
    this.log.info({ idleMs: this.opts.idleTimeoutMs }, 'idle milter connection timed out');
    this.opts.metrics.error('idle_timeout');
    this.destroy('idle timeout');
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const frame = this.queue.shift()!;
        if (frame instanceof MilterProtocolError) {
          this.protocolError(frame);
          return;
        }
        let cmd: Command;
        try {
          cmd = parseCommand(frame);
        } catch (err) {
          this.protocolError(err);
          return;
        }
        const pending = this.dispatch(cmd);
        if (pending) await pending;
        if (this.queue.length <= MAX_QUEUED_FRAMES / 2 && this.socket.isPaused()) this.socket.resume();
      }
      if (this.owesAck && this.opts.ackSegments && this.mtaIsPostfix && !this.closed) this.socket.write(PROGRESS_FRAME);
      this.owesAck = false;
    } catch (err) {
      if (err instanceof MilterProtocolError) this.protocolError(err);
      else {
        this.log.error({ err }, 'milter session failed');
        this.opts.metrics.error('internal');
        this.destroy('internal error');
      }
    } finally {
      this.running = false;
    }
    if (this.drainAfterMessage && !this.inMessage) this.close('shutdown');
  }

  private protocolError(err: unknown): void {
    const reason = err instanceof MilterProtocolError ? err.message : String(err);
    this.log.warn({ reason }, 'milter protocol error, closing connection'); // this.log carries qid once known
    this.opts.metrics.error('protocol');
    this.destroy('protocol error');
  }

  private dispatch(cmd: Command): void | Promise<void> {
    if (cmd.kind === 'optneg') return this.onOptneg(cmd);
    if (!this.negotiated) throw new MilterProtocolError('command before negotiation', cmd.kind);
    const h = this.handler;
    const ctx = this.ctx;
    switch (cmd.kind) {
      case 'macro':
        return this.onMacro(cmd.forCommand, cmd.macros);
      case 'connect':
        return this.answer('connect', () => h.connect(ctx, cmd));
      case 'helo':
        return this.answer('helo', () => h.helo(ctx, cmd.hostname));
      case 'mail':
        this.startMessage();
        return this.answer('mail', () => h.envFrom(ctx, cmd.sender, cmd.args));
      case 'rcpt':
        this.startMessage();
        return this.answer('rcpt', () => h.envRcpt(ctx, cmd.recipient, cmd.args));
      case 'data':
        this.startMessage();
        return this.answer('data', () => h.data(ctx));
      case 'header':
        this.startMessage();
        return this.answer('header', () => h.header(ctx, cmd.name, cmd.value));
      case 'eoh':
        this.startMessage();
        return this.answer('eoh', () => h.endOfHeaders(ctx));
      case 'body':
        this.startMessage();
        return this.answer('body', () => h.body(ctx, cmd.chunk));
      case 'eom':
        this.startMessage();
        return this.onEndOfMessage(cmd.chunk);
      case 'unknown':
        return this.answer('unknown', () => h.unknown(ctx, cmd.command));
      case 'abort':
        h.abort(ctx);
        this.endMessage();
        return;
      case 'quit':
        this.close('quit');
        return;
      case 'quitNewConnection':
        // Same socket, new SMTP connection: fresh handler and macros, negotiation kept.
        this.handler.close(ctx);
        this.endMessage();
        this.macros.clear();
        // A new SMTP connection: its own id, so message refs (`id.N`) never repeat.
        this.handler = this.factory(`${this.connId}-${++this.reconnects}`);
        return;
    }
  }

  private onOptneg(cmd: Extract<Command, { kind: 'optneg' }>): void {
    if (this.negotiated) throw new MilterProtocolError('repeated negotiation');
    const { reply, negotiated } = negotiate(cmd, this.handler.needs, this.opts.useNoReply);
    this.negotiated = negotiated;
    this.log.debug({ mta: cmd, negotiated }, 'negotiated');
    this.socket.write(encodeResponse(reply));
  }

  private onMacro(forCommand: number, pairs: Array<[string, string]>): void {
    this.macros.add(forCommand, pairs);
    for (const [name, value] of pairs) if (name === 'v' && value.startsWith('Postfix')) this.mtaIsPostfix = true;
    const qid = this.macros.get('i');
    if (qid && qid !== this.qid) {
      this.qid = qid;
      this.log = this.opts.log.child({ qid });
    }
  }

  /** The first message-stage command starts a message: with SMFIP_NOMAIL that is a header or EOM. */
  private startMessage(): void {
    if (this.inMessage) return;
    this.inMessage = true;
    this.opts.metrics.messageStarted();
  }

  private endMessage(): void {
    this.inMessage = false;
    this.macros.endMessage();
    if (this.qid) {
      this.qid = undefined;
      this.log = this.opts.log;
    }
  }

  /** Run one stage, keeping the MTA informed with PROGRESS while it runs long. */
  private async withProgress<T>(call: () => T | Promise<T>): Promise<T> {
    const result = call();
    if (!(result instanceof Promise)) return result;
    const timer = setInterval(() => {
      if (!this.closed) this.socket.write(encodeResponse({ kind: 'progress' }));
    }, this.opts.progressIntervalMs);
    try {
      return await result;
    } finally {
      clearInterval(timer);
    }
  }

  /**
   * Run one stage and send its reply. A handler that answers synchronously (the common case: a
   * header no check hooks) is handled without a promise, so the next frame follows at once.
   */
  private answer(stage: Stage, call: () => StageReply | Promise<StageReply>): void | Promise<void> {
    let result: StageReply | Promise<StageReply>;
    try {
      result = call();
    } catch (err) {
      return this.reply(stage, this.handlerFailed(err, stage));
    }
    if (!(result instanceof Promise)) return this.reply(stage, result);
    return this.withProgress(() => result).then(
      (r) => this.reply(stage, r),
      (err: unknown) => this.reply(stage, this.handlerFailed(err, stage)),
    );
  }

  private handlerFailed(err: unknown, stage: string): Verdict {
    this.log.error({ err, stage }, 'handler failed; answering tempfail');
    this.opts.metrics.error('handler');
    return { kind: 'tempfail' };
  }

  private reply(stage: Stage, answer: StageReply): void {
    if (this.closed) return;
    let reply = answer;
    if (reply.kind === 'skip' && !(this.negotiated!.protocol & Proto.SKIP)) reply = { kind: 'continue' };
    if ((this.negotiated!.protocol & NO_REPLY_FLAG[stage]) !== 0) {
      if (reply.kind !== 'continue') this.log.warn({ stage, reply: reply.kind }, 'verdict at a no-reply stage dropped');
      return;
    }
    this.socket.write(reply.kind === 'continue' ? CONTINUE_FRAME : encodeResponse(reply));
    // A final verdict ends the message (at RCPT it only concerns that recipient).
    if (FINAL_VERDICTS.has(reply.kind) && stage !== 'rcpt' && this.inMessage) {
      this.opts.metrics.verdict(reply.kind);
      this.handler.abort(this.ctx);
      this.endMessage();
    }
  }

  private async onEndOfMessage(chunk: Buffer): Promise<void> {
    const h = this.handler;
    if (chunk.length > 0) await this.answerless(() => h.body(this.ctx, chunk));
    const started = performance.now();
    let mods: Modification[] = [];
    let verdict: Verdict;
    try {
      const result = await this.withProgress(() => h.endOfMessage(this.ctx));
      mods = result.modifications;
      verdict = result.verdict;
    } catch (err) {
      this.log.error({ err }, 'end-of-message handler failed; answering tempfail');
      this.opts.metrics.error('handler');
      verdict = { kind: 'tempfail' };
    }
    if (this.closed) return;
    const { bytes, dropped } = encodeEndOfMessage(mods, verdict, this.negotiated!);
    for (const m of dropped) this.log.warn({ modification: m.kind }, 'modification not negotiated with the MTA; dropped');
    this.socket.write(bytes);
    this.opts.metrics.verdict(verdict.kind === 'continue' ? 'accept' : verdict.kind);
    this.opts.metrics.endOfMessageSeconds((performance.now() - started) / 1000);
    this.endMessage();
  }

  private async answerless(call: () => unknown): Promise<void> {
    try {
      await call();
    } catch (err) {
      this.log.error({ err }, 'body handler failed at end of message');
    }
  }


  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    if (this.inMessage) this.handler.abort(this.ctx);
    try {
      this.handler.close(this.ctx);
    } catch (err) {
      this.log.error({ err }, 'handler close failed');
    }
    this.opts.metrics.sessionClosed();
    this.resolveClosed();
  }
}
