/**
 * Config for `ceerion backup` (run, drill, list, prune, rotate-key, rewrap): what is backed up,
 * where it goes (S3 or an S3-compatible server), how it is compressed and encrypted, which key
 * provider wraps the data keys, retention, and the drill's targets. Composed into schema.ts.
 * Secrets (S3 keys, Vault token) come from the environment, never from the YAML file's defaults.
 */
import { z } from 'zod';

const KiB = 1024;
const MiB = 1024 * KiB;

export const backupSchema = z
  .object({
    s3: z
      .object({
        /** Empty: AWS's regional endpoint. Set it for MinIO, Ceph, Garage, s3rver … */
        endpoint: z.string().url().or(z.literal('')).default(''),
        region: z.string().min(1).default('us-east-1'),
        bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name').default('ceerion-backups'),
        /** Every object key starts with this (several installations may share a bucket). */
        prefix: z.string().regex(/^([A-Za-z0-9!_.*'()-]+\/)*$/, 'empty or path segments ending in "/"').default('backups/'),
        /** Path-style URLs (http://host/bucket/key): what most S3-compatible servers want. */
        forcePathStyle: z.boolean().default(true),
        /** From AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the SDK's usual chain) when empty. */
        accessKeyId: z.string().default(''),
        secretAccessKey: z.string().default(''),
        /** Smallest multipart part; raised automatically so the expected size fits in 10,000 parts. */
        partBytes: z.number().int().min(5 * MiB).max(5 * 1024 * MiB).default(16 * MiB),
        /** Parts uploaded at once (memory: partBytes × queueSize). */
        queueSize: z.number().int().min(1).max(64).default(4),
        /** Attempts per request, with the SDK's backoff (network errors, 5xx, throttling). */
        maxAttempts: z.number().int().min(1).max(20).default(5),
      })
      .strict()
      .default({}),
    compression: z
      .object({
        /** `auto`: the zstd CLI when installed, else gzip (zlib). */
        codec: z.enum(['auto', 'zstd', 'gzip']).default('auto'),
        /**
         * zstd 1–19 or gzip 1–9. Default 1: on this suite's pg_dump archives zstd -1 was both
         * faster (1.06 s vs 1.52 s, 45% less CPU) and smaller (59 vs 69 MB of 402 MB) than -3.
         */
        level: z.number().int().min(1).max(19).default(1),
        /** zstd worker threads (-T); 0 = one per core. */
        threads: z.number().int().min(0).max(64).default(0),
      })
      .strict()
      .default({}),
    encryption: z
      .object({
        /** Plaintext bytes per AES-256-GCM chunk (each chunk carries its own 16-byte tag). */
        chunkBytes: z.number().int().min(4 * KiB).max(16 * MiB).default(1 * MiB),
      })
      .strict()
      .default({}),
    keys: z
      .object({
        provider: z.enum(['local', 'aws-kms', 'vault']).default('local'),
        local: z
          .object({
            /** Versioned key-encryption keys, mode 0600; `ceerion backup keyring init` creates it. */
            keyring: z.string().min(1).default('./var/backup/keyring.json'),
          })
          .strict()
          .default({}),
        awsKms: z
          .object({
            /** Key ARN, id or `alias/…`; new backups use it, old ones name their own in the manifest. */
            keyId: z.string().default(''),
            region: z.string().default(''),
            /** Empty: AWS. Set for a KMS-compatible endpoint. */
            endpoint: z.string().url().or(z.literal('')).default(''),
          })
          .strict()
          .default({}),
        vault: z
          .object({
            /** e.g. https://vault.example.net:8200; the token comes from VAULT_TOKEN. */
            address: z.string().url().or(z.literal('')).default(''),
            token: z.string().default(''),
            /** Transit secrets engine mount and key name. */
            mount: z.string().regex(/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/, 'a mount path such as transit').default('transit'),
            keyName: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'a transit key name').default('ceerion-backup'),
            namespace: z.string().default(''),
          })
          .strict()
          .default({}),
      })
      .strict()
      .default({}),
    /** What goes into a backup besides the database. */
    include: z
      .object({
        /** Dovecot's mail storage root (e.g. /var/vmail); empty: no maildir snapshot. */
        maildir: z.string().default(''),
        /** Files and folders stored as `extras` (DKIM keys, the suite's config file). */
        extras: z.array(z.string().min(1)).default([]),
        /** Content hashes recorded in the manifest per tree, for the drill's restore sample. */
        sampleFiles: z.number().int().min(0).max(100_000).default(200),
      })
      .strict()
      .default({}),
    retention: z
      .object({
        keepDaily: z.number().int().min(0).default(7),
        keepWeekly: z.number().int().min(0).default(4),
        keepMonthly: z.number().int().min(0).default(6),
        /** Objects of a backup that never completed (no manifest) are deleted after this long. */
        incompleteAfterHours: z.number().positive().default(48),
      })
      .strict()
      .default({}),
    drill: z
      .object({
        /** Server the scratch database is created on; empty: the suite's own database server. */
        target: z.string().regex(/^postgres(ql)?:\/\//, 'a postgres:// URL').or(z.literal('')).default(''),
        rpoHours: z.number().positive().default(24),
        rtoMinutes: z.number().positive().default(60),
        /** Where the decrypted dump is staged for pg_restore (empty: the OS temp dir). */
        workDir: z.string().default(''),
        /** pg_restore --jobs. */
        restoreJobs: z.number().int().min(1).max(32).default(2),
      })
      .strict()
      .default({}),
  })
  .strict();

export type BackupConfig = z.infer<typeof backupSchema>;
