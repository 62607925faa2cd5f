/**
 * The policy decision: which limits and greylisting apply to one Postfix policy request, asked of
 * the store in ONE round trip, turned into an action.
 *
 * Where each limit counts (document this in main.cf, see policyd/README.md):
 * - RCPT (smtpd_recipient_restrictions, after reject_unauth_destination):
 *   - the recipient limit is spent, once per recipient;
 *   - the per-message limits (client, SASL user, sender, sender domain, size) are only *peeked*,
 *     so a client that is already over its quota is deferred before it sends the data;
 *   - greylisting runs here, because it needs the recipient.
 * - END-OF-MESSAGE (smtpd_end_of_data_restrictions; or DATA, `policyd.countAt`): the per-message
 *   limits are spent once per message. A 20-recipient message costs 1, not 20. Postfix's
 *   `instance` attribute is the message's id, so a second hook for the same message spends nothing.
 *
 * The answer is never OK: DUNNO lets the rest of Postfix's restrictions decide.
 */
import { randomBytes } from 'node:crypto';
import type { Counter, Histogram, Registry } from 'prom-client';
import promClient from 'prom-client';
import type { PolicydConfig } from '../core/config/policyd.ts';
import { cidrMatcher } from '../core/net/cidr.ts';
import { clientNetwork, normalizeSender, recipientLocalPart, senderDomain } from './store/keys.ts';
import type { EffectivePolicy, LimitSpec, PolicyAttributes, PolicyContext, PolicyHandler, PolicySource, PolicyStore, StoreDecision } from './types.ts';

export const DUNNO = 'DUNNO';

/** What one request asks of the store, plus the text a greylist deferral answers with. */
type Ask = Parameters<PolicyStore['decide']>[0] & { greylistAction: string };

/** Per-message limits: the bucket each one counts in, from the request. */
type MessageLimit = 'clientIp' | 'saslUser' | 'sender' | 'senderDomain' | 'sizeBytes';

export interface DecisionMetrics {
  decisions: Counter<'stage' | 'result'>;
  limitHits: Counter<'limit'>;
  storeErrors: Counter<string>;
  seconds: Histogram<'stage'>;
}

export function decisionMetrics(registry?: Registry): DecisionMetrics | undefined {
  if (!registry) return undefined;
  const registers = [registry];
  return {
    decisions: new promClient.Counter({ name: 'ceerion_policyd_decisions_total', help: 'Policy decisions by SMTP stage and result', labelNames: ['stage', 'result'], registers }),
    limitHits: new promClient.Counter({ name: 'ceerion_policyd_limit_hits_total', help: 'Requests refused, by the limit that refused them', labelNames: ['limit'], registers }),
    storeErrors: new promClient.Counter({ name: 'ceerion_policyd_store_errors_total', help: 'Decisions that fell back to onStoreError because Redis failed', registers }),
    seconds: new promClient.Histogram({
      name: 'ceerion_policyd_decision_seconds',
      help: 'Time from request to answer, store round trip included',
      labelNames: ['stage'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25],
      registers,
    }),
  };
}

/**
 * The labelled series one decision touches, looked up once per stage/result pair: prom-client
 * hashes a labels object on every inc()/observe(), which was ~2% of policyd's CPU per request.
 */
class DecisionSeries {
  private readonly decided = new Map<string, { inc(): void }>();
  private readonly timed = new Map<string, { observe(v: number): void }>();

  constructor(private readonly metrics: DecisionMetrics) {}

  record(stage: string, result: string, seconds: number): void {
    const key = `${stage}\0${result}`;
    let d = this.decided.get(key);
    if (!d) this.decided.set(key, (d = this.metrics.decisions.labels({ stage, result })));
    d.inc();
    let t = this.timed.get(stage);
    if (!t) this.timed.set(stage, (t = this.metrics.seconds.labels({ stage })));
    t.observe(seconds);
  }
}

/** A short id for reject texts and the matching log line, so a user's bounce can be found in the logs. */
const referenceId = () => randomBytes(5).toString('hex').toUpperCase();

export class PolicyDecider implements PolicyHandler {
  private readonly exemptNetwork: (ip: string | undefined) => boolean;
  private readonly exemptUsers: Set<string>;
  private readonly exemptDomains: Set<string>;
  private readonly neverLimited: Set<string>;
  private readonly series: DecisionSeries | undefined;

  constructor(
    private readonly config: PolicydConfig,
    private readonly store: PolicyStore,
    private readonly policies: PolicySource,
    private readonly metrics?: DecisionMetrics,
    /** Tests inject time; by default Redis's own clock is used, the same for every policyd instance. */
    private readonly clock?: () => number,
  ) {
    this.exemptNetwork = cidrMatcher(config.exempt.networks);
    this.exemptUsers = new Set(config.exempt.users.map((u) => u.toLowerCase()));
    this.exemptDomains = new Set(config.exempt.domains.map((d) => d.toLowerCase()));
    this.neverLimited = new Set(config.neverLimitRecipients.map((l) => l.toLowerCase()));
    this.series = metrics ? new DecisionSeries(metrics) : undefined;
  }

  async request(attrs: PolicyAttributes, ctx: PolicyContext): Promise<string> {
    const started = performance.now();
    const stage = (attrs.protocol_state ?? '').toUpperCase();
    let result = 'dunno';
    try {
      const { action, outcome } = await this.decide(attrs, stage, ctx);
      result = outcome;
      return action;
    } finally {
      this.series?.record(stage || 'none', result, (performance.now() - started) / 1000);
    }
  }

  private async decide(attrs: PolicyAttributes, stage: string, ctx: PolicyContext): Promise<{ action: string; outcome: string }> {
    if (attrs.request !== 'smtpd_access_policy') {
      ctx.log.warn({ request: attrs.request }, 'policy request of an unknown kind; answering DUNNO');
      return { action: DUNNO, outcome: 'unknown-request' };
    }
    const exempt = this.exemption(attrs);
    if (exempt) return { action: DUNNO, outcome: `exempt-${exempt}` };

    const ask: Ask | undefined = stage === 'RCPT' ? this.atRcpt(attrs) : stage === this.config.countAt ? this.atMessage(attrs) : undefined;
    if (!ask) return { action: DUNNO, outcome: 'not-counted-here' };
    if (ask.limits.length === 0 && !ask.greylist) return { action: DUNNO, outcome: 'no-limits' };

    let decision: StoreDecision;
    try {
      const { greylistAction: _text, ...request } = ask;
      decision = await this.store.decide({ ...request, ...(this.clock ? { nowMs: this.clock() } : {}) });
    } catch (err) {
      this.metrics?.storeErrors.inc();
      ctx.log.error({ err: (err as Error).message, stage, action: this.config.onStoreError }, 'policy store unavailable; answering onStoreError');
      return { action: this.config.onStoreError, outcome: 'store-error' };
    }

    if (!decision.allowed) {
      const refused = decision.results.filter((r) => !r.allowed);
      const ref = referenceId();
      for (const r of refused) this.metrics?.limitHits.inc({ limit: r.name });
      ctx.log.warn(
        { ref, stage, client: attrs.client_address, sasl: attrs.sasl_username || undefined, sender: attrs.sender, queueId: attrs.queue_id, refused: refused.map((r) => ({ limit: r.name, key: r.key, retryAfter: r.retryAfterSeconds })) },
        'rate limit exceeded',
      );
      return { action: `${this.config.overLimitAction} (ref ${ref})`, outcome: 'over-limit' };
    }
    if (decision.greylist && !decision.greylist.pass) {
      const ref = referenceId();
      ctx.log.info({ ref, client: attrs.client_address, sender: attrs.sender, recipient: attrs.recipient, reason: decision.greylist.reason, retryAfter: decision.greylist.retryAfterSeconds }, 'greylisted');
      return { action: `${ask.greylistAction} (ref ${ref})`, outcome: 'greylisted' };
    }
    return { action: DUNNO, outcome: decision.duplicate ? 'duplicate' : 'allowed' };
  }

  /** Why this request is never limited, or undefined. */
  private exemption(attrs: PolicyAttributes): string | undefined {
    if (this.exemptNetwork(attrs.client_address)) return 'network';
    const user = attrs.sasl_username?.toLowerCase();
    if (user && this.exemptUsers.has(user)) return 'user';
    const domain = senderDomain(attrs.sender ?? '');
    if (domain && this.exemptDomains.has(domain)) return 'domain';
    return undefined;
  }

  private neverLimitedRecipient(recipient: string | undefined): boolean {
    return !!recipient && this.neverLimited.has(recipientLocalPart(recipient));
  }

  /** The per-message limits of this request, in the sender's domain policy. */
  private messageLimits(attrs: PolicyAttributes, policy: EffectivePolicy, mode: LimitSpec['mode'], size: number): LimitSpec[] {
    const l = policy.limits;
    const sender = (attrs.sender ?? '').toLowerCase();
    const user = (attrs.sasl_username ?? '').toLowerCase();
    const client = attrs.client_address ? clientNetwork(attrs.client_address, this.config.ipv4Prefix, this.config.ipv6Prefix) : '';
    const buckets: Array<[MessageLimit, string, number]> = [
      ['clientIp', client && `ip:${client}`, 1],
      ['saslUser', user && `user:${user}`, 1],
      ['sender', sender && `from:${sender}`, 1],
      ['senderDomain', sender && `dom:${senderDomain(sender)}`, 1],
      // Bytes per SASL login, or per client when the client did not log in.
      ['sizeBytes', user ? `user:${user}` : client && `ip:${client}`, size],
    ];
    const specs: LimitSpec[] = [];
    for (const [name, key, cost] of buckets) {
      const rate = l[name];
      if (!key || rate.count === 0) continue;
      if (name === 'sizeBytes' && cost === 0) continue;
      specs.push({ name, key, count: rate.count, periodSeconds: rate.periodSeconds, cost, mode });
    }
    return specs;
  }

  private atRcpt(attrs: PolicyAttributes): Ask | undefined {
    const recipient = (attrs.recipient ?? '').toLowerCase();
    if (this.neverLimitedRecipient(recipient)) return undefined;
    const sending = this.policies.forDomain(senderDomain(attrs.sender ?? ''));
    const receiving = this.policies.forDomain(senderDomain(recipient));
    // Peek with cost 1 (and the SIZE= the client announced, if any): is there room for one more message?
    const limits = this.messageLimits(attrs, sending, 'peek', Number(attrs.size) || 0);
    const r = receiving.limits.recipient;
    if (recipient && r.count > 0) limits.push({ name: 'recipient', key: `rcpt:${recipient}`, count: r.count, periodSeconds: r.periodSeconds, cost: 1, mode: 'consume' });
    const gl = receiving.greylist;
    // Authenticated clients never wait; exempt networks returned earlier.
    const greylist =
      gl.enabled && !attrs.sasl_username && attrs.client_address && recipient
        ? { triplet: { client: clientNetwork(attrs.client_address, gl.ipv4Prefix, gl.ipv6Prefix), sender: normalizeSender(attrs.sender ?? ''), recipient }, config: gl }
        : undefined;
    return { limits, ...(greylist ? { greylist } : {}), greylistAction: gl.action };
  }

  private atMessage(attrs: PolicyAttributes): Ask | undefined {
    // A message only to postmaster or abuse is never counted (Postfix names the recipient when there is one).
    if (attrs.recipient_count === '1' && this.neverLimitedRecipient(attrs.recipient)) return undefined;
    const sending = this.policies.forDomain(senderDomain(attrs.sender ?? ''));
    const limits = this.messageLimits(attrs, sending, 'consume', Number(attrs.size) || 0);
    return { limits, ...(attrs.instance ? { instance: attrs.instance } : {}), greylistAction: sending.greylist.action };
  }
}
