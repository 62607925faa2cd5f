/**
 * A milter client: speaks the MTA side of the protocol. Tests, the benchmark and later issues use
 * it to drive `ceerion milter` (or any milter) over TCP or a unix socket. It honours the
 * negotiated NO_* / NR_* flags exactly as Postfix does: skipped stages are not sent, no-reply
 * stages are sent without waiting.
 */
import net from 'node:net';
import { parseListen, type ListenAddress } from '../../core/listen.ts';
import { encodeCommand, type Command, type Macros } from '../protocol/commands.ts';
import { ALL_ACTIONS, Cmd, Family, MILTER_VERSION, Proto, type FamilyCode } from '../protocol/constants.ts';
import { FrameDecoder } from '../protocol/framing.ts';
import { COMMAND_STAGE, NO_REPLY_FLAG, SKIP_FLAG } from '../protocol/negotiate.ts';
import { parseResponse, type Modification, type Response, type Verdict } from '../protocol/responses.ts';
import type { Stage } from '../handler.ts';

/** Everything Postfix 3.x offers. */
export const POSTFIX_OFFER = {
  version: MILTER_VERSION,
  actions: ALL_ACTIONS,
  protocol: 0x1fffff & ~Proto.RCPT_REJ,
};

export interface Negotiated {
  version: number;
  actions: number;
  protocol: number;
  macros: Partial<Record<number, string[]>>;
}

/** The final answer to a stage, with the modifications and PROGRESS frames that came before it. */
export interface StageAnswer {
  response: Response;
  modifications: Modification[];
  progress: number;
}

export interface MessageSpec {
  connect?: { hostname: string; family: FamilyCode; port: number; address: string };
  helo?: string;
  from: string;
  rcpts: string[];
  headers: Array<[string, string]>;
  body: Buffer | string;
  macros?: Partial<Record<'connect' | 'helo' | 'mail' | 'rcpt' | 'eoh' | 'eom', Macros>>;
}

export interface MessageResult {
  /** The verdict that ended the message (a non-continue at an earlier stage, or end of message). */
  verdict: Response;
  stage: string;
  modifications: Modification[];
  progress: number;
}

type Waiter = { resolve: (a: StageAnswer) => void; reject: (e: Error) => void; mods: Modification[]; progress: number };

export class MilterClient {
  private readonly decoder = new FrameDecoder(64 * 1024 * 1024);
  private readonly waiters: Waiter[] = [];
  private error: Error | undefined;
  negotiated: Negotiated | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('milter closed the connection')));
  }

  static connect(address: string | ListenAddress, timeoutMs = 5000): Promise<MilterClient> {
    const addr = typeof address === 'string' ? parseListen(address) : address;
    return new Promise((resolve, reject) => {
      const socket = addr.kind === 'unix' ? net.connect(addr.path) : net.connect(addr.port, addr.host);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to milter timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      // A refused connection must clear the timer too, or it keeps the process alive for timeoutMs.
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', onError);
        resolve(new MilterClient(socket));
      });
      socket.once('error', onError);
    });
  }

  get closed(): boolean {
    return this.error !== undefined;
  }

  private onData(chunk: Buffer): void {
    try {
      for (const frame of this.decoder.push(chunk)) {
        const r = parseResponse(frame);
        const w = this.waiters[0];
        // Like Postfix, skip a PROGRESS that comes while nothing is outstanding: over TCP the
        // server acknowledges a segment of no-reply commands (an ABORT, say) with one.
        if (!w && r.kind === 'progress') continue;
        if (!w) throw new Error(`unexpected response ${r.kind} with nothing outstanding`);
        if (r.kind === 'progress') w.progress++;
        else if (isModification(r)) w.mods.push(r);
        else {
          this.waiters.shift();
          w.resolve({ response: r, modifications: w.mods, progress: w.progress });
        }
      }
    } catch (err) {
      this.fail(err as Error);
      this.socket.destroy();
    }
  }

  private fail(err: Error): void {
    this.error ??= err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  /** Send a command without waiting (macros, no-reply stages, abort). */
  send(cmd: Command): void {
    if (this.error) throw this.error;
    this.write(encodeCommand(cmd));
  }

  /**
   * Frames written in the same tick leave in one segment, as Postfix's buffered stream does
   * for no-reply commands: cork now, uncork on the next tick.
   */
  private write(bytes: Buffer): void {
    this.socket.cork();
    this.socket.write(bytes);
    process.nextTick(() => this.socket.uncork());
  }

  /** Send raw bytes (fuzzing and protocol-error tests). */
  sendRaw(bytes: Buffer): void {
    this.write(bytes);
  }

  /** Send a command and wait for its final answer. */
  request(cmd: Command): Promise<StageAnswer> {
    if (this.error) return Promise.reject(this.error);
    const p = new Promise<StageAnswer>((resolve, reject) => this.waiters.push({ resolve, reject, mods: [], progress: 0 }));
    this.write(encodeCommand(cmd));
    return p;
  }

  async negotiate(offer = POSTFIX_OFFER): Promise<Negotiated> {
    const { response } = await this.request({ kind: 'optneg', ...offer });
    if (response.kind !== 'optneg') throw new Error(`expected OPTNEG reply, got ${response.kind}`);
    this.negotiated = { version: response.version, actions: response.actions, protocol: response.protocol, macros: response.macros ?? {} };
    return this.negotiated;
  }

  skips(stage: Stage): boolean {
    return ((this.negotiated?.protocol ?? 0) & SKIP_FLAG[stage]) !== 0;
  }

  noReply(stage: Stage): boolean {
    return ((this.negotiated?.protocol ?? 0) & NO_REPLY_FLAG[stage]) !== 0;
  }

  /** One stage, as Postfix runs it: skipped if negotiated away, fire-and-forget if no-reply. */
  async stage(stage: Stage, cmd: Command): Promise<Response | undefined> {
    if (this.skips(stage)) return undefined;
    if (this.noReply(stage)) {
      this.send(cmd);
      return undefined;
    }
    return (await this.request(cmd)).response;
  }

  /** Macros go before their command, and (as Postfix does) not at all for a stage negotiated away. */
  macros(forCommand: number, macros: Macros | undefined): void {
    const stage = COMMAND_STAGE[forCommand];
    if (stage && this.skips(stage)) return;
    if (macros && macros.length > 0) this.send({ kind: 'macro', forCommand, macros });
  }

  async connectStage(spec: NonNullable<MessageSpec['connect']>, macros?: Macros): Promise<Response | undefined> {
    this.macros(Cmd.CONNECT, macros);
    return this.stage('connect', { kind: 'connect', ...spec });
  }

  async helo(hostname: string, macros?: Macros): Promise<Response | undefined> {
    this.macros(Cmd.HELO, macros);
    return this.stage('helo', { kind: 'helo', hostname });
  }

  /** MAIL through end of message; stops at the first stage verdict that is not continue. */
  async message(spec: MessageSpec): Promise<MessageResult> {
    const done = (verdict: Response, stage: string): MessageResult => ({ verdict, stage, modifications: [], progress: 0 });
    this.macros(Cmd.MAIL, spec.macros?.mail);
    let r = await this.stage('mail', { kind: 'mail', sender: spec.from, args: [] });
    if (r && r.kind !== 'continue') return done(r, 'mail');
    for (const rcpt of spec.rcpts) {
      this.macros(Cmd.RCPT, spec.macros?.rcpt);
      r = await this.stage('rcpt', { kind: 'rcpt', recipient: rcpt, args: [] });
      if (r && r.kind !== 'continue' && r.kind !== 'reject' && r.kind !== 'tempfail' && r.kind !== 'replycode') {
        return done(r, 'rcpt');
      }
    }
    r = await this.stage('data', { kind: 'data' });
    if (r && r.kind !== 'continue') return done(r, 'data');
    const lead = ((this.negotiated?.protocol ?? 0) & Proto.HDR_LEADSPC) !== 0 ? ' ' : '';
    for (const [name, value] of spec.headers) {
      r = await this.stage('header', { kind: 'header', name, value: lead + value });
      if (r && r.kind !== 'continue') return done(r, 'header');
    }
    this.macros(Cmd.EOH, spec.macros?.eoh);
    r = await this.stage('eoh', { kind: 'eoh' });
    if (r && r.kind !== 'continue') return done(r, 'eoh');
    const body = typeof spec.body === 'string' ? Buffer.from(spec.body) : spec.body;
    for (let off = 0; off < body.length && !this.skips('body'); off += 65535) {
      r = await this.stage('body', { kind: 'body', chunk: body.subarray(off, off + 65535) });
      if (r?.kind === 'skip') break;
      if (r && r.kind !== 'continue') return done(r, 'body');
    }
    this.macros(Cmd.BODYEOB, spec.macros?.eom);
    const eom = await this.request({ kind: 'eom', chunk: Buffer.alloc(0) });
    return { verdict: eom.response, stage: 'eom', modifications: eom.modifications, progress: eom.progress };
  }

  abort(): void {
    this.send({ kind: 'abort' });
  }

  /** QUIT and wait for the server to close. */
  quit(): Promise<void> {
    if (this.error) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.send({ kind: 'quit' });
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Resolves when the server closes the connection. */
  waitClosed(): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('close', () => resolve()));
  }
}


const MODIFICATIONS = new Set(['addheader', 'insheader', 'chgheader', 'addrcpt', 'addrcptPar', 'delrcpt', 'chgfrom', 'quarantine', 'replbody']);

function isModification(r: Response): r is Modification {
  return MODIFICATIONS.has(r.kind);
}

export function isFinalVerdict(r: Response): r is Verdict {
  return ['accept', 'reject', 'tempfail', 'discard', 'replycode', 'continue'].includes(r.kind);
}

/**
 * A raw CRLF message split the way an MTA hands it to a milter: header values without the space
 * after the colon, folded lines joined with "\n", and the body as bytes.
 */
export function messageFromRaw(raw: string, envelope: { from: string; rcpts: string[] }): MessageSpec {
  const at = raw.indexOf('\r\n\r\n');
  const headers = raw
    .slice(0, at)
    .split(/\r\n(?![ \t])/)
    .map((line): [string, string] => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon), line.slice(colon + 1).replace(/^ /, '').replace(/\r\n/g, '\n')];
    });
  return { ...envelope, headers, body: Buffer.from(raw.slice(at + 4), 'utf8') };
}

/** A typical connect for tests: IPv4 client. */
export const LOCAL_CONNECT = { hostname: 'client.example', family: Family.INET, port: 40000, address: '192.0.2.10' } as const;
