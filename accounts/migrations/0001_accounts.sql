-- Mail accounts: Dovecot's passdb/userdb (driver = sql) and Postfix's virtual_mailbox_maps read
-- this table; the LMTP indexer looks recipients up in it and search tokens belong to its rows.
-- Addresses are stored lower case (the CHECK keeps every writer honest), so lookups are exact.

CREATE TABLE accounts (
  id bigserial PRIMARY KEY,
  address text NOT NULL UNIQUE CHECK (address = lower(address) AND address ~ '^[^@\s]+@[^@\s]+$'),
  -- A hash in a scheme Dovecot verifies itself, with its {SCHEME} prefix ({ARGON2ID}, {BLF-CRYPT}).
  password text NOT NULL CHECK (password ~ '^\{[A-Z0-9-]+\}'),
  -- Dovecot quota_rule for the user, e.g. '*:storage=1G'; NULL means the global default.
  quota_rule text,
  enabled boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- virtual_alias_maps: source address (or @domain catch-all) to one destination each row.
CREATE TABLE aliases (
  source text NOT NULL CHECK (source = lower(source)),
  destination text NOT NULL CHECK (destination = lower(destination)),
  PRIMARY KEY (source, destination)
);
