/**
 * DKIM signing of outbound mail (RFC 6376; Ed25519 per RFC 8463), as OpenDKIM's signer does.
 *
 * Who is signed: clients that authenticated (Postfix's `{auth_authen}` macro at MAIL), local
 * submission (a unix-socket or sendmail client), and clients in `networks`. What is signed: mail
 * whose RFC 5322 From domain we hold keys for, one signature per configured algorithm (RSA and
 * Ed25519 side by side, so verifiers without Ed25519 still see a valid RSA one), relaxed/relaxed,
 * the configured header fields, with `oversign` fields listed once more than they occur.
 *
 * The decision is made at the first body chunk (or at end of message for an empty body), when the
 * headers are complete. The message then streams through mailauth's signer as it arrives; nothing
 * is buffered beyond the signer's backpressure. The signatures go on top of the message
 * (INSHEADER at index 0), above every field they cover, where trace fields belong.
 */
import { finished } from 'node:stream/promises';
import type { DkimSignConfig } from '../../core/config/schema.ts';
import { cidrMatcher } from '../../core/net/cidr.ts';
import type { DkimKey, KeyStore } from '../dkim/key-store.ts';
import { fromDomain } from '../dkim/from-domain.ts';
import { MessageSigner } from '../dkim/signer.ts';
import { Action, Family } from '../protocol/constants.ts';
import type { Modification } from '../protocol/responses.ts';
import { MessageStream, stateOf } from './message-stream.ts';
import { wholeMessageCheck, type Check, type CheckContext, type MessageState } from './types.ts';

export const DKIM_SIGNATURE = 'DKIM-Signature';

export interface DkimSignDeps {
  keys: KeyStore;
}

type SignState =
  | { kind: 'skip'; summary: string }
  | {
      kind: 'sign';
      domain: string;
      keys: DkimKey[];
      stream: MessageStream;
      signer: MessageSigner;
      /** Settles when the signer has read everything; never rejects (failures are in `error`). */
      done: Promise<void>;
      error?: Error;
    };

const NAME = 'dkim-sign';

export function dkimSignCheck(cfg: DkimSignConfig, deps: DkimSignDeps): Check {
  const inNetworks = cidrMatcher(cfg.networks);

  /** Why this client may have its mail signed, or undefined. */
  const submitter = (m: MessageState): string | undefined => {
    const user = m.macro('{auth_authen}');
    if (user) return `authenticated as ${user}`;
    const info = m.connection.info;
    if (info?.family === Family.UNIX || info?.family === Family.UNKNOWN) return 'local submission';
    if (info && inNetworks(info.address)) return `client ${info.address}`;
    return undefined;
  };

  const decide = (m: MessageState): SignState => {
    if (!submitter(m)) return { kind: 'skip', summary: 'skipped (not authenticated)' };
    const from = fromDomain(m.headers);
    if ('skip' in from) return { kind: 'skip', summary: `skipped (${from.skip})` };
    const keys = deps.keys.keysFor(from.domain);
    if (keys.length === 0) return { kind: 'skip', summary: `skipped (no key for ${from.domain})` };
    const signer = new MessageSigner({ keys, headers: cfg.headers, oversign: cfg.oversign });
    const stream = new MessageStream();
    const state: SignState = { kind: 'sign', domain: from.domain, keys, stream, signer, done: Promise.resolve() };
    stream.stream.pipe(signer.writable);
    state.done = finished(signer.writable).catch((err: Error) => {
      state.error = err;
      stream.destroy(); // unblock a writer waiting for drain
    });
    return state;
  };

  const release = (state: SignState | undefined) => {
    if (state?.kind !== 'sign') return;
    state.stream.destroy();
    state.signer.writable.destroy();
  };

  return {
    name: NAME,
    actions: Action.ADDHDRS,
    ...wholeMessageCheck(cfg),

    async body(ctx: CheckContext, chunk: Buffer) {
      const state = stateOf(ctx.message, NAME, () => decide(ctx.message));
      if (state.kind !== 'sign' || state.error) return;
      await state.stream.write(ctx.message, chunk);
    },

    async endOfMessage(ctx) {
      const m = ctx.message;
      const state = stateOf(m, NAME, () => decide(m));
      if (state.kind === 'skip') return { summary: state.summary };
      const onAbort = () => release(state);
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      try {
        if (!state.error) await state.stream.end(m);
        await state.done;
      } finally {
        ctx.signal.removeEventListener('abort', onAbort);
      }
      if (state.error) throw new Error(`DKIM signing failed for ${state.domain}: ${state.error.message}`);
      const { signatures, errors } = state.signer.result();
      for (const e of errors) {
        ctx.log.warn({ check: NAME, domain: state.domain, algorithm: e.algorithm, reason: e.message, ref: m.messageId }, 'DKIM signature failed');
      }
      if (signatures.length === 0) throw new Error(`DKIM signing failed for ${state.domain}: ${errors.map((e) => e.message).join('; ')}`);
      // Each insert at index 0 lands above the previous one: insert in reverse to keep our order.
      const modifications: Modification[] = signatures
        .map((s): Modification => ({ kind: 'insheader', index: 0, name: DKIM_SIGNATURE, value: s.value }))
        .reverse();
      const selector = state.keys[0]!.selector;
      return { modifications, summary: `signed ${state.domain} s=${selector} ${signatures.map((s) => s.algorithm).join('+')}` };
    },

    abort(message) {
      release(message.checkState.get(NAME) as SignState | undefined);
    },
  };
}
