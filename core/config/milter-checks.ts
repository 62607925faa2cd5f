/**
 * Config for the milter's checks beyond the trace header (authentication, DKIM signing,
 * antivirus). Kept out of schema.ts so each section reads on its own; composed there.
 */
import { z } from 'zod';
import { cidr, domainName, headerName } from './types.ts';

/** What a failing or timed-out check turns into; see schema.ts. */
const failureVerdict = z.enum(['tempfail', 'accept', 'reject']);

const LOOPBACK = ['127.0.0.0/8', '::1/128'];

export const authSchema = z
  .object({
    /** SPF, DKIM, DMARC and ARC verification of inbound mail, and the Authentication-Results header. */
    enabled: z.boolean().default(true),
    timeoutMs: z.number().int().positive().optional(),
    onError: failureVerdict.optional(),
    /** authserv-id in our Authentication-Results header; default: the top-level `hostname`. */
    authservId: z.string().regex(/^[^\s;]*$/, 'a single token such as mx.example.com').default(''),
    /** Clients whose Authentication-Results headers (with our authserv-id) are kept, not removed. */
    trustedRelays: z.array(cidr).default([]),
    /** Clients in these networks, and authenticated clients ({auth_authen}), skip inbound checks. */
    internalNetworks: z.array(cidr).default(LOOPBACK),
    arc: z.boolean().default(true),
    /** BIMI lookup for mail that passes DMARC: one cached TXT lookup; the result goes in the A-R header. */
    bimi: z.boolean().default(true),
    /**
     * ARC-seal mail we pass on (forwarders, mailing lists), so the next hop can trust our results.
     * Sealed only when a recipient matches `recipients` (addresses, or @domain for a whole domain)
     * and the incoming chain is none or pass.
     */
    arcSeal: z
      .object({
        enabled: z.boolean().default(false),
        signingDomain: z.string().default(''),
        selector: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/i, 'a DNS label such as arc').default('arc'),
        /** PEM private key (RSA or Ed25519), mode 0600. */
        keyFile: z.string().default(''),
        recipients: z.array(z.string().min(2)).default([]),
      })
      .strict()
      .superRefine((v, ctx) => {
        if (v.enabled && (!v.signingDomain || !v.keyFile)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'arcSeal needs signingDomain and keyFile when enabled' });
      })
      .default({}),
    dmarc: z
      .object({
        /** Act on the sender domain's policy; false only records the result in the header. */
        enforce: z.boolean().default(true),
        /** p=quarantine: add `junkHeader` (the Junk Sieve rule keys on it) or put the message on Postfix's hold queue. */
        quarantine: z.enum(['header', 'hold']).default('header'),
        junkHeader: headerName.default('X-Ceerion-Junk'),
        /** Per-domain policy overrides, e.g. a forwarder whose mail must never be rejected: { "lists.example.org": "none" }. */
        overrides: z.record(domainName, z.enum(['none', 'quarantine', 'reject'])).default({}),
      })
      .strict()
      .default({}),
  })
  .strict();

export const dkimSignSchema = z
  .object({
    /** Sign outbound mail (authenticated, or from `networks`) for the domains we hold keys for. */
    enabled: z.boolean().default(true),
    timeoutMs: z.number().int().positive().optional(),
    onError: failureVerdict.optional(),
    /** Keys live at KEYS_DIR/DOMAIN/SELECTOR.{rsa,ed25519}.key (`ceerion dkim keygen` writes them). */
    keysDir: z.string().min(1).default('/var/lib/ceerion/dkim'),
    selector: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/i, 'a DNS label such as s2026').default('ceerion'),
    /** Sign with each algorithm that has a key; list both for dual signing. */
    algorithms: z.array(z.enum(['rsa', 'ed25519'])).min(1).default(['rsa', 'ed25519']),
    headers: z
      .array(headerName)
      .default(['From', 'Reply-To', 'Subject', 'Date', 'To', 'Cc', 'Message-ID', 'In-Reply-To', 'References', 'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding', 'List-Unsubscribe', 'List-Unsubscribe-Post']),
    /** Signed once more than they occur, so none can be added after signing. */
    oversign: z.array(headerName).default(['From', 'Subject', 'To']),
    /** Clients in these networks are signed even when not authenticated (e.g. local submission). */
    networks: z.array(cidr).default(LOOPBACK),
  })
  .strict();

export const antivirusSchema = z
  .object({
    /** Scan with clamd; off by default because it needs a running clamd. */
    enabled: z.boolean().default(false),
    timeoutMs: z.number().int().positive().default(30_000),
    /** clamd down or timed out: tempfail keeps the mail queued at the sender. */
    onError: failureVerdict.default('tempfail'),
    /** clamd's socket, Postfix notation: unix:/run/clamav/clamd.ctl or inet:127.0.0.1:3310. */
    clamd: z.string().default('unix:/run/clamav/clamd.ctl'),
    /** Bytes streamed to clamd at most (clamd's StreamMaxLength defaults to 25 MB). */
    maxBytes: z.number().int().positive().default(25 * 1024 * 1024),
  })
  .strict();

export const dnsSchema = z
  .object({
    /** Name servers (IP or IP:port); empty means the system's (/etc/resolv.conf). */
    servers: z.array(z.string().min(1)).default([]),
    timeoutMs: z.number().int().positive().default(2_000),
    tries: z.number().int().min(1).max(5).default(2),
    cache: z
      .object({
        enabled: z.boolean().default(true),
        maxEntries: z.number().int().positive().default(10_000),
        /** Cap on how long an answer is kept, whatever its TTL. */
        maxTtlSeconds: z.number().int().positive().default(3_600),
        /** How long "no such record" is kept. */
        negativeTtlSeconds: z.number().int().nonnegative().default(300),
        /** Share the cache across milter processes through Redis (redis://host:port/db); empty: in process only. */
        redisUrl: z.string().default(''),
      })
      .strict()
      .default({}),
  })
  .strict();
