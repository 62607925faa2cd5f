-- Per-domain policy for the Postfix policy service (policyd/domain-policy).
-- One row per recipient/sender domain, plus `_default` for every domain without a row. Each row
-- overrides only the keys it sets: config defaults <- `_default` <- the domain's row.
-- policyd keeps the whole table in memory and reloads it when the trigger below notifies.

CREATE TABLE policy_domains (
  -- Lower case so lookups never depend on how a client spelled the domain.
  domain text PRIMARY KEY CHECK (domain <> '' AND domain = lower(domain)),
  -- Limit name -> {count, periodSeconds}; each key replaces the inherited limit as a whole.
  limits jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(limits) = 'object'),
  -- Greylist setting name -> value; each key overrides the inherited setting on its own.
  greylist jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(greylist) = 'object'),
  note text,
  updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO policy_domains (domain, note)
VALUES ('_default', 'applies to every domain without a row of its own; cannot be deleted');

-- Keep updated_at honest for changes made with plain SQL too.
CREATE FUNCTION policy_domains_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE TRIGGER policy_domains_touch
  BEFORE UPDATE ON policy_domains
  FOR EACH ROW EXECUTE FUNCTION policy_domains_touch();

-- Every change tells the listening policy services which domain changed. NOTIFY is delivered at
-- commit, and PostgreSQL folds identical notifications of one transaction into one.
CREATE FUNCTION policy_domains_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_LEVEL = 'STATEMENT' THEN
    -- TRUNCATE fires no row triggers.
    PERFORM pg_notify('ceerion_policy', '*');
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('ceerion_policy', OLD.domain);
  ELSE
    PERFORM pg_notify('ceerion_policy', NEW.domain);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER policy_domains_notify
  AFTER INSERT OR UPDATE OR DELETE ON policy_domains
  FOR EACH ROW EXECUTE FUNCTION policy_domains_notify();

CREATE TRIGGER policy_domains_notify_truncate
  AFTER TRUNCATE ON policy_domains
  FOR EACH STATEMENT EXECUTE FUNCTION policy_domains_notify();
