-- Indexes for the lookups Postfix and `ceerion account` make besides the address itself (which
-- the UNIQUE on accounts.address and the primary key (source, destination) of aliases serve):
-- - virtual_mailbox_domains (accounts/postfix/pgsql-virtual-mailbox-domains.cf) asks whether any
--   account or alias source is in a domain. The queries use exactly these expressions; '@domain'
--   catch-all sources have the domain as their second part too.
-- - `account list` counts the aliases delivering to each account; `account remove` deletes them.
CREATE INDEX accounts_domain ON accounts ((split_part(address, '@', 2)));
CREATE INDEX aliases_source_domain ON aliases ((split_part(source, '@', 2)));
CREATE INDEX aliases_destination ON aliases (destination);
