/**
 * Config for the LMTP indexer (`ceerion lmtp`): the LMTP listener Postfix delivers to, the
 * Dovecot LMTP it relays to, the PostgreSQL index, the HTTP API (search, WebSocket events,
 * sending, Dovecot's push notifications) and the durable backlog. Composed into schema.ts.
 */
import { z } from 'zod';
import { parseListen } from '../listen.ts';

const address = z.string().superRefine((value, ctx) => {
  try {
    parseListen(value);
  } catch (err) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message });
  }
});

export const lmtpSchema = z
  .object({
    /** Where Postfix delivers: `virtual_transport = lmtp:inet:127.0.0.1:2424`. */
    listen: address.default('inet:127.0.0.1:2424'),
    /** Mode of a unix listener; Postfix's lmtp client (user postfix) must be able to connect. */
    socketMode: z.string().regex(/^0?[0-7]{3}$/, 'an octal mode such as 0660').default('0666'),
    /** Name in the greeting and LHLO reply. Defaults to `hostname`. */
    serverName: z.string().min(1).optional(),
    /** SIZE we announce and enforce, in bytes (Postfix's message_size_limit default is 10 MB; ours is larger so we never refuse what Postfix accepted). */
    maxMessageBytes: z.number().int().positive().default(64 * 1024 * 1024),
    /** Most recipients in one transaction (Postfix's lmtp_destination_recipient_limit default is 50). */
    maxRecipients: z.number().int().positive().default(1000),
    /** A client idle for this long is told 421 and disconnected. */
    socketTimeoutMs: z.number().int().positive().default(300_000),
    /** Bodies are streamed to files here while they are received and relayed; removed afterwards. */
    spoolDir: z.string().min(1).default('./var/lmtp/spool'),
    /** On SIGTERM, transactions in progress get this long to finish. */
    shutdownGraceMs: z.number().int().nonnegative().default(15_000),
    dovecot: z
      .object({
        /** Dovecot's LMTP: `unix:/var/run/dovecot/lmtp` (Debian) or `inet:HOST:PORT`. */
        address: address.default('unix:/var/run/dovecot/lmtp'),
        /** Connect, and each reply, must arrive within this; otherwise the recipients get 4xx. */
        timeoutMs: z.number().int().positive().default(60_000),
      })
      .strict()
      .default({}),
    /**
     * Reject unknown recipients at RCPT (550 5.1.1) by looking them up in the accounts table
     * (Dovecot's userdb). Off: every recipient is passed to Dovecot, which decides.
     */
    recipientLookup: z
      .object({
        enabled: z.boolean().default(false),
        /**
         * When the lookup fails (database down): `accept` (default: Dovecot decides at its own RCPT,
         * from its auth cache if its userdb is down too, so mail keeps flowing through an outage)
         * or `tempfail` (451, Postfix keeps the mail and retries).
         */
        onError: z.enum(['tempfail', 'accept']).default('accept'),
      })
      .strict()
      .default({}),
    /** Postfix's recipient_delimiter: `alice+lists@x` is indexed under `alice@x`. Empty: no extensions. */
    recipientDelimiter: z.string().max(8).default('+'),
    index: z
      .object({
        /** PostgreSQL text search configuration for the tsvector (`simple`, `english`, `german`, …). */
        language: z.string().regex(/^[a-z_]+$/, 'a text search configuration name').default('simple'),
        /** Text indexed per message; the rest is still delivered, only not searchable. */
        maxTextBytes: z.number().int().positive().default(1024 * 1024),
        /** Characters kept as the snippet. */
        snippetChars: z.number().int().positive().default(200),
        /** Parser limits: MIME parts, nesting depth and bytes of one header block. */
        maxParts: z.number().int().positive().default(500),
        maxDepth: z.number().int().positive().default(20),
        maxHeaderBytes: z.number().int().positive().default(256 * 1024),
        /** Index entries that could not be written (PostgreSQL down) wait here, fsync'd, and are replayed. */
        backlogDir: z.string().min(1).default('./var/lmtp/backlog'),
        /** How often the backlog is retried while PostgreSQL is down. */
        replayIntervalMs: z.number().int().positive().default(5_000),
      })
      .strict()
      .default({}),
    http: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(10043),
        /** Results per page of /search (the `limit` parameter is capped here). */
        maxPageSize: z.number().int().positive().default(100),
        /** Shared secret Dovecot's push_notification Lua script sends (Authorization: Bearer). Empty: /push accepts loopback only. */
        pushToken: z.string().default(''),
        /** Real-time events are kept this many days for clients resuming with `since`; older ones are pruned hourly. */
        eventRetentionDays: z.number().int().positive().default(30),
      })
      .strict()
      .default({}),
    /** Postfix's submission port, used by POST /mail/send with the account's own credentials. */
    submission: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(1).max(65535).default(587),
        /** STARTTLS is required unless the host is loopback. */
        requireTls: z.boolean().default(false),
        timeoutMs: z.number().int().positive().default(30_000),
      })
      .strict()
      .default({}),
  })
  .strict();

export type LmtpConfig = z.infer<typeof lmtpSchema>;
