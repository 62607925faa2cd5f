/**
 * Config for `ceerion start` (pnpm mail:start): the supervised stack. Everything has a default, so
 * a first run needs no file: private PostgreSQL and Redis in ./var unless DATABASE_URL/REDIS_URL
 * (or database.url/redis.url in the file) name existing ones, and a private Postfix + Dovecot pair
 * on loopback ports when their Debian packages are installed and we run as root.
 * Composed into schema.ts.
 */
import { z } from 'zod';
import { domainName } from './types.ts';

const port = z.number().int().min(1).max(65535);
/** `auto`: on when the binaries are installed (and we may run them); `on`: required; `off`: never. */
const toggle = z.enum(['auto', 'on', 'off']);

export const stackSchema = z
  .object({
    /** Data, logs and state of the stack (relative to the working directory). */
    varDir: z.string().min(1).default('var'),
    /** Mail domain of the private Postfix + Dovecot pair and its test account (test@DOMAIN). */
    domain: domainName.default('ceerion.test'),
    postgres: z
      .object({
        /** `auto`: private unless database.url was set (file, CEERION_DATABASE_URL or DATABASE_URL). */
        mode: z.enum(['auto', 'private', 'external']).default('auto'),
        port: port.default(15432),
      })
      .strict()
      .default({}),
    redis: z
      .object({
        mode: z.enum(['auto', 'private', 'external']).default('auto'),
        port: port.default(16379),
      })
      .strict()
      .default({}),
    clamd: z.object({ enabled: toggle.default('auto') }).strict().default({}),
    postfix: z
      .object({
        enabled: toggle.default('auto'),
        /** Inbound SMTP (the MX role); XCLIENT is allowed from loopback so tests can pose as outside clients. */
        smtpPort: port.default(2525),
        /** Submission with AUTH (Dovecot SASL) required. */
        submissionPort: port.default(2587),
      })
      .strict()
      .default({}),
    dovecot: z
      .object({
        enabled: toggle.default('auto'),
        imapPort: port.default(1143),
        /** Dovecot's SASL listener for Postfix's submission service (loopback). */
        authPort: port.default(10044),
        /** Dovecot's LMTP over TCP (the indexer uses its unix socket; this is for other tools). */
        lmtpPort: port.default(10024),
      })
      .strict()
      .default({}),
    /** Each of our services serves /metrics on its own port (they are separate processes). */
    metricsPorts: z
      .object({
        milter: port.default(9464),
        policyd: port.default(9465),
        lmtp: port.default(9466),
        learner: port.default(9467),
        /** `ceerion mta-sts serve`, started only when mtaSts.policies names a domain. */
        mtaSts: port.default(9469),
        /** The supervisor's own: Postfix queue and per-service up/restarts. */
        supervisor: port.default(9468),
      })
      .strict()
      .default({}),
    restart: z
      .object({
        /** First delay after a crash; doubles per crash up to maxDelayMs. */
        initialDelayMs: z.number().int().positive().default(500),
        maxDelayMs: z.number().int().positive().default(30_000),
        /** A service that stayed up this long starts again from initialDelayMs after its next crash. */
        resetAfterMs: z.number().int().positive().default(60_000),
      })
      .strict()
      .default({}),
    /** Every service must pass its health check within this long at start, or the start fails. */
    readyTimeoutMs: z.number().int().positive().default(90_000),
    /** Health is re-checked this often once running (unhealthy is logged and shown in status). */
    healthIntervalMs: z.number().int().positive().default(15_000),
    /** On stop, a service gets this long after SIGTERM before SIGKILL. */
    stopTimeoutMs: z.number().int().positive().default(30_000),
  })
  .strict();

export type StackConfig = z.infer<typeof stackSchema>;
