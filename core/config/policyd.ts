/**
 * Config for the shared stores (Redis, PostgreSQL) and the policy service: Postfix policy
 * delegation (rate limits, greylisting) and Dovecot's authentication policy (brute force).
 * Composed into the one config object in schema.ts.
 */
import { z } from 'zod';
import { parseListen } from '../listen.ts';
import { cidr } from './types.ts';

export const redisSchema = z
  .object({
    /** Also taken from REDIS_URL when CEERION_REDIS_URL is not set. */
    url: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL').default('redis://127.0.0.1:6379'),
    /** Every key the suite writes starts with this (one Redis can serve several installations). */
    keyPrefix: z.string().default('ceerion:'),
    /** A command that takes longer counts as a store error (the configured fail mode applies). */
    commandTimeoutMs: z.number().int().positive().default(250),
  })
  .strict();

export const databaseSchema = z
  .object({
    /** Also taken from DATABASE_URL when CEERION_DATABASE_URL is not set. */
    url: z.string().regex(/^postgres(ql)?:\/\//, 'a postgres:// URL').default('postgres://postgres@127.0.0.1:5432/postgres'),
    /** Schema for the suite's tables (tests use one schema each). */
    schema: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case SQL identifier').default('ceerion'),
  })
  .strict();

const policyListen = z.string().superRefine((value, ctx) => {
  try {
    parseListen(value);
  } catch (err) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message });
  }
});

/** `count` events per `periodSeconds`; count 0 means no limit. */
export const rateSchema = z
  .object({
    count: z.number().int().nonnegative(),
    periodSeconds: z.number().int().positive().default(3600),
  })
  .strict();

const off = { count: 0, periodSeconds: 3600 };

/** The limits one policy (config default, `_default` row or a domain row) sets. */
export const limitsSchema = z
  .object({
    /** Messages per client address (IPv6 grouped by `ipv6Prefix`). CEERION guide: 100/hour. */
    clientIp: rateSchema.default({ count: 100, periodSeconds: 3600 }),
    /** Messages per SASL login. CEERION guide: 1,000/hour. */
    saslUser: rateSchema.default({ count: 1000, periodSeconds: 3600 }),
    /** Messages per envelope sender address. */
    sender: rateSchema.default(off),
    /** Messages per envelope sender domain. */
    senderDomain: rateSchema.default(off),
    /** Messages to one recipient address (counted at RCPT). */
    recipient: rateSchema.default(off),
    /** Message bytes per SASL login, or per client address when there is none. */
    sizeBytes: rateSchema.default(off),
  })
  .strict();

export const greylistSchema = z
  .object({
    /** Off by default; turn it on globally here or per recipient domain (`ceerion policy set`). */
    enabled: z.boolean().default(false),
    /** postgrey's defaults: 300 s delay, 35 days retention, 2 days retry window, auto-allow after 5. */
    delaySeconds: z.number().int().nonnegative().default(300),
    retentionDays: z.number().int().positive().default(35),
    retryWindowHours: z.number().int().positive().default(48),
    autoAllowAfter: z.number().int().nonnegative().default(5),
    ipv4Prefix: z.number().int().min(8).max(32).default(24),
    ipv6Prefix: z.number().int().min(16).max(128).default(64),
    action: z.string().min(1).default('defer_if_permit 4.7.1 Greylisted, please try again later'),
  })
  .strict();

export const policydSchema = z
  .object({
    listen: policyListen.default('inet:127.0.0.1:10040'),
    /**
     * Processes answering on `listen` (node:cluster; the primary only accepts, restarts and serves
     * the merged /metrics). 0 = one per CPU core, at most 4. One process is single-threaded and
     * tops out near 17,000 requests/s here; two gave 21,500 (bench/README.md). 1 = no cluster.
     */
    workers: z.number().int().min(0).max(64).default(0),
    /** Longest `name=value` line; Postfix's own attributes are far shorter. */
    maxLineBytes: z.number().int().min(256).max(1_048_576).default(8192),
    /** Most attributes in one request; Postfix 3.8 sends about 40. */
    maxAttributes: z.number().int().min(16).max(10_000).default(128),
    /** Postfix keeps policy connections open (smtpd_policy_service_max_idle, 300 s). */
    idleTimeoutMs: z.number().int().positive().default(330_000),
    shutdownGraceMs: z.number().int().nonnegative().default(5_000),
    /** Answer when Redis is down or slow: DUNNO (fail open) by default, logged and counted. */
    onStoreError: z.string().min(1).default('DUNNO'),
    /** Answer over a limit; a reference id is appended. */
    overLimitAction: z.string().min(1).default('defer_if_permit 4.7.1 Rate limit exceeded, retry later'),
    /** Where per-message limits are counted: END-OF-MESSAGE (size known) or DATA. */
    countAt: z.enum(['END-OF-MESSAGE', 'DATA']).default('END-OF-MESSAGE'),
    ipv4Prefix: z.number().int().min(8).max(32).default(32),
    ipv6Prefix: z.number().int().min(16).max(128).default(64),
    limits: limitsSchema.default({}),
    greylist: greylistSchema.default({}),
    exempt: z
      .object({
        networks: z.array(cidr).default([]),
        /** SASL logins (exact) never limited. */
        users: z.array(z.string().min(1)).default([]),
        /** Sender domains never limited. */
        domains: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .default({}),
    /** Local parts that are never limited or greylisted as recipients (RFC 2142). */
    neverLimitRecipients: z.array(z.string().min(1)).default(['postmaster', 'abuse']),
    /** Per-domain policy in PostgreSQL, reloaded on LISTEN/NOTIFY. Off: config values only. */
    domainPolicy: z.boolean().default(true),
  })
  .strict();

export const authPolicySchema = z
  .object({
    enabled: z.boolean().default(true),
    /** HTTP for Dovecot's auth_policy_server_url. */
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(10041),
    /** If set, requests must carry this exact `Name: value` header (auth_policy_server_api_header). */
    apiHeader: z.string().default(''),
    /** Failures per remote address (IPv6 grouped by ipv6Prefix) within windowSeconds: tarpit, then reject. */
    ipTarpitAfter: z.number().int().positive().default(5),
    ipRejectAfter: z.number().int().positive().default(15),
    /** Failures per login name within windowSeconds before that login is tarpitted and then rejected. */
    loginTarpitAfter: z.number().int().positive().default(5),
    loginRejectAfter: z.number().int().positive().default(20),
    windowSeconds: z.number().int().positive().default(900),
    /** Seconds of delay a tarpitted attempt gets (Dovecot waits this long before answering). */
    tarpitSeconds: z.number().int().positive().max(60).default(5),
    /** One password hash tried against this many distinct logins within windowSeconds: spraying. */
    sprayLogins: z.number().int().min(2).default(10),
    ipv6Prefix: z.number().int().min(16).max(128).default(64),
    allowNetworks: z.array(cidr).default(['127.0.0.0/8', '::1/128']),
    /** Answer when Redis is down: allow (0) by default, as Dovecot itself fails open. */
    onStoreError: z.enum(['allow', 'reject']).default('allow'),
  })
  .strict();

export type RedisConfig = z.infer<typeof redisSchema>;
export type DatabaseConfig = z.infer<typeof databaseSchema>;
export type PolicydConfig = z.infer<typeof policydSchema>;
export type AuthPolicyConfig = z.infer<typeof authPolicySchema>;
export type Limits = z.infer<typeof limitsSchema>;
export type Rate = z.infer<typeof rateSchema>;
export type GreylistConfig = z.infer<typeof greylistSchema>;
