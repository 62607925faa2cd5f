/**
 * Inbound authentication: SPF (connect address, HELO, MAIL FROM), DKIM (every signature), DMARC
 * and ARC, by mailauth, fed by streaming the message as it arrives (never re-read). Adds one
 * Authentication-Results header (and Received-SPF) on top, after deleting any incoming result
 * header that claims our authserv-id; enforces the sender's DMARC policy as configured.
 * Authenticated clients and internal networks skip the checks (forged results are still removed).
 */
import { readFileSync } from 'node:fs';
import './key-cache.ts'; // before mailauth: see key-cache.ts
import './message-parser-patch.ts'; // mailauth's header/body split without per-byte loops
import { authenticate } from 'mailauth';
import type { Registry } from 'prom-client';
import type { AuthConfig } from '../../../core/config/schema.ts';
import type { DnsResolver } from '../../../core/dns/types.ts';
import { cidrMatcher } from '../../../core/net/cidr.ts';
import { Action } from '../../protocol/constants.ts';
import { buildReplyCode } from '../../protocol/replycode.ts';
import type { Modification } from '../../protocol/responses.ts';
import { MessageStream, stateOf } from '../message-stream.ts';
import { wholeMessageCheck, type Check, type CheckContext, type MessageState } from '../types.ts';
import { AuthMetrics } from './metrics.ts';
import { dmarcAction, forgedResultHeaders, parseHeaderBlock } from './results.ts';

/** The ARC sealing key and the recipients whose mail is sealed, or undefined when sealing is off. */
function arcSealer(c: AuthConfig['arcSeal']) {
  if (!c.enabled) return undefined;
  const privateKey = readFileSync(c.keyFile, 'utf8');
  const match = (rcpt: string) => {
    const addr = rcpt.replace(/^<|>$/g, '').toLowerCase();
    return c.recipients.some((r) => (r.startsWith('@') ? addr.endsWith(r.toLowerCase()) : addr === r.toLowerCase()));
  };
  return {
    options: { signingDomain: c.signingDomain, selector: c.selector, privateKey },
    wants: (recipients: readonly string[]) => recipients.some(match),
  };
}

export interface AuthDeps {
  resolver: DnsResolver;
  /** Our authserv-id (config auth.authservId, or the hostname). */
  authservId: string;
  registry?: Registry;
  /** For DMARC pct sampling; injectable for tests. */
  random?: () => number;
}

type AuthResult = Awaited<ReturnType<typeof authenticate>>;

interface PerMessage {
  skipped?: string;
  stream?: MessageStream;
  result?: Promise<AuthResult>;
}

const KEY = 'auth';

export function authenticationCheck(cfg: AuthConfig, deps: AuthDeps): Check {
  const internal = cidrMatcher(cfg.internalNetworks);
  const trusted = cidrMatcher(cfg.trustedRelays);
  const metrics = deps.registry ? new AuthMetrics(deps.registry) : undefined;
  const random = deps.random ?? Math.random;
  const seal = arcSealer(cfg.arcSeal);

  function start(m: MessageState): PerMessage {
    const info = m.connection.info;
    if (m.macro('{auth_authen}')) return { skipped: 'authenticated client' };
    if (!info || info.family === 'L' || info.family === 'U') return { skipped: 'local submission' };
    if (internal(info.address)) return { skipped: 'internal network' };
    const stream = new MessageStream();
    const sender = (m.sender ?? '').replace(/^<|>$/g, '');
    const result = authenticate(stream.stream, {
      ip: info.address,
      helo: m.connection.helo ?? info.hostname,
      sender,
      mta: deps.authservId,
      resolver: deps.resolver as never,
      disableArc: !cfg.arc,
      disableBimi: !cfg.bimi,
      ...(seal && seal.wants(m.recipients) ? { seal: seal.options } : {}),
    } as Parameters<typeof authenticate>[1]);
    // If mailauth gives up early, stop feeding it (writes to a destroyed stream are dropped).
    result.catch(() => stream.destroy());
    return { stream, result };
  }

  return {
    name: KEY,
    actions: Action.ADDHDRS | Action.CHGHDRS | Action.QUARANTINE,
    ...wholeMessageCheck(cfg),

    async body(ctx: CheckContext, chunk: Buffer) {
      const s = stateOf(ctx.message, KEY, () => start(ctx.message));
      if (s.stream) await s.stream.write(ctx.message, chunk);
    },

    async endOfMessage(ctx: CheckContext) {
      const m = ctx.message;
      const fromTrustedRelay = trusted(m.connection.info?.address);
      const mods: Modification[] = fromTrustedRelay ? [] : forgedResultHeaders(m.headers, deps.authservId);
      const s = stateOf(m, KEY, () => start(m));
      if (s.skipped || !s.stream || !s.result) {
        metrics?.skipped(s.skipped ?? 'unknown');
        return { modifications: mods, summary: `skipped (${s.skipped})` };
      }
      await s.stream.end(m);
      const res = await s.result;
      const fields = parseHeaderBlock(res.headers);
      // mailauth's headers (ARC set when sealing, Received-SPF, Authentication-Results), on top in
      // its order: inserting each at index 0, last first. It has folded the values already.
      for (const f of [...fields].reverse()) mods.push({ kind: 'insheader', index: 0, name: f.name, value: f.value });

      const spf = res.spf ? res.spf.status.result : 'none';
      const dkims: string[] = (res.dkim?.results ?? []).map((r: { status: { result: string } }) => r.status.result);
      const dmarc = res.dmarc ? res.dmarc.status.result : 'none';
      metrics?.record(spf, dkims, dmarc, res.arc ? res.arc.status.result : undefined);
      const summary = `spf=${spf} dkim=${dkims.length ? dkims.join(',') : 'none'} dmarc=${dmarc}`;

      const action = res.dmarc
        ? dmarcAction({ result: dmarc, domain: res.dmarc.domain, policy: res.dmarc.policy, pct: res.dmarc.pct }, cfg.dmarc, random)
        : ({ kind: 'none', why: 'no DMARC evaluation' } as const);
      ctx.log.info({ spf, dkim: dkims, dmarc, dmarcAction: action.kind, why: action.why }, 'authentication results');
      if (action.kind === 'reject') {
        const text = `Message rejected: unauthenticated mail from ${action.domain} is refused by its DMARC policy (ref ${m.messageId})`;
        return { verdict: { kind: 'replycode', reply: buildReplyCode(550, '5.7.1', text) }, summary };
      }
      if (action.kind === 'quarantine') {
        if (cfg.dmarc.quarantine === 'hold') mods.push({ kind: 'quarantine', reason: `DMARC quarantine policy of ${action.domain}` });
        else mods.push({ kind: 'addheader', name: cfg.dmarc.junkHeader, value: `yes; reason=dmarc-quarantine; domain=${action.domain}` });
      }
      return { modifications: mods, summary };
    },

    abort(message: MessageState) {
      (message.checkState.get(KEY) as PerMessage | undefined)?.stream?.destroy();
    },
  };
}
