/**
 * The contracts between the policy service's parts, so each can be built and tested alone:
 * - the session hands each decoded request to a `PolicyHandler` and writes back its action;
 * - the decision (decide.ts) asks the `PolicyStore` (Redis, one round trip) and the
 *   `PolicySource` (per-domain policy from PostgreSQL, in memory).
 */
import type { Logger } from '../core/log.ts';
import type { GreylistConfig, Limits } from '../core/config/policyd.ts';

/** One policy request: attribute name → value (last occurrence wins), a null-prototype object. */
export type PolicyAttributes = Readonly<Record<string, string>>;

export interface PolicyContext {
  /** Connection id, in every log line. */
  conn: string;
  /** 1, 2, … per connection (Postfix reuses connections). */
  requestNo: number;
  log: Logger;
}

export interface PolicyHandler {
  /** The action text for Postfix, e.g. `DUNNO` or `defer_if_permit 4.7.1 …` (without `action=`). */
  request(attrs: PolicyAttributes, ctx: PolicyContext): Promise<string>;
}

/** One rate limit applied to one bucket. GCRA: `count` per `periodSeconds`, burst `count`. */
export interface LimitSpec {
  /** Which limit (metric label, log field): clientIp, saslUser, sender, senderDomain, recipient, sizeBytes. */
  name: keyof Limits;
  /** The bucket, e.g. `ip:192.0.2.7` or `user:alice` (the store adds its prefix). */
  key: string;
  count: number;
  periodSeconds: number;
  /** What this request costs: 1 message, or the message size for sizeBytes. */
  cost: number;
  /** `peek` checks without spending (RCPT, for per-message limits); `consume` spends. */
  mode: 'peek' | 'consume';
}

export interface LimitResult {
  name: keyof Limits;
  key: string;
  allowed: boolean;
  /** Whole units left after this request (0 when refused). */
  remaining: number;
  /** Seconds until a refused request of this cost would fit again (0 when allowed). */
  retryAfterSeconds: number;
}

export interface GreylistTriplet {
  /** Client network, already grouped (/24, /64): e.g. `192.0.2.0/24`. */
  client: string;
  /** Normalised envelope sender (VERP/BATV removed, lower case). */
  sender: string;
  recipient: string;
}

export type GreylistOutcome =
  | { pass: true; reason: 'passed' | 'known' | 'auto-allowed' }
  | { pass: false; reason: 'new' | 'early'; retryAfterSeconds: number };

export interface StoreDecision {
  /** True when every limit allowed the request (then every `consume` limit was spent, atomically). */
  allowed: boolean;
  results: LimitResult[];
  /** Present when a greylist check was asked for and the limits allowed the request. */
  greylist?: GreylistOutcome;
  /** Set when this `instance` was already counted (a retried or repeated hook): nothing was spent. */
  duplicate?: boolean;
}

export interface PolicyStore {
  /**
   * One atomic decision in ONE Redis round trip: all limits checked; if all allow, the `consume`
   * ones are spent; then, if asked, the greylist triplet is checked and recorded. With `instance`,
   * a second call for the same message instance spends nothing (counting per message).
   */
  decide(req: { limits: LimitSpec[]; greylist?: { triplet: GreylistTriplet; config: GreylistConfig }; instance?: string; nowMs?: number }): Promise<StoreDecision>;
  /** Round trips made so far (benchmarks check one per decision). */
  readonly roundTrips: number;
  close(): Promise<void>;
}

/** The policy in force for one domain: config defaults ← `_default` row ← the domain's row. */
export interface EffectivePolicy {
  limits: Limits;
  greylist: GreylistConfig;
}

export interface PolicySource {
  /** Synchronous: served from memory, kept current by LISTEN/NOTIFY. Unknown domain → `_default`. */
  forDomain(domain: string | undefined): EffectivePolicy;
  close(): Promise<void>;
}
