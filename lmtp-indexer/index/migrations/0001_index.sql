-- The LMTP indexer's tables (lmtp-indexer/). One row per delivered message per recipient.
-- Needs the trusted btree_gin extension (any database owner may create it) so one GIN index
-- serves "this account AND these words": without it a common word scans every account's rows.
-- The extension is per database while the migrator's lock is per schema: serialise creators here.
SELECT pg_advisory_xact_lock(1667589490, 1);
CREATE EXTENSION IF NOT EXISTS btree_gin SCHEMA public;

CREATE TABLE indexed_messages (
  id bigserial PRIMARY KEY,
  -- The recipient (the Dovecot user), lower case.
  account text NOT NULL,
  -- SHA-256 of the message exactly as Postfix handed it to us. With account, the idempotency key:
  -- a retried delivery or a replayed backlog entry never makes a second row.
  content_sha256 bytea NOT NULL CHECK (octet_length(content_sha256) = 32),
  size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
  received_at timestamptz NOT NULL,
  queue_id text,
  message_id text,
  in_reply_to text,
  refs text[] NOT NULL DEFAULT '{}',
  from_address text,
  from_name text,
  to_addresses text[] NOT NULL DEFAULT '{}',
  cc_addresses text[] NOT NULL DEFAULT '{}',
  subject text,
  sent_at timestamptz,
  has_attachment boolean NOT NULL DEFAULT false,
  -- [{name, contentType, size}]
  attachments jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(attachments) = 'array'),
  -- From our milter's X-Spam-Score / X-Spam-Status and Authentication-Results headers.
  spam_score real,
  spam_status text,
  auth_results text,
  spf text,
  dkim text,
  dmarc text,
  snippet text NOT NULL DEFAULT '',
  -- Text search configuration the tsvector was built with (lmtp.index.language).
  language regconfig NOT NULL,
  tsv tsvector NOT NULL,
  -- What the parser could not read (limits hit, bad encodings); the message is delivered anyway.
  parse_problems text[] NOT NULL DEFAULT '{}',
  -- Where the message lives in Dovecot, from its push notifications; NULL until the first one.
  mailbox text,
  uid_validity bigint,
  imap_uid bigint,
  flags text[] NOT NULL DEFAULT '{}',
  expunged_at timestamptz,
  UNIQUE (account, content_sha256)
);

-- Search: account + words in one GIN scan; account + date for listing and "newest first".
CREATE INDEX indexed_messages_account_tsv ON indexed_messages USING gin (account, tsv);
CREATE INDEX indexed_messages_account_received ON indexed_messages (account, received_at DESC, id DESC);
-- Push notifications find rows by Message-ID at first, by mailbox and UID afterwards.
CREATE INDEX indexed_messages_account_message_id ON indexed_messages (account, message_id);
CREATE INDEX indexed_messages_account_uid ON indexed_messages (account, mailbox, imap_uid);

-- Per-account event log for real-time clients. `seq` is the resume cursor: it is taken from
-- mail_event_counters under a row lock held until commit, so one account's events commit in seq
-- order with no gaps, and "everything after seq N" never misses a late-committing event.
CREATE TABLE mail_event_counters (
  account text PRIMARY KEY,
  seq bigint NOT NULL DEFAULT 0
);

CREATE TABLE mail_events (
  account text NOT NULL,
  seq bigint NOT NULL,
  -- new: delivered and indexed; flags: flags changed; move: now in another mailbox; expunge: gone.
  kind text NOT NULL CHECK (kind IN ('new', 'flags', 'move', 'expunge')),
  message_row bigint REFERENCES indexed_messages (id) ON DELETE SET NULL,
  payload jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account, seq)
);
CREATE INDEX mail_events_created ON mail_events (created_at);

-- Per-account API tokens (`ceerion token create user@domain`); only a SHA-256 of each is kept.
CREATE TABLE api_tokens (
  id bigserial PRIMARY KEY,
  account text NOT NULL,
  token_sha256 bytea NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
  label text,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at timestamptz
);
CREATE INDEX api_tokens_account ON api_tokens (account);
