/**
 * The MilterHandler that the service runs: it keeps per-message state (built fresh for every
 * message) and asks the check pipeline at each stage a check hooks. Stages no check hooks are
 * negotiated as "no reply" (or not sent at all), which saves Postfix a round trip each.
 */
import type { Logger } from '../core/log.ts';
import { CheckPipeline } from './checks/pipeline.ts';
import type { MessageState } from './checks/types.ts';
import type { BodyReply, ConnectInfo, EndOfMessageReply, HandlerNeeds, MilterHandler, Stage, StageContext } from './handler.ts';
import { MacroStage } from './protocol/constants.ts';
import type { MacroRequest, Verdict } from './protocol/responses.ts';

/**
 * Macros we ask Postfix for (SETSYMLIST); docker/postfix/milter.cf lists the same (a test keeps
 * them equal). `v` (MTA name and version) comes at every stage: the session needs to know the
 * MTA is Postfix before it answers segments with PROGRESS (see session.ts, ackSegments).
 */
export const REQUESTED_MACROS: MacroRequest = {
  [MacroStage.CONNECT]: ['j', '{daemon_name}', '{daemon_addr}', 'v', '_', '{client_addr}', '{client_port}', '{client_name}', '{client_ptr}'],
  [MacroStage.HELO]: ['v', '{tls_version}', '{cipher}', '{cipher_bits}', '{cert_subject}', '{cert_issuer}'],
  [MacroStage.ENVFROM]: ['v', 'i', '{auth_type}', '{auth_authen}', '{auth_author}', '{mail_addr}', '{mail_host}', '{mail_mailer}'],
  [MacroStage.ENVRCPT]: ['v', 'i', '{rcpt_addr}', '{rcpt_host}', '{rcpt_mailer}'],
  [MacroStage.DATA]: ['v', 'i'],
  [MacroStage.EOH]: ['v', 'i'],
  [MacroStage.EOM]: ['v', 'i'],
};

const CONTINUE: Verdict = { kind: 'continue' };

export function pipelineNeeds(pipeline: CheckPipeline): HandlerNeeds {
  const wants = (flag: 'wantsConnection' | 'wantsEnvelope' | 'wantsHeaders' | 'wantsBody') => pipeline.checks.some((c) => c[flag]);
  const skip = new Set<Stage>(['data', 'unknown']);
  if (!wants('wantsConnection') && !pipeline.hooks('connect')) skip.add('connect');
  if (!wants('wantsConnection') && !pipeline.hooks('helo')) skip.add('helo');
  if (!wants('wantsEnvelope') && !pipeline.hooks('envFrom') && !pipeline.hooks('envRcpt')) {
    skip.add('mail');
    skip.add('rcpt');
  }
  if (!wants('wantsHeaders') && !pipeline.hooks('endOfHeaders')) skip.add('header');
  if (!pipeline.hooks('endOfHeaders')) skip.add('eoh');
  if (!wants('wantsBody') && !pipeline.hooks('body')) skip.add('body');
  const noReply = new Set<Stage>(['data', 'unknown', 'header', 'body']);
  if (!pipeline.hooks('connect')) noReply.add('connect');
  if (!pipeline.hooks('helo')) noReply.add('helo');
  if (!pipeline.hooks('envFrom')) noReply.add('mail');
  if (!pipeline.hooks('envRcpt')) noReply.add('rcpt');
  if (!pipeline.hooks('endOfHeaders')) noReply.add('eoh');
  return { actions: pipeline.actions, skip, noReply, macros: REQUESTED_MACROS };
}

export class PipelineHandler implements MilterHandler {
  private connection: MessageState['connection'] = {};
  private messages = 0;
  private message: MessageState | undefined;

  constructor(
    private readonly connId: string,
    private readonly pipeline: CheckPipeline,
    readonly needs: HandlerNeeds,
  ) {}

  private current(ctx: StageContext): MessageState {
    if (this.message) return this.message;
    const n = ++this.messages;
    this.message = {
      connId: this.connId,
      messageId: `${this.connId}.${n}`,
      connection: this.connection,
      senderArgs: [],
      recipients: [],
      headers: [],
      bodyBytes: 0,
      checkState: new Map(),
      macro: (name) => ctx.macro(name),
      get queueId() {
        return ctx.macro('i');
      },
    };
    return this.message;
  }

  private async stage(ctx: StageContext, stage: Parameters<CheckPipeline['run']>[0], ...args: unknown[]) {
    const msg = this.current(ctx);
    const result = await this.pipeline.run(stage, msg, ctx.log, ctx.signal, ...args);
    return result.verdict;
  }

  connect(ctx: StageContext, info: ConnectInfo): Promise<Verdict> | Verdict {
    this.connection.info = { hostname: info.hostname, family: info.family, port: info.port, address: info.address };
    return this.pipeline.hooks('connect') ? this.stage(ctx, 'connect') : CONTINUE;
  }

  helo(ctx: StageContext, hostname: string): Promise<Verdict> | Verdict {
    this.connection.helo = hostname;
    return this.pipeline.hooks('helo') ? this.stage(ctx, 'helo') : CONTINUE;
  }

  envFrom(ctx: StageContext, sender: string, args: string[]): Promise<Verdict> | Verdict {
    // MAIL always starts a new message; a state that connect/helo checks made (no sender yet) is
    // this message's, else those checks would use up its number and the first message be `.2`.
    if (this.message?.sender !== undefined) this.message = undefined;
    const msg = this.current(ctx);
    msg.sender = sender;
    msg.senderArgs = args;
    return this.pipeline.hooks('envFrom') ? this.stage(ctx, 'envFrom') : CONTINUE;
  }

  envRcpt(ctx: StageContext, recipient: string): Promise<Verdict> | Verdict {
    const msg = this.current(ctx);
    msg.recipients.push(recipient);
    if (!this.pipeline.hooks('envRcpt')) return CONTINUE;
    return this.stage(ctx, 'envRcpt', recipient).then((verdict) => {
      // A recipient we refused is not part of the message: Postfix drops it.
      if (verdict.kind === 'reject' || verdict.kind === 'tempfail' || verdict.kind === 'replycode') msg.recipients.pop();
      return verdict;
    });
  }

  data(): Verdict {
    return CONTINUE;
  }

  header(ctx: StageContext, name: string, value: string): Verdict {
    const v = ctx.headerLeadingSpace && value.startsWith(' ') ? value.slice(1) : value;
    // Without HDR_LEADSPC the MTA dropped the space after the colon; put the usual one back.
    this.current(ctx).headers.push({ name, value: v, raw: ctx.headerLeadingSpace ? value : ` ${value}` });
    return CONTINUE;
  }

  endOfHeaders(ctx: StageContext): Promise<Verdict> | Verdict {
    return this.pipeline.hooks('endOfHeaders') ? this.stage(ctx, 'endOfHeaders') : CONTINUE;
  }

  async body(ctx: StageContext, chunk: Buffer): Promise<BodyReply> {
    const msg = this.current(ctx);
    msg.bodyBytes += chunk.length;
    if (this.pipeline.hooks('body')) await this.pipeline.body(msg, ctx.log, ctx.signal, chunk);
    return CONTINUE;
  }

  async endOfMessage(ctx: StageContext): Promise<EndOfMessageReply> {
    const msg = this.current(ctx);
    const started = performance.now();
    try {
      const result = await this.pipeline.run('endOfMessage', msg, ctx.log, ctx.signal);
      logVerdict(ctx.log, msg, result.verdict, result.outcomes.length, performance.now() - started);
      const final = result.verdict.kind !== 'continue' && result.verdict.kind !== 'accept';
      return { modifications: final ? [] : result.modifications, verdict: result.verdict };
    } finally {
      // Checks after a final verdict never ran their end of message: release what they hold
      // (an open clamd scan, a stream into mailauth) now rather than at their timeout.
      this.dropMessage();
    }
  }

  unknown(): Verdict {
    return CONTINUE;
  }

  abort(): void {
    this.dropMessage();
  }

  close(): void {
    this.dropMessage();
  }

  /** The message ended without end of message (ABORT, a final verdict, a lost connection). */
  private dropMessage(): void {
    if (this.message) this.pipeline.abort(this.message);
    this.message = undefined;
  }
}

function logVerdict(log: Logger, msg: MessageState, verdict: Verdict, checks: number, ms: number): void {
  log.info(
    {
      ref: msg.messageId,
      from: msg.sender,
      rcpts: msg.recipients.length,
      bodyBytes: msg.bodyBytes,
      // What the MTA is told: the session answers `continue` at end of message as accept.
      verdict: verdict.kind === 'replycode' ? verdict.reply : verdict.kind === 'continue' ? 'accept' : verdict.kind,
      checks,
      ms: Math.round(ms * 100) / 100,
    },
    'message verdict',
  );
}
