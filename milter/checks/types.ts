/** The contract for a milter check: optional hooks per stage, run in order by the pipeline. */
import type { Logger } from '../../core/log.ts';
import type { FailureVerdict } from '../../core/config/schema.ts';
import type { ConnectInfo } from '../handler.ts';
import type { HeaderField } from '../headers.ts';
import type { Modification, Verdict } from '../protocol/responses.ts';

/** What is known about the message so far; rebuilt fresh for every message. */
export interface MessageState {
  readonly connId: string;
  /** `connId.N`: the Nth message on this connection; goes into logs and reply texts. */
  readonly messageId: string;
  connection: { info?: ConnectInfo; helo?: string };
  sender?: string;
  senderArgs: string[];
  recipients: string[];
  headers: HeaderField[];
  bodyBytes: number;
  /** Per-check state for this message only (a check keys it by its name). */
  checkState: Map<string, unknown>;
  /** Checks that failed while reading the body, with the verdict that failure stands for. */
  failedChecks?: Map<string, Verdict>;
  macro(name: string): string | undefined;
  readonly queueId: string | undefined;
}

export interface CheckOutcome {
  check: string;
  verdict: Verdict;
  summary?: string;
  failed?: boolean;
  /** How long the check took at this stage, in milliseconds. */
  ms?: number;
}

export interface CheckContext {
  readonly message: MessageState;
  readonly log: Logger;
  /** Aborted when the check times out or the connection goes away. */
  readonly signal: AbortSignal;
  /** Outcomes of the checks that already ran at this stage, in order. */
  readonly outcomes: readonly CheckOutcome[];
  /** Modifications earlier checks asked for at this end of message. */
  readonly modifications: readonly Modification[];
}

export interface CheckResult {
  verdict?: Verdict;
  modifications?: Modification[];
  /** A short note for the trace header and logs, e.g. "spf=pass". */
  summary?: string;
}

type Hook<A extends unknown[] = []> = (ctx: CheckContext, ...args: A) => Promise<CheckResult | void> | CheckResult | void;

export interface Check {
  readonly name: string;
  /** Milliseconds before the check is abandoned; default milter.checks.defaultTimeoutMs. */
  readonly timeoutMs?: number;
  /** What a failure or timeout turns into; default milter.checks.defaultOnError. */
  readonly onError?: FailureVerdict;
  /** SMFIF_* actions the check may use. */
  readonly actions?: number;
  /**
   * What the check reads, so the MTA must send it. Stages no check reads or hooks are negotiated
   * away (SMFIP_NO*): Postfix then skips those commands, which is most of its per-milter cost.
   */
  readonly wantsConnection?: boolean; // CONNECT and HELO
  readonly wantsEnvelope?: boolean; // MAIL and RCPT
  readonly wantsHeaders?: boolean;
  readonly wantsBody?: boolean;
  connect?: Hook;
  helo?: Hook;
  envFrom?: Hook;
  envRcpt?: Hook<[recipient: string]>;
  endOfHeaders?: Hook;
  /** Body chunks as they stream; no verdict here, decide at endOfMessage. */
  body?(ctx: CheckContext, chunk: Buffer): void | Promise<void>;
  endOfMessage?: Hook;
  /** The message ended without end of message (ABORT, an earlier verdict, a lost connection): free its state. */
  abort?(message: MessageState): void;
}

export type CheckStage = 'connect' | 'helo' | 'envFrom' | 'envRcpt' | 'endOfHeaders' | 'endOfMessage';

/**
 * What a check that hands the whole message to a library or daemon (mailauth, clamd, the DKIM
 * signer) declares: it reads every stage, with its configured deadline and failure verdict.
 */
export function wholeMessageCheck(cfg: { timeoutMs?: number | undefined; onError?: FailureVerdict | undefined }) {
  return {
    wantsConnection: true,
    wantsEnvelope: true,
    wantsHeaders: true,
    wantsBody: true,
    ...(cfg.timeoutMs ? { timeoutMs: cfg.timeoutMs } : {}),
    ...(cfg.onError ? { onError: cfg.onError } : {}),
  } as const;
}
