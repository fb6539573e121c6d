-- The contract, everywhere: rows written by hand, scheduled messages, payload retention,
-- idempotency keys that never stick, background tasks, and event-type fields kept as given.

-- 1. Rows written by hand are part of the contract (the README teaches it). What the
--    dispatcher cannot use is refused here, as the API refuses it. NOT VALID: rows already
--    stored are not re-checked (the claim copes with them: a bad row fails only its own
--    deliveries), new and updated rows are.
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

ALTER TABLE herald.application
    ADD CONSTRAINT application_uid_shape CHECK (uid IS NULL OR herald.is_uid(uid)) NOT VALID,
    ADD CONSTRAINT application_metadata_strings CHECK (herald.is_string_map(metadata)) NOT VALID;
ALTER TABLE herald.endpoint
    ADD CONSTRAINT endpoint_uid_shape CHECK (uid IS NULL OR herald.is_uid(uid)) NOT VALID,
    ADD CONSTRAINT endpoint_url_http CHECK (url ~* '^https?://[^/?#\s]+') NOT VALID,
    ADD CONSTRAINT endpoint_headers_strings CHECK (herald.is_string_map(headers)) NOT VALID,
    ADD CONSTRAINT endpoint_metadata_strings CHECK (herald.is_string_map(metadata)) NOT VALID;
ALTER TABLE herald.event_type
    ADD CONSTRAINT event_type_name_shape
        CHECK (name ~ '^[a-zA-Z0-9._-]+$' AND length(name) <= 256) NOT VALID;

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
CREATE INDEX message_payload_expiry_idx ON herald.message (payload_expires_at)
    WHERE payload IS NOT NULL AND payload_expires_at IS NOT NULL;

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
--    key stuck). A message create records the message it made instead of an answer body.
ALTER TABLE herald.idempotency
    ADD COLUMN scope text NOT NULL DEFAULT '',
    ADD COLUMN fingerprint bytea,
    ADD COLUMN locked_until timestamptz,
    ADD COLUMN message_id text COLLATE "C";
ALTER TABLE herald.idempotency DROP CONSTRAINT idempotency_pkey;
ALTER TABLE herald.idempotency ADD PRIMARY KEY (scope, key);

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
