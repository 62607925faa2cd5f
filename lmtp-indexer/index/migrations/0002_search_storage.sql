-- Search speed over large mailboxes (bench/lmtp/search.ts: p95 67 ms → 20 ms over 1M messages).
-- Keep tsvectors up to ~8 KB inside the row, compressed with lz4. By default PostgreSQL moves
-- anything over 2 KB to TOAST (about a third of the rows), and ranking and phrase checks then read
-- TOAST for every candidate. lz4 needs PostgreSQL 14+ built with it (Debian's is). Only rows
-- written afterwards change; older rows change on VACUUM FULL or pg_repack.
ALTER TABLE indexed_messages SET (toast_tuple_target = 8160);
ALTER TABLE indexed_messages ALTER COLUMN tsv SET COMPRESSION lz4;
-- subject:x without this checks every message that has x anywhere. The search SQL writes the
-- subject check in exactly this expression so the planner can use it.
CREATE INDEX indexed_messages_account_subject ON indexed_messages USING gin (account, to_tsvector(language, coalesce(subject, '')));
-- has:attachment with words: walk only the rows with attachments, newest first.
CREATE INDEX indexed_messages_account_attachment ON indexed_messages (account, received_at DESC, id DESC) WHERE has_attachment;
