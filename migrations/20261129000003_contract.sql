-- The contract, everywhere: rows written by hand, scheduled messages, payload retention,
-- idempotency keys that never stick, background tasks, and event-type fields kept as given.
-- (Upgrading: the instances of the previous version stop before this runs; see README.)

-- Nothing here may wait long on a lock held by a producer: fail instead, and let the
-- operator run it again at a quieter moment.
SET LOCAL lock_timeout = '10s';

-- 1. Rows written by hand are part of the contract (the README teaches it). What the
--    dispatcher cannot use is refused, as the API refuses it: on insert, and on update of
--    the column concerned. (Not a CHECK constraint: PostgreSQL re-checks one on every update
--    of a row, so an old row that breaks a rule could not even have its failure time
--    recorded. Rows stored before these rules stay as they are; the claim copes with them: a
--    bad row fails only its own deliveries.)
CREATE FUNCTION herald.is_string_map(j jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_typeof(j) = 'object'
       AND NOT EXISTS (SELECT 1 FROM jsonb_each(j) e WHERE jsonb_typeof(e.value) <> 'string')
$$;

-- A uid never takes the shape of one of Herald's ids: wherever "id or uid" is accepted, a
-- uid `app_…` could otherwise name another tenant's application.
CREATE FUNCTION herald.is_uid(u text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT u ~ '^[a-zA-Z0-9._-]+$' AND length(u) <= 256 AND u !~ '^(app|ep|msg|atmpt|qtask)_'
$$;

-- Raises what a CHECK constraint would (23514, naming the rule).
CREATE FUNCTION herald.refuse(tbl text, rule text, detail text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'herald.%: %', tbl, detail
        USING ERRCODE = 'check_violation', CONSTRAINT = rule, TABLE = tbl;
END
$$;

CREATE FUNCTION herald.check_application() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.uid IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.uid IS DISTINCT FROM OLD.uid)
       AND NOT herald.is_uid(NEW.uid) THEN
        PERFORM herald.refuse('application', 'application_uid_shape', format(
            'uid %L must be 1 to 256 of a-z, A-Z, 0-9, dot, underscore and hyphen, and not look like a Herald id', NEW.uid));
    END IF;
    IF (TG_OP = 'INSERT' OR NEW.metadata IS DISTINCT FROM OLD.metadata)
       AND NOT herald.is_string_map(NEW.metadata) THEN
        PERFORM herald.refuse('application', 'application_metadata_strings',
            'metadata must be a JSON object of strings');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER application_contract BEFORE INSERT OR UPDATE ON herald.application
    FOR EACH ROW EXECUTE FUNCTION herald.check_application();

CREATE FUNCTION herald.check_endpoint() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.uid IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.uid IS DISTINCT FROM OLD.uid)
       AND NOT herald.is_uid(NEW.uid) THEN
        PERFORM herald.refuse('endpoint', 'endpoint_uid_shape', format(
            'uid %L must be 1 to 256 of a-z, A-Z, 0-9, dot, underscore and hyphen, and not look like a Herald id', NEW.uid));
    END IF;
    IF (TG_OP = 'INSERT' OR NEW.url IS DISTINCT FROM OLD.url)
       AND NEW.url !~* '^https?://[^/?#[:space:]]+' THEN
        PERFORM herald.refuse('endpoint', 'endpoint_url_http',
            format('url %L must be an http(s) URL with a host', NEW.url));
    END IF;
    IF (TG_OP = 'INSERT' OR NEW.headers IS DISTINCT FROM OLD.headers)
       AND NOT herald.is_string_map(NEW.headers) THEN
        PERFORM herald.refuse('endpoint', 'endpoint_headers_strings',
            'headers must be a JSON object of strings');
    END IF;
    IF (TG_OP = 'INSERT' OR NEW.metadata IS DISTINCT FROM OLD.metadata)
       AND NOT herald.is_string_map(NEW.metadata) THEN
        PERFORM herald.refuse('endpoint', 'endpoint_metadata_strings',
            'metadata must be a JSON object of strings');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER endpoint_contract BEFORE INSERT OR UPDATE ON herald.endpoint
    FOR EACH ROW EXECUTE FUNCTION herald.check_endpoint();

CREATE FUNCTION herald.check_event_type() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP = 'INSERT' OR NEW.name IS DISTINCT FROM OLD.name)
       AND (NEW.name !~ '^[a-zA-Z0-9._-]+$' OR length(NEW.name) > 256) THEN
        PERFORM herald.refuse('event_type', 'event_type_name_shape', format(
            'name %L must be 1 to 256 of a-z, A-Z, 0-9, dot, underscore and hyphen', NEW.name));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER event_type_contract BEFORE INSERT OR UPDATE ON herald.event_type
    FOR EACH ROW EXECUTE FUNCTION herald.check_event_type();

-- 2. Event types: JSON schemas are kept as the text they were given (jsonb rewrote numbers,
--    and some, like 1.7976931348623157e308, could not be read back); group and feature flags.
ALTER TABLE herald.event_type ALTER COLUMN schemas TYPE json USING schemas::json;
ALTER TABLE herald.event_type
    ADD COLUMN group_name text CHECK (group_name ~ '^[a-zA-Z0-9._-]+$' AND length(group_name) <= 256),
    ADD COLUMN feature_flags text[];
UPDATE herald.event_type SET feature_flags = ARRAY[feature_flag] WHERE feature_flag IS NOT NULL;
ALTER TABLE herald.event_type DROP COLUMN feature_flag;

-- 3. Scheduled messages (`deliverAt`) and payload retention (`payloadRetentionPeriod`).
ALTER TABLE herald.message
    ADD COLUMN deliver_at timestamptz,
    ADD COLUMN payload_expires_at timestamptz;
-- (Its index is built without blocking, in a migration of its own.)

-- Settings the SQL functions need. The functions cannot read Herald's environment, so each
-- instance writes its effective values here at start-up (the last one started wins).
CREATE TABLE herald.runtime_setting (
    name        text PRIMARY KEY,
    value       text NOT NULL,
    written_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- 4. Idempotency keys: scoped to the caller, bound to the request's body, and an
--    in-progress claim that expires (a crash between claim and answer no longer leaves the
--    key stuck); the claim's token says whose it is. A message create records the message
--    it made instead of an answer body. (The key (scope, key) is built without blocking in
--    the next migrations; keys written before have scope '' and are not found again.)
ALTER TABLE herald.idempotency
    ADD COLUMN scope text NOT NULL DEFAULT '',
    ADD COLUMN fingerprint bytea,
    ADD COLUMN locked_until timestamptz,
    ADD COLUMN claim_token uuid,
    ADD COLUMN message_id text COLLATE "C";

-- 5. Background tasks (recover, replay-missing, bulk replay), so their ids can be looked up.
CREATE TABLE herald.background_task (
    id          text COLLATE "C" PRIMARY KEY DEFAULT herald.new_id('qtask'),
    task        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    data        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX background_task_created_idx ON herald.background_task (created_at);
