/**
 * Config for `ceerion learner`: the queue between users' Junk moves (Dovecot IMAPSieve, see
 * dovecot-plugins/) and the classifier. The gateway takes messages from Dovecot's pipe, the spool
 * importer takes the fallback program's files, both append to a Redis stream, and the worker
 * drains that stream into the classifier's learn log. Composed into schema.ts.
 */
import { z } from 'zod';

const octalMode = z.string().regex(/^0?[0-7]{3}$/, 'an octal mode such as 0660');

export const learnSchema = z
  .object({
    /** Run the learner with `ceerion start`. */
    enabled: z.boolean().default(true),
    /** Longest message queued for training; longer ones are logged and skipped (sa-learn does the same). */
    maxMessageBytes: z.number().int().positive().max(256 * 1024 * 1024).default(10 * 1024 * 1024),
    /**
     * Which model a user's move trains: `global` (the site-wide model every milter scores with) or
     * `user` (that user's scope only; per-user models are recorded, not yet used for scoring).
     */
    scope: z.enum(['global', 'user']).default('global'),
    /**
     * Also train when a client sets the `$Junk` / `$NotJunk` keyword without moving the message
     * (imapsieve-flags.conf). Off by default: most clients move. A flag plus a move of the same
     * message counts once (the classifier keys each learn on the message's hash).
     */
    flags: z.boolean().default(false),
    queue: z
      .object({
        /** Redis stream key (after redis.keyPrefix). */
        stream: z.string().min(1).default('learn:queue'),
        /** Entries that failed maxAttempts times move here, for `ceerion learner status` and a look by hand. */
        deadStream: z.string().min(1).default('learn:dead'),
        /** Consumer group shared by every worker (any number of learner processes may run). */
        group: z.string().min(1).default('learners'),
        /** Approximate cap on queued entries (XADD MAXLEN ~): a stuck worker cannot fill Redis. */
        maxLength: z.number().int().positive().default(100_000),
        /** Each Redis command may take this long (a 10 MB message is written in one XADD). */
        commandTimeoutMs: z.number().int().positive().default(5_000),
      })
      .strict()
      .default({}),
    gateway: z
      .object({
        /**
         * The unix socket Dovecot's vnd.dovecot.pipe connects to: base_dir + sieve_pipe_socket_dir +
         * "/ceerion-learn". Empty: no gateway (Dovecot then runs the fallback program).
         */
        socket: z.string().default('/run/dovecot/ceerion-learn/ceerion-learn'),
        /** The mail processes (the user that owns the mailboxes) must be able to connect. */
        socketMode: octalMode.default('0666'),
        /** A connection that sends nothing for this long is dropped (Dovecot's sieve_pipe_exec_timeout is 10 s). */
        idleTimeoutMs: z.number().int().positive().default(10_000),
        /** Largest request header (the VERSION, env and argument lines before the message). */
        maxHeaderBytes: z.number().int().positive().max(1024 * 1024).default(16 * 1024),
      })
      .strict()
      .default({}),
    spool: z
      .object({
        /** Where the fallback program (dovecot-plugins/bin/ceerion-learn) writes: tmp/ and new/ inside. */
        dir: z.string().min(1).default('./var/learn/spool'),
        /** How often the spool is checked for new files. */
        scanIntervalMs: z.number().int().positive().default(5_000),
      })
      .strict()
      .default({}),
    worker: z
      .object({
        enabled: z.boolean().default(true),
        /** Entries read per batch. */
        batchSize: z.number().int().positive().max(1000).default(32),
        /** A failed learn is retried after this long (PostgreSQL or the classifier down). */
        retryDelayMs: z.number().int().positive().default(2_000),
        /** After this many failed tries an entry moves to the dead stream. */
        maxAttempts: z.number().int().positive().default(20),
        /** Entries another worker read but did not finish within this are taken over. */
        claimIdleMs: z.number().int().positive().default(60_000),
      })
      .strict()
      .default({}),
  })
  .strict();

export type LearnConfig = z.infer<typeof learnSchema>;
