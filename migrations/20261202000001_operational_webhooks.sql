-- Operational webhooks (issue 14, part 3): Herald's own events (an endpoint created,
-- changed, disabled; a delivery failing, dead, recovered; a circuit opened or closed), sent
-- through Herald's own engine as messages of one reserved application, whose endpoints are
-- the operator's (`/api/v1/operational-webhook/endpoint`).
--
-- Each event is written in the transaction of the change it reports, so it is emitted
-- exactly once per occurrence: an endpoint's changes by the trigger below (whoever made
-- them: the API, the dashboard, the engine, SQL written by hand), a delivery's by the
-- statement that records its outcome (`store::outcome`), a circuit's by the recorder.
-- A lock wait gives up after 10 s rather than stall producers behind it (migrate again).
-- The tables are altered in the order the engine locks them (delivery, then endpoint), so
-- that this cannot deadlock with an instance still running.
SET LOCAL lock_timeout = '10s';

-- A delivery whose failing or exhausted event went out: its next success is a recovery.
-- (A constant default: no table rewrite.)
ALTER TABLE herald.delivery ADD COLUMN alerted boolean NOT NULL DEFAULT false;

-- Why an endpoint is disabled, as data (the reason stays the words people read):
-- 'manual' (the API, the dashboard), 'gone' (its receiver answered 410), 'failing' (no
-- success for HERALD_DISABLE_AFTER). NULL while enabled, and for rows disabled by hand in
-- SQL without one (reported as manual).
ALTER TABLE herald.endpoint ADD COLUMN disabled_cause text
    CHECK (disabled_cause IN ('manual', 'gone', 'failing'));
UPDATE herald.endpoint SET disabled_cause = CASE
        WHEN disabled_reason LIKE 'receiver answered % Gone' THEN 'gone'
        WHEN disabled_reason LIKE '%(HERALD_DISABLE_AFTER)' THEN 'failing'
        ELSE 'manual' END
    WHERE disabled;

-- The reserved application, made with the first operational endpoint. At most one. It is
-- not one of the API's applications (`/api/v1/app` neither lists nor finds it).
ALTER TABLE herald.application ADD COLUMN operational boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX application_operational_idx ON herald.application (operational)
    WHERE operational;

-- Timestamps in event payloads as Svix writes them: RFC 3339 in UTC, whatever the
-- session's TimeZone.
CREATE FUNCTION herald.rfc3339(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- An attempt as delivery events show it (Svix's MessageAttemptFailedData; no answer is
-- status 0), with Herald's `error`.
CREATE FUNCTION herald.attempt_event_data(id text, status_code smallint, started_at timestamptz,
                                          error text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('id', id, 'responseStatusCode', coalesce(status_code, 0),
                              'timestamp', herald.rfc3339(started_at), 'error', error)
$$;

-- Whether an event of `event_type` about something of application `subject_app` would go
-- anywhere: some enabled operational endpoint takes the type, and the subject is not the
-- reserved application's own (a dead operational endpoint would otherwise report itself to
-- itself without end).
CREATE FUNCTION herald.operational_wanted(subject_app text, event_type text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM herald.application a JOIN herald.endpoint e ON e.app_id = a.id
        WHERE a.operational AND a.id <> subject_app AND NOT e.disabled
          AND (e.event_types IS NULL OR operational_wanted.event_type = ANY (e.event_types)))
$$;

-- Emits one operational event about something of application `subject_app`: a message
-- `{"type": event_type, "data": data}` of the reserved application, delivered to each of
-- its enabled endpoints that subscribe to the type; nothing unless it is wanted (above).
-- `event_id`, when given, makes it idempotent (a retried write emits nothing twice).
-- Returns the message id, or NULL.
CREATE FUNCTION herald.emit_operational(subject_app text, event_type text, data jsonb,
                                        event_id text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_app text;
    v_msg text;
BEGIN
    IF NOT herald.operational_wanted(subject_app, emit_operational.event_type) THEN
        RETURN NULL;
    END IF;
    SELECT a.id INTO v_app FROM herald.application a WHERE a.operational;
    INSERT INTO herald.message (app_id, event_type, event_id, payload)
        VALUES (v_app, emit_operational.event_type, emit_operational.event_id,
                jsonb_build_object('type', emit_operational.event_type, 'data', data)::text)
        ON CONFLICT (app_id, event_id) DO NOTHING
        RETURNING id INTO v_msg;
    IF v_msg IS NULL THEN
        RETURN NULL;  -- emitted before, under this event_id
    END IF;
    INSERT INTO herald.delivery (message_id, endpoint_id, app_id)
        SELECT v_msg, e.id, v_app FROM herald.endpoint e
        WHERE e.app_id = v_app AND NOT e.disabled
          AND (e.event_types IS NULL OR emit_operational.event_type = ANY (e.event_types));
    PERFORM pg_notify('herald_delivery', '');
    RETURN v_msg;
END
$$;

-- What every endpoint event says of its endpoint (Svix's EndpointCreatedEventData and
-- siblings), plus Herald's `endpointUrl`.
CREATE FUNCTION herald.endpoint_event_data(e herald.endpoint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'appId', e.app_id,
        'appUid', (SELECT a.uid FROM herald.application a WHERE a.id = e.app_id),
        'endpointId', e.id,
        'endpointUid', e.uid,
        'endpointUrl', e.url)
$$;

-- endpoint.created / endpoint.deleted. Callback endpoints (made for a URL a message named)
-- come and go with messages, not with anyone's decision: only their disabling is reported.
CREATE FUNCTION herald.endpoint_lifecycle_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    e herald.endpoint := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
BEGIN
    IF NOT e.callback THEN
        PERFORM herald.emit_operational(e.app_id,
            CASE WHEN TG_OP = 'DELETE' THEN 'endpoint.deleted' ELSE 'endpoint.created' END,
            herald.endpoint_event_data(e));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER endpoint_created_event AFTER INSERT ON herald.endpoint
    FOR EACH ROW EXECUTE FUNCTION herald.endpoint_lifecycle_event();
CREATE TRIGGER endpoint_deleted_event AFTER DELETE ON herald.endpoint
    FOR EACH ROW EXECUTE FUNCTION herald.endpoint_lifecycle_event();

-- endpoint.disabled (with Svix's `trigger`, and Herald's `cause` and `reason`),
-- endpoint.enabled, endpoint.updated (a setting changed; the engine's own bookkeeping,
-- such as first_failure_at, is not an update).
CREATE FUNCTION herald.endpoint_changed_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    cause text := coalesce(NEW.disabled_cause, 'manual');
BEGIN
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
CREATE TRIGGER endpoint_changed_event AFTER UPDATE ON herald.endpoint
    FOR EACH ROW
    WHEN (OLD.disabled IS DISTINCT FROM NEW.disabled
          OR (NEW.url, NEW.uid, NEW.description, NEW.event_types, NEW.channels, NEW.rate_limit,
              NEW.headers, NEW.metadata, NEW.ordered, NEW.ordered_on_dead)
             IS DISTINCT FROM (OLD.url, OLD.uid, OLD.description, OLD.event_types, OLD.channels,
              OLD.rate_limit, OLD.headers, OLD.metadata, OLD.ordered, OLD.ordered_on_dead))
    EXECUTE FUNCTION herald.endpoint_changed_event();

-- The ordered claim returns whether each delivery was alerted, as the usual claim does.
DROP FUNCTION herald.lease_ordered_heads(text[], text, uuid, float8);
CREATE FUNCTION herald.lease_ordered_heads(paused text[], owner text, token uuid, lease_secs float8)
RETURNS TABLE (id bigint, attempts integer, manual boolean, alerted boolean, message_id text,
               endpoint_id text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_locked text[];
BEGIN
    SELECT array_agg(x.id) INTO v_locked FROM (
        SELECT e.id FROM herald.endpoint e
        WHERE e.ordered AND NOT e.disabled AND e.id <> ALL (paused)
        FOR NO KEY UPDATE SKIP LOCKED
    ) x;
    IF v_locked IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH heads AS MATERIALIZED (
        SELECT e.id AS ep, e.ordered_on_dead,
            (SELECT d.id FROM herald.delivery d
             WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'sending')
             ORDER BY d.id LIMIT 1) AS head
        FROM herald.endpoint e
        WHERE e.id = ANY (v_locked)
    ), ready AS MATERIALIZED (
        SELECT h.head FROM heads h
        JOIN herald.delivery d ON d.id = h.head
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
          AND NOT EXISTS (SELECT 1 FROM herald.delivery s
                          WHERE s.endpoint_id = h.ep AND s.status = 'sending')
          AND NOT (h.ordered_on_dead = 'block' AND EXISTS (
                  SELECT 1 FROM herald.delivery x
                  WHERE x.endpoint_id = h.ep AND x.status = 'dead' AND x.id < h.head))
    )
    UPDATE herald.delivery d
    SET status = 'sending', lease_owner = owner, lease_token = token,
        lease_expires_at = now() + make_interval(secs => lease_secs), updated_at = now()
    WHERE d.id = ANY (ARRAY(SELECT r.head FROM ready r)) AND d.status = 'pending'
    RETURNING d.id, d.attempts, d.manual, d.alerted, d.message_id, d.endpoint_id;
END
$$;
