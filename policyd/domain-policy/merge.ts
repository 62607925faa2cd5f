/**
 * The effective policy of a domain, computed without I/O:
 *   config defaults (policyd.limits, policyd.greylist) ← `_default` row ← the domain's row.
 * A row sets only the keys it names. A limit is replaced as a whole (a row's `{count: 10}` means
 * 10 per hour, not 10 per the inherited period); greylist settings are overridden one by one.
 * Rows are checked with the config's own schemas, made partial, so a row can hold nothing the
 * config file could not.
 */
import { z } from 'zod';
import { formatZodError } from '../../core/config/load.ts';
import { greylistSchema, limitsSchema, type GreylistConfig, type Limits, type Rate } from '../../core/config/policyd.ts';
import type { EffectivePolicy } from '../types.ts';

/** The row every domain without a row of its own inherits from. */
export const DEFAULT_DOMAIN = '_default';

export const limitsPatchSchema = limitsSchema.partial();
export const greylistPatchSchema = greylistSchema.partial();
const rowSchema = z.object({ limits: limitsPatchSchema, greylist: greylistPatchSchema }).strict();

export type LimitsPatch = Partial<Limits>;
export type GreylistPatch = Partial<GreylistConfig>;

/** What one row overrides, validated. */
export interface PolicyLayer {
  limits: LimitsPatch;
  greylist: GreylistPatch;
}

/** A row as read from `policy_domains`: its JSON not yet trusted. */
export interface PolicyRow {
  domain: string;
  limits: unknown;
  greylist: unknown;
}

export class PolicyRowError extends Error {
  constructor(
    readonly domain: string,
    /** The offending keys, e.g. `limits.clientIp.count`. */
    readonly keys: string[],
    detail: string,
  ) {
    super(`invalid policy for ${domain}: ${detail}`);
    this.name = 'PolicyRowError';
  }
}

/** The row's overrides, or a PolicyRowError naming the domain and each bad key with its value. */
export function parseRow(row: PolicyRow): PolicyLayer {
  const input = { limits: row.limits, greylist: row.greylist };
  const result = rowSchema.safeParse(input);
  if (result.success) return result.data;
  const keys = result.error.issues.flatMap((i) =>
    i.code === 'unrecognized_keys' ? i.keys.map((k) => [...i.path, k].join('.')) : [i.path.join('.')],
  );
  throw new PolicyRowError(row.domain, keys, formatZodError(result.error, input).replace(/\n/g, '; '));
}

/** Where a value of the effective policy comes from. */
export type Origin = 'config' | '_default' | 'domain';

export interface ExplainedPolicy {
  policy: EffectivePolicy;
  origins: { limits: Record<keyof Limits, Origin>; greylist: Record<keyof GreylistConfig, Origin> };
}

const deepFreeze = <T extends object>(o: T): Readonly<T> => {
  for (const v of Object.values(o)) if (typeof v === 'object' && v !== null) deepFreeze(v);
  return Object.freeze(o);
};

/**
 * The policy for a domain and the origin of each value. `defaults` are the config's (already
 * complete); a missing layer (no row, or a row ignored as invalid) passes everything through.
 */
export function explainPolicy(defaults: EffectivePolicy, defaultRow?: PolicyLayer, domainRow?: PolicyLayer): ExplainedPolicy {
  const layers: Array<[Origin, PolicyLayer | undefined]> = [
    ['_default', defaultRow],
    ['domain', domainRow],
  ];
  const limits = { ...defaults.limits } as Record<keyof Limits, Rate>;
  const limitOrigins = {} as Record<keyof Limits, Origin>;
  for (const key of Object.keys(defaults.limits) as Array<keyof Limits>) {
    limits[key] = { ...defaults.limits[key] };
    limitOrigins[key] = 'config';
    for (const [origin, layer] of layers) {
      const rate = layer?.limits[key];
      if (rate) {
        limits[key] = { ...rate };
        limitOrigins[key] = origin;
      }
    }
  }
  const greylist = { ...defaults.greylist } as Record<keyof GreylistConfig, unknown>;
  const greylistOrigins = {} as Record<keyof GreylistConfig, Origin>;
  for (const key of Object.keys(defaults.greylist) as Array<keyof GreylistConfig>) {
    greylistOrigins[key] = 'config';
    for (const [origin, layer] of layers) {
      const value = layer?.greylist[key];
      if (value !== undefined) {
        greylist[key] = value;
        greylistOrigins[key] = origin;
      }
    }
  }
  return {
    policy: { limits: limits as Limits, greylist: greylist as GreylistConfig },
    origins: { limits: limitOrigins, greylist: greylistOrigins },
  };
}

export function mergePolicy(defaults: EffectivePolicy, defaultRow?: PolicyLayer, domainRow?: PolicyLayer): EffectivePolicy {
  return explainPolicy(defaults, defaultRow, domainRow).policy;
}

/** Everything the policy service needs to answer `forDomain` from memory. */
export interface PolicyTable {
  /** For domains without a (valid) row. */
  fallback: EffectivePolicy;
  domains: Map<string, EffectivePolicy>;
  /** Rows left out because their JSON is invalid: the caller logs them. */
  invalid: PolicyRowError[];
}

/**
 * The whole table merged once, so each lookup is one Map.get. Policies are frozen: every caller
 * shares them. An invalid `_default` row is ignored like any other (config defaults apply).
 */
export function buildPolicyTable(defaults: EffectivePolicy, rows: PolicyRow[]): PolicyTable {
  const invalid: PolicyRowError[] = [];
  const parsed = new Map<string, PolicyLayer>();
  for (const row of rows) {
    try {
      parsed.set(row.domain.toLowerCase(), parseRow(row));
    } catch (err) {
      if (!(err instanceof PolicyRowError)) throw err;
      invalid.push(err);
    }
  }
  const base = parsed.get(DEFAULT_DOMAIN);
  const fallback = deepFreeze(mergePolicy(defaults, base));
  const domains = new Map<string, EffectivePolicy>();
  for (const [domain, layer] of parsed) {
    if (domain !== DEFAULT_DOMAIN) domains.set(domain, deepFreeze(mergePolicy(defaults, base, layer)));
  }
  return { fallback, domains, invalid };
}

/** The config's part of the policy: what applies with no database at all. */
export function configPolicy(policyd: { limits: Limits; greylist: GreylistConfig }): EffectivePolicy {
  return deepFreeze({ limits: structuredClone(policyd.limits), greylist: structuredClone(policyd.greylist) });
}
