/**
 * Login brute-force protection for Dovecot's auth policy: counts failed logins per source address
 * (IPv6 grouped by `ipv6Prefix`, IPv4 whole) and per login within a sliding window, detects
 * password spraying, and turns the counts into a verdict: allow, tarpit or reject.
 *
 * All state is in Redis and every request costs exactly one round trip (scripts/auth.lua). The
 * decision itself is a pure function of the counts (`decide`), so it is tested without Redis.
 */
import { randomBytes, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { AuthPolicyConfig } from '../../core/config/policyd.ts';
import { cidrMatcher, parseCidr } from '../../core/net/cidr.ts';
import type { Logger } from '../../core/log.ts';
import type { AuthPolicyRequest } from './codec.ts';

/**
 * Why an attempt was held back. `ip` and `hostile` are about the source (fail2ban may ban it);
 * `login` and `pwhash` are about the account or password and also hit its legitimate owner.
 */
export type BlockReason = 'ip' | 'login' | 'hostile' | 'pwhash' | 'store-error';

export type Verdict =
  | { action: 'allow' }
  | { action: 'tarpit'; seconds: number; reason: BlockReason }
  | { action: 'reject'; reason: BlockReason };

export interface Counts {
  /** Failures of the source address (group) inside the window. */
  ip: number;
  /** Failures of the login inside the window. */
  login: number;
  /** The source was caught spraying and is refused until the window passes. */
  hostile: boolean;
  /** The attempt's password hash was sprayed across sprayLogins logins. */
  pwhashSprayed: boolean;
}

export interface Decision {
  verdict: Verdict;
  counts: Counts;
  /** The source address was in allowNetworks: Redis was not asked. */
  allowlisted?: boolean;
  /** Redis failed; the verdict is the configured onStoreError answer. */
  storeError?: string;
}

export interface ReportOutcome {
  counts: Counts;
  /** Spraying detected by this very failure (log it once). */
  sprayDetected?: 'pwhash' | 'source';
  allowlisted?: boolean;
  storeError?: string;
}

const NO_COUNTS: Counts = { ip: 0, login: 0, hostile: false, pwhashSprayed: false };

/** The verdict for a set of counts. Reject reasons first, then tarpit; source before login. */
export function decide(counts: Counts, config: AuthPolicyConfig): Verdict {
  if (counts.pwhashSprayed) return { action: 'reject', reason: 'pwhash' };
  if (counts.hostile) return { action: 'reject', reason: 'hostile' };
  if (counts.ip >= config.ipRejectAfter) return { action: 'reject', reason: 'ip' };
  if (counts.login >= config.loginRejectAfter) return { action: 'reject', reason: 'login' };
  if (counts.ip >= config.ipTarpitAfter) return { action: 'tarpit', seconds: config.tarpitSeconds, reason: 'ip' };
  if (counts.login >= config.loginTarpitAfter) return { action: 'tarpit', seconds: config.tarpitSeconds, reason: 'login' };
  return { action: 'allow' };
}

/**
 * The counting key for a client address: IPv4 (and IPv4-mapped IPv6) whole, IPv6 masked to
 * `v6Prefix` bits (one customer usually holds a whole /64). Undefined when it is not an address.
 */
export function ipGroup(address: string, v6Prefix: number): string | undefined {
  if (address.includes('/')) return undefined;
  let range: ReturnType<typeof parseCidr>;
  try {
    range = parseCidr(address);
  } catch {
    return undefined;
  }
  if (range.family === 4) return [...range.bytes].join('.');
  const bytes = Buffer.from(range.bytes);
  for (let bit = v6Prefix; bit < 128; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return `${groups.join(':')}/${v6Prefix}`;
}

/** Logins compare case-insensitively (attackers vary case); very long ones are hashed into the key. */
export function normaliseLogin(login: string): string {
  const lower = login.trim().toLowerCase();
  return lower.length <= 256 ? lower : `sha256:${createHash('sha256').update(lower).digest('hex')}`;
}

/** Dovecot's hashed_password is hex; anything else (an attribute mapped to something else) is not used. */
const PWHASH = /^[0-9a-f]{1,128}$/i;

const SCRIPT = readFileSync(new URL('./scripts/auth.lua', import.meta.url), 'utf8');
/** Name of the script command on the Redis client; distinct from other services' scripts. */
const COMMAND = 'ceerionAuthPolicy';
type ScriptMode = 'allow' | 'fail' | 'blocked' | 'success';
type ScriptCall = (...args: Array<string | number>) => Promise<number[]>;

export interface BruteForceGuardOptions {
  config: AuthPolicyConfig;
  /** From core/redis.ts; its keyPrefix applies to every key here. */
  redis: Redis;
  log: Logger;
  /** Milliseconds since the epoch; injected so tests can move time. */
  now?: () => number;
}

export class BruteForceGuard {
  private readonly config: AuthPolicyConfig;
  private readonly redis: Redis;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly allowlisted: (address: string | undefined) => boolean;
  private readonly script: ScriptCall;
  private trips = 0;
  private errors = 0;

  constructor(opts: BruteForceGuardOptions) {
    this.config = opts.config;
    this.redis = opts.redis;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
    this.allowlisted = cidrMatcher(opts.config.allowNetworks);
    // defineCommand sends EVALSHA and falls back to EVAL once per connection: one round trip.
    this.redis.defineCommand(COMMAND, { numberOfKeys: 6, lua: SCRIPT });
    const client = this.redis as unknown as Record<string, ScriptCall>;
    this.script = (...args) => client[COMMAND]!(...args);
  }

  /** Redis round trips so far (one per request that was not allow-listed). */
  get roundTrips(): number {
    return this.trips;
  }

  /** Redis errors so far (each answered with onStoreError). */
  get storeErrors(): number {
    return this.errors;
  }

  /** `command=allow`, before authentication and (if configured) again after a success. */
  async allow(req: AuthPolicyRequest): Promise<Decision> {
    if (this.allowlisted(req.remote)) return { verdict: { action: 'allow' }, counts: NO_COUNTS, allowlisted: true };
    try {
      const counts = (await this.run('allow', req)).counts;
      return { verdict: decide(counts, this.config), counts };
    } catch (err) {
      const storeError = this.storeFailure(err, 'allow');
      const verdict: Verdict = this.config.onStoreError === 'allow' ? { action: 'allow' } : { action: 'reject', reason: 'store-error' };
      return { verdict, counts: NO_COUNTS, storeError };
    }
  }

  /** `command=report`, after authentication: count a failure or reset the login after a success. */
  async report(req: AuthPolicyRequest): Promise<ReportOutcome> {
    if (this.allowlisted(req.remote)) return { counts: NO_COUNTS, allowlisted: true };
    const mode: ScriptMode = req.success ? 'success' : req.policyReject ? 'blocked' : 'fail';
    try {
      const { counts, pwSprayNow, ipSprayNow } = await this.run(mode, req);
      const sprayDetected = pwSprayNow ? 'pwhash' : ipSprayNow ? 'source' : undefined;
      return sprayDetected ? { counts, sprayDetected } : { counts };
    } catch (err) {
      return { counts: NO_COUNTS, storeError: this.storeFailure(err, 'report') };
    }
  }

  private storeFailure(err: unknown, command: string): string {
    this.errors++;
    const message = (err as Error)?.message ?? String(err);
    this.log.warn({ err: message, command, onStoreError: this.config.onStoreError }, 'auth-policy store error');
    return message;
  }

  private async run(mode: ScriptMode, req: AuthPolicyRequest): Promise<{ counts: Counts; pwSprayNow: boolean; ipSprayNow: boolean }> {
    const c = this.config;
    const group = ipGroup(req.remote, c.ipv6Prefix);
    const login = normaliseLogin(req.login);
    const pwhash = PWHASH.test(req.pwhash) ? req.pwhash.toLowerCase() : '';
    // Unknown parts still need a key name (the script declares all its keys) but are never touched.
    const keys = [
      `auth:ip:${group ?? '-'}`,
      `auth:login:${login || '-'}`,
      `auth:ip-logins:${group ?? '-'}`,
      `auth:pw-logins:${pwhash || '-'}`,
      `auth:hostile:${group ?? '-'}`,
      `auth:sprayed:${pwhash || '-'}`,
    ];
    const args = [
      mode,
      this.now(),
      c.windowSeconds * 1000,
      randomBytes(8).toString('hex'),
      group ? '1' : '0',
      login ? '1' : '0',
      pwhash ? '1' : '0',
      login,
      Math.max(c.ipTarpitAfter, c.ipRejectAfter),
      Math.max(c.loginTarpitAfter, c.loginRejectAfter),
      c.sprayLogins,
    ];
    this.trips++;
    const r = await this.script(...keys, ...args);
    const n = (i: number): number => Number(r[i] ?? 0);
    return {
      counts: { ip: n(0), login: n(1), hostile: n(2) === 1, pwhashSprayed: n(3) === 1 },
      pwSprayNow: n(4) === 1,
      ipSprayNow: n(5) === 1,
    };
  }
}
