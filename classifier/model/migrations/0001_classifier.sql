-- Classifier model storage and the learn log (classifier/model).
-- Snapshots are opaque containers (classifier/model/container.ts); learn events carry the opaque
-- feature payload each milter process needs to apply a learn to its in-memory model. Every milter
-- LISTENs on `ceerion_classifier`: a new event or a newly activated model reaches all of them.

CREATE TABLE classifier_models (
  version serial PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- The encoded container, verified by the store before it is written.
  blob bytea NOT NULL,
  -- Of the whole blob, as `sha256sum` of an export prints it.
  sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  -- [{name, bytes, sha256}] in container order, so listing versions needs no blob.
  sections jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(sections) = 'array'),
  -- The newest learn event the snapshot includes: subscribers replay only the events after it.
  last_event_id bigint NOT NULL DEFAULT 0 CHECK (last_event_id >= 0),
  note text,
  active boolean NOT NULL DEFAULT false
);

-- At most one active version, enforced at once ...
CREATE UNIQUE INDEX classifier_models_one_active ON classifier_models (active) WHERE active;

-- ... and at least one whenever any version exists, checked at commit (an activation switches
-- versions with two updates, and the first model is saved then activated in one transaction).
CREATE FUNCTION classifier_models_check_active() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  missing boolean;
BEGIN
  -- Qualified by the trigger's schema: the session's search_path may name another installation.
  EXECUTE format('SELECT EXISTS (SELECT 1 FROM %1$I.classifier_models) AND NOT EXISTS (SELECT 1 FROM %1$I.classifier_models WHERE active)',
                 TG_TABLE_SCHEMA) INTO missing;
  IF missing THEN
    RAISE EXCEPTION 'classifier_models: no active version (activate another version before deactivating or deleting this one)'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER classifier_models_check_active
  AFTER INSERT OR UPDATE OR DELETE ON classifier_models
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION classifier_models_check_active();

-- What each message was last learned as, per scope, so learning the same message twice is a
-- no-op and learning it as the other class is a relearn (unlearn the old class first).
CREATE TABLE classifier_learned (
  content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
  -- '' = global, else 'user:alice' or 'domain:example.com'.
  scope text NOT NULL DEFAULT '' CHECK (scope = '' OR scope ~ '^(user|domain):[^[:space:][:cntrl:]]+$'),
  cls text NOT NULL CHECK (cls IN ('spam', 'ham')),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (content_hash, scope)
);

-- A bigserial whose value the trigger below draws (see there), hence no column default.
CREATE SEQUENCE classifier_events_id_seq;

CREATE TABLE classifier_events (
  id bigint PRIMARY KEY,
  content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
  scope text NOT NULL DEFAULT '' CHECK (scope = '' OR scope ~ '^(user|domain):[^[:space:][:cntrl:]]+$'),
  cls text NOT NULL CHECK (cls IN ('spam', 'ham')),
  previous text CHECK (previous IN ('spam', 'ham') AND previous <> cls),
  payload bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

ALTER SEQUENCE classifier_events_id_seq OWNED BY classifier_events.id;

-- Subscribers read "events with id > the last one applied". That is only safe if a visible id
-- implies every smaller id is visible too (or rolled back for good): a sequence alone does not
-- promise it, since a transaction holding id 10 may commit after another holding id 11, and a
-- reader that saw 11 would skip 10 forever. So inserts take a transaction-scoped lock (per schema)
-- and only then draw their id: ids are handed out in commit order (PostgreSQL releases the lock
-- after the commit is visible). Learning is rare enough that serializing it costs nothing. It is a
-- trigger so that inserts made with plain SQL obey it too.
CREATE FUNCTION classifier_events_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- 0x6365636c = 'cecl'; the second key keeps installations in different schemas independent.
  PERFORM pg_advisory_xact_lock(x'6365636c'::int, hashtext(TG_TABLE_SCHEMA));
  -- Any id the INSERT supplied is replaced: only an id drawn under the lock is safe.
  NEW.id := nextval(format('%I.classifier_events_id_seq', TG_TABLE_SCHEMA)::regclass);
  RETURN NEW;
END
$$;

CREATE TRIGGER classifier_events_order
  BEFORE INSERT ON classifier_events
  FOR EACH ROW EXECUTE FUNCTION classifier_events_order();

-- NOTIFY is delivered at commit, in commit order. The channel is database-wide, so installations in
-- other schemas of the same database cause extra (harmless) catch-up reads.
CREATE FUNCTION classifier_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('ceerion_classifier', NEW.id::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER classifier_events_notify
  AFTER INSERT ON classifier_events
  FOR EACH ROW EXECUTE FUNCTION classifier_events_notify();

CREATE FUNCTION classifier_models_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('ceerion_classifier', 'model:' || NEW.version);
  RETURN NULL;
END
$$;

CREATE TRIGGER classifier_models_notify
  AFTER INSERT OR UPDATE OF active ON classifier_models
  FOR EACH ROW WHEN (NEW.active) EXECUTE FUNCTION classifier_models_notify();
