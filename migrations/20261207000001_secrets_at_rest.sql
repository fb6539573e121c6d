-- Secrets encrypted at rest (issue 16). Herald seals endpoint and application signing
-- secrets, custom header values and sources' secrets itself (src/keyring: AES-256-GCM, the
-- key never reaches the database); the columns keep their types, a sealed value being the
-- text `hk1:{key id}:{base64}`. Existing plaintext rows are sealed by Herald while it runs
-- (the retention actor's sweep), in short batches: nothing here rewrites a table.
--
-- What the database has to know: re-sealing an endpoint's header values (a sweep, or
-- `herald keys rotate`) is not a change of the endpoint, so it is no `endpoint.updated`
-- operational event. The sweep says so for its transaction with `herald.resealing`.
CREATE OR REPLACE FUNCTION herald.endpoint_changed_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    cause text := coalesce(NEW.disabled_cause, 'manual');
BEGIN
    IF current_setting('herald.resealing', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF NEW.disabled AND NOT OLD.disabled THEN
        PERFORM herald.emit_operational(NEW.app_id, 'endpoint.disabled',
            herald.endpoint_event_data(NEW) || jsonb_build_object(
                'trigger', CASE WHEN cause = 'manual' THEN 'manual' ELSE 'automatic' END,
                'cause', cause,
                'reason', NEW.disabled_reason,
                'failSince', herald.rfc3339(NEW.first_failure_at)));
    ELSIF OLD.disabled AND NOT NEW.disabled THEN
        PERFORM herald.emit_operational(NEW.app_id, 'endpoint.enabled', herald.endpoint_event_data(NEW));
    END IF;
    IF NOT NEW.callback AND (NEW.url, NEW.uid, NEW.description, NEW.event_types, NEW.channels,
            NEW.rate_limit, NEW.headers, NEW.metadata, NEW.ordered, NEW.ordered_on_dead)
        IS DISTINCT FROM (OLD.url, OLD.uid, OLD.description, OLD.event_types, OLD.channels,
            OLD.rate_limit, OLD.headers, OLD.metadata, OLD.ordered, OLD.ordered_on_dead) THEN
        PERFORM herald.emit_operational(NEW.app_id, 'endpoint.updated', herald.endpoint_event_data(NEW));
    END IF;
    RETURN NULL;
END
$$;

-- A signing secret is a key of 24 to 64 bytes, or such a key sealed.
SET LOCAL lock_timeout = '10s';
ALTER TABLE herald.endpoint_secret DROP CONSTRAINT endpoint_secret_key_check,
    ADD CONSTRAINT endpoint_secret_key_check
    CHECK (octet_length(key) BETWEEN 24 AND 64 OR substring(key FROM 1 FOR 4) = 'hk1:'::bytea);
ALTER TABLE herald.application_secret DROP CONSTRAINT application_secret_key_check,
    ADD CONSTRAINT application_secret_key_check
    CHECK (octet_length(key) BETWEEN 24 AND 64 OR substring(key FROM 1 FOR 4) = 'hk1:'::bytea);
