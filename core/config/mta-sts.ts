/**
 * Config for `ceerion mta-sts serve`: the HTTP server behind `https://mta-sts.DOMAIN/` that serves
 * each configured domain's MTA-STS policy (RFC 8461). TLS is the reverse proxy's job, so this
 * listens on loopback in plain HTTP by default. The policy id published in `_mta-sts.DOMAIN` is
 * not configured: it is a hash of the policy text (mta-sts/policy.ts), so it changes exactly when
 * the policy does. Composed into schema.ts.
 */
import { z } from 'zod';

/** A lower-case DNS name of letters, digits and hyphens (IDNs in their xn-- form), no trailing dot. */
export const DOMAIN_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

const domainName = z
  .string()
  .transform((s) => s.toLowerCase().replace(/\.$/, ''))
  .refine((s) => DOMAIN_NAME.test(s), 'a domain name such as example.com (IDNs in xn-- form)');

/** RFC 8461 §3.2: an MX host name, or `*.` and a name (the wildcard covers exactly one label). */
const mxPattern = z
  .string()
  .transform((s) => s.toLowerCase().replace(/\.$/, ''))
  .refine((s) => DOMAIN_NAME.test(s.startsWith('*.') ? s.slice(2) : s), 'an MX host name or *.domain');

/** RFC 8461 §3.2: max_age is at most 31557600 seconds (about a year). */
export const MAX_AGE_LIMIT = 31_557_600;

export const mtaStsPolicySchema = z
  .object({
    /**
     * `enforce`: senders refuse to deliver over unauthenticated TLS; `testing`: they deliver but
     * report failures (TLS-RPT); `none`: withdraw the policy (publish it before removing the
     * record, so cached enforce policies expire).
     */
    mode: z.enum(['enforce', 'testing', 'none']).default('testing'),
    /** The MX hosts senders may deliver to; each must have a certificate valid for its name. */
    mx: z.array(mxPattern).default([]),
    /** Seconds a sender caches the policy. RFC 8461 suggests weeks; start small while testing. */
    maxAge: z.number().int().min(0).max(MAX_AGE_LIMIT).default(604_800),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.mode !== 'none' && p.mx.length === 0) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['mx'], message: `mode ${p.mode} needs at least one mx host` });
    }
  });

export const mtaStsSchema = z
  .object({
    /** Loopback by default: a reverse proxy terminates TLS for mta-sts.DOMAIN and forwards here. */
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(10045),
    /** Request head (request line + headers) cap; larger heads get 431 and the connection closes. */
    maxHeaderBytes: z.number().int().min(1024).max(64 * 1024).default(8 * 1024),
    /** A policy fetch has no body; a request announcing or sending more than this gets 413. */
    maxBodyBytes: z.number().int().nonnegative().max(64 * 1024).default(1024),
    /** The whole request (head and body) must arrive within this. */
    requestTimeoutMs: z.number().int().positive().default(10_000),
    /** On SIGTERM, requests in flight get this long before their sockets are closed. */
    shutdownGraceMs: z.number().int().nonnegative().default(5_000),
    /** One entry per policy domain (the part after `mta-sts.` in the Host header). */
    policies: z
      .record(z.string(), mtaStsPolicySchema)
      .default({})
      .superRefine((policies, ctx) => {
        const seen = new Set<string>();
        for (const key of Object.keys(policies)) {
          const parsed = domainName.safeParse(key);
          if (!parsed.success) {
            ctx.addIssue({ code: z.ZodIssueCode.custom, path: [key], message: 'a domain name such as example.com (IDNs in xn-- form)' });
            continue;
          }
          if (seen.has(parsed.data)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [key], message: `${parsed.data} is configured twice` });
          seen.add(parsed.data);
        }
      }),
  })
  .strict();

export type MtaStsConfig = z.infer<typeof mtaStsSchema>;
export type MtaStsPolicy = z.infer<typeof mtaStsPolicySchema>;
