/**
 * The policy service's Redis side: `PolicyStore` over one Lua script (scripts/decide.lua), so a
 * decision (every rate limit, the message-instance check and the greylist triplet) is one atomic
 * round trip. Key layout, under the client's keyPrefix (`ceerion:` by default):
 *   rl:<limit>:<bucket>   a GCRA bucket: its theoretical arrival time; expires when that passes
 *   inst:<instance>       a message already counted (about an hour)
 *   gl:t:<triplet>        a greylist triplet: first seen, first pass
 *   gl:c:<client>         triplets a client network got through, for auto-allowing it
 * Every key has a TTL; nothing needs a cleanup job.
 */
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { WriteCoalescer } from '../../core/redis.ts';
import type { GreylistConfig } from '../../core/config/policyd.ts';
import type { GreylistTriplet, LimitResult, LimitSpec, PolicyStore, StoreDecision } from '../types.ts';

/** A message instance is remembered this long: far longer than any one SMTP transaction. */
const INSTANCE_TTL_MS = 3_600_000;
const COMMAND = 'ceerionPolicyDecide';
const LUA = readFileSync(new URL('./scripts/decide.lua', import.meta.url), 'utf8');

export type StoreErrorKind = 'unavailable' | 'timeout' | 'reply';

/**
 * Redis could not give an answer: not connected, too slow (the client's commandTimeout), or it
 * answered with an error. The caller turns this into its configured fail mode (policyd's
 * `onStoreError`); the store itself never guesses a verdict.
 */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(
    readonly kind: StoreErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

function toStoreError(err: unknown): StoreError {
  const e = err as Error & { name?: string };
  const message = e?.message ?? String(err);
  if (/timed out/i.test(message)) return new StoreError('timeout', `Redis timed out: ${message}`, { cause: err });
  // ioredis' server error replies are ReplyError; everything else is the connection.
  if (e?.name === 'ReplyError') return new StoreError('reply', `Redis refused the decision: ${message}`, { cause: err });
  return new StoreError('unavailable', `Redis unavailable: ${message}`, { cause: err });
}

const GREYLIST_REASONS = { 1: 'new', 2: 'early', 3: 'passed', 4: 'known', 5: 'auto-allowed' } as const;

/** Keys inside a triplet are joined with `|`; `%` and `|` in a part are escaped so parts can't run together. */
const escapePart = (s: string): string => s.replace(/[%|]/g, (c) => (c === '%' ? '%25' : '%7C'));

export interface RedisPolicyStoreOptions {
  /**
   * A Redis Cluster hash tag such as `{policy}`, put into every key. A script may only touch keys
   * of one hash slot in a cluster, and one decision touches several (a limit per IP, per user, per
   * recipient, a triplet…), so every policy key must hash to the same slot: the tag makes that
   * so. The cost is that all policy keys live on one shard. Leave unset on a single Redis.
   */
  hashTag?: string;
}

type DecideCommand = (numKeys: number, ...args: Array<string | number>) => Promise<unknown>;

export class RedisPolicyStore implements PolicyStore {
  #roundTrips = 0;
  readonly #redis: Redis;
  readonly #tag: string;
  readonly #writes: WriteCoalescer;

  /** `redis` from core/redis.ts createRedis (no offline queue, command timeout): its keyPrefix is kept. */
  constructor(redis: Redis, opts: RedisPolicyStoreOptions | string = {}) {
    const hashTag = typeof opts === 'string' ? opts : opts.hashTag;
    this.#redis = redis;
    this.#writes = new WriteCoalescer(redis);
    this.#tag = hashTag ? `${normaliseTag(hashTag)}:` : '';
    // EVALSHA with the script's text as the fallback (ioredis sends EVAL once per connection,
    // then EVALSHA, and retries NOSCRIPT with EVAL), so the script is never loaded separately.
    if (!(COMMAND in redis)) redis.defineCommand(COMMAND, { lua: LUA });
  }

  /** Commands sent to Redis so far: one per decision (a NOSCRIPT retry after SCRIPT FLUSH would add one). */
  get roundTrips(): number {
    return this.#roundTrips;
  }

  /** The key for a limit's bucket, without the client's keyPrefix (public for tests and tools). */
  limitKey(name: string, bucket: string): string {
    return `${this.#tag}rl:${name}:${bucket}`;
  }

  instanceKey(instance: string): string {
    return `${this.#tag}inst:${instance}`;
  }

  /** `client|sender|recipient`; the recipient is lower-cased, as postgrey lower-cases the whole key. */
  tripletKey(t: GreylistTriplet): string {
    return `${this.#tag}gl:t:${[t.client, t.sender, t.recipient.toLowerCase()].map(escapePart).join('|')}`;
  }

  clientKey(client: string): string {
    return `${this.#tag}gl:c:${client}`;
  }

  async decide(req: {
    limits: LimitSpec[];
    greylist?: { triplet: GreylistTriplet; config: GreylistConfig };
    instance?: string;
    nowMs?: number;
  }): Promise<StoreDecision> {
    if (req.nowMs !== undefined && !Number.isFinite(req.nowMs)) throw new RangeError(`nowMs must be a finite number, got ${req.nowMs}`);
    const keys: string[] = [];
    const limitArgs: Array<string | number> = [];
    for (const l of req.limits) {
      checkLimit(l);
      keys.push(this.limitKey(l.name, l.key));
      limitArgs.push(l.count, l.periodSeconds * 1000, l.cost, l.mode === 'consume' ? 1 : 0);
    }
    if (req.instance) keys.push(this.instanceKey(req.instance));
    const gl = req.greylist;
    if (gl) keys.push(this.tripletKey(gl.triplet), this.clientKey(gl.triplet.client));
    const c = gl?.config;
    const args: Array<string | number> = [
      req.nowMs === undefined ? '' : Math.floor(req.nowMs),
      req.limits.length,
      req.instance ? INSTANCE_TTL_MS : 0,
      gl ? 1 : 0,
      c ? c.delaySeconds * 1000 : 0,
      c ? c.retryWindowHours * 3_600_000 : 0,
      c ? c.retentionDays * 86_400_000 : 0,
      c ? c.autoAllowAfter : 0,
      ...limitArgs,
    ];

    const call = (this.#redis as unknown as Record<string, DecideCommand>)[COMMAND]!;
    this.#roundTrips++;
    this.#writes.hold();
    let reply: unknown;
    try {
      reply = await call.call(this.#redis, keys.length, ...keys, ...args);
    } catch (err) {
      throw toStoreError(err);
    }
    return decode(reply, req.limits, !!gl);
  }

  async close(): Promise<void> {
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}

/** `{policy}` or `policy` → `{policy}`; a tag with braces inside would not be one hash tag. */
function normaliseTag(tag: string): string {
  const inner = tag.startsWith('{') && tag.endsWith('}') ? tag.slice(1, -1) : tag;
  if (!inner || /[{}]/.test(inner)) throw new RangeError(`invalid Redis hash tag ${JSON.stringify(tag)}`);
  return `{${inner}}`;
}

/** A bad limit is a bug in the caller, not a store outage: RangeError, not StoreError. */
function checkLimit(l: LimitSpec): void {
  if (!Number.isInteger(l.count) || l.count < 0) throw new RangeError(`limit ${l.name}: count must be a whole number ≥ 0, got ${l.count}`);
  if (!(l.periodSeconds > 0) || !Number.isFinite(l.periodSeconds)) throw new RangeError(`limit ${l.name}: periodSeconds must be > 0, got ${l.periodSeconds}`);
  if (!(l.cost >= 0) || !Number.isFinite(l.cost)) throw new RangeError(`limit ${l.name}: cost must be ≥ 0, got ${l.cost}`);
}

function decode(reply: unknown, limits: LimitSpec[], greylistAsked: boolean): StoreDecision {
  const r = reply as number[];
  if (!Array.isArray(r) || r.length !== 4 + 3 * limits.length) {
    throw new StoreError('reply', `decide.lua returned an unexpected reply: ${JSON.stringify(reply)}`);
  }
  const results: LimitResult[] = limits.map((l, i) => {
    const [allowed, remaining, retry] = r.slice(4 + 3 * i, 7 + 3 * i) as [number, number, number];
    // -1 is the script's "unlimited" (count 0): nothing can run out.
    return { name: l.name, key: l.key, allowed: allowed === 1, remaining: remaining < 0 ? Infinity : remaining, retryAfterSeconds: retry };
  });
  const decision: StoreDecision = { allowed: r[0] === 1, results };
  if (r[1] === 1) decision.duplicate = true;
  const code = r[2] as keyof typeof GREYLIST_REASONS | 0;
  if (greylistAsked && code !== 0) {
    const reason = GREYLIST_REASONS[code];
    decision.greylist =
      reason === 'new' || reason === 'early' ? { pass: false, reason, retryAfterSeconds: r[3]! } : { pass: true, reason };
  }
  return decision;
}
