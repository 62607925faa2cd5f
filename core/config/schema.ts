/**
 * The one configuration object. Every default lives here; services receive the parsed object and
 * never read files or the environment themselves.
 */
import os from 'node:os';
import { z } from 'zod';
import { parseListen } from '../listen.ts';
import { antivirusSchema, authSchema, dkimSignSchema, dnsSchema } from './milter-checks.ts';
import { backupSchema } from './backup.ts';
import { classifierSchema } from './classifier.ts';
import { learnSchema } from './learn.ts';
import { stackSchema } from './stack.ts';
import { lmtpSchema } from './lmtp.ts';
import { mtaStsSchema } from './mta-sts.ts';
import { authPolicySchema, databaseSchema, policydSchema, redisSchema } from './policyd.ts';

const listenAddress = z.string().superRefine((value, ctx) => {
  try {
    parseListen(value);
  } catch (err) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message });
  }
});

/**
 * What a failing or timed-out check turns into: `tempfail` (4xx: the client keeps the mail and
 * retries), `reject` (5xx) or `accept` (ignore this check and go on with the others).
 */
export const failureVerdict = z.enum(['tempfail', 'accept', 'reject']);

const checkBase = {
  enabled: z.boolean().default(true),
  /** Milliseconds before the check is abandoned and `onError` applies. */
  timeoutMs: z.number().int().positive().optional(),
  onError: failureVerdict.optional(),
};

export const milterSchema = z
  .object({
    listen: listenAddress.default('inet:127.0.0.1:8891'),
    /** Mode for a unix socket; Postfix's smtpd (user postfix) must be able to write to it. */
    socketMode: z.string().regex(/^0?[0-7]{3}$/, 'an octal mode such as 0660').default('0666'),
    /** Largest declared frame we accept; Postfix sends at most a 64 KiB body chunk. */
    maxFrameBytes: z.number().int().min(65540).max(64 * 1024 * 1024).default(1024 * 1024),
    /** An idle connection (no command from the MTA) is closed after this long. */
    idleTimeoutMs: z.number().int().positive().default(600_000),
    /** While a check runs longer than this, SMFIR_PROGRESS keeps Postfix from timing out. */
    progressIntervalMs: z.number().int().positive().default(10_000),
    /**
     * Let the MTA send commands no check answers without waiting for a reply (SMFIP_NR_*): one
     * round trip fewer each. `always` (default) is the fastest with Postfix on either transport
     * (bench/README.md): over TCP the session answers each reply-less segment with PROGRESS so
     * Nagle never waits on our delayed ACK. That trick is only safe with Postfix (detected from
     * the `v` macro); `auto` uses no-reply on unix sockets only, for other MTAs over TCP.
     * `never` answers every stage.
     */
    noReply: z.enum(['auto', 'always', 'never']).default('always'),
    /** On SIGTERM, in-flight messages get this long to finish before sockets are closed. */
    shutdownGraceMs: z.number().int().nonnegative().default(15_000),
    checks: z
      .object({
        defaultTimeoutMs: z.number().int().positive().default(20_000),
        defaultOnError: failureVerdict.default('tempfail'),
        trace: z
          .object({
            ...checkBase,
            onError: failureVerdict.default('accept'),
            header: z.string().regex(/^[\x21-\x39\x3b-\x7e]+$/, 'a header field name').default('X-Ceerion-Milter'),
          })
          .strict()
          .default({}),
        auth: authSchema.default({}),
        dkimSign: dkimSignSchema.default({}),
        antivirus: antivirusSchema.default({}),
      })
      .strict()
      .default({}),
  })
  .strict();

export const configSchema = z
  .object({
    /** Name used in trace headers and logs. */
    hostname: z.string().min(1).default(os.hostname()),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .default({}),
    metrics: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(9464),
      })
      .strict()
      .default({}),
    dns: dnsSchema.default({}),
    milter: milterSchema.default({}),
    redis: redisSchema.default({}),
    database: databaseSchema.default({}),
    policyd: policydSchema.default({}),
    authPolicy: authPolicySchema.default({}),
    classifier: classifierSchema.default({}),
    lmtp: lmtpSchema.default({}),
    learn: learnSchema.default({}),
    backup: backupSchema.default({}),
    mtaSts: mtaStsSchema.default({}),
    stack: stackSchema.default({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type MilterConfig = Config['milter'];
export type FailureVerdict = z.infer<typeof failureVerdict>;
export type DnsConfig = Config['dns'];
export type AuthConfig = MilterConfig['checks']['auth'];
export type DkimSignConfig = MilterConfig['checks']['dkimSign'];
export type AntivirusConfig = MilterConfig['checks']['antivirus'];
export type { ClassifierConfig } from './classifier.ts';
export type { LmtpConfig } from './lmtp.ts';
export type { LearnConfig } from './learn.ts';
export type { BackupConfig } from './backup.ts';
export type { StackConfig } from './stack.ts';
export type { AuthPolicyConfig, DatabaseConfig, GreylistConfig, Limits, PolicydConfig, Rate, RedisConfig } from './policyd.ts';
