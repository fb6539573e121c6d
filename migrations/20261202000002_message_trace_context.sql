-- Traces (issue 14, part 4): a message keeps the trace context of the API request that
-- created it, so that its delivery attempts, however much later, link to that request's
-- span. NULL when the request was not traced (tracing off, or a producer's SQL).
-- A lock wait gives up after 10 s rather than stall producers behind it (migrate again).
SET LOCAL lock_timeout = '10s';

-- (No CHECK: adding one would scan every message under the table's lock. Only the API
-- writes it, from its own span.)
ALTER TABLE herald.message ADD COLUMN trace_context text;

-- herald.send_messages (the HTTP API's group commit), fourth version: a message's
-- `trace_context` is stored with it, and Herald's application of operational events takes
-- no message from the API (none is found by that name). Otherwise as the third
-- (20261201000002).
DROP FUNCTION herald.send_messages(herald.new_message[]);
DROP FUNCTION herald.message_rows(herald.new_message[]);
DROP TYPE herald.new_message;

CREATE TYPE herald.new_message AS (
    app                 text,     -- application id or uid
    event_type          text,
    payload             text,
    event_id            text,
    channels            text[],
    tags                text[],
    deliver_at          timestamptz,
    payload_expires_at  timestamptz,
    -- The request's idempotency key (NULL: none), its caller's scope, the request it was
    -- sent with (`METHOD path`) and a digest of its body.
    idem_scope          text,
    idem_key            text,
    idem_request        text,
    idem_fingerprint    bytea,
    -- The one URL the message goes to (NULL: the application's endpoints).
    callback_url        text,
    -- The W3C traceparent of the request that created it (NULL: not traced).
    trace_context       text
);

-- The messages of a call as rows, numbered from 1 in input order.
CREATE FUNCTION herald.message_rows(messages herald.new_message[])
RETURNS TABLE (app text, event_type text, payload text, event_id text, channels text[],
               tags text[], deliver_at timestamptz, payload_expires_at timestamptz,
               idem_scope text, idem_key text, idem_request text, idem_fingerprint bytea,
               callback_url text, trace_context text, ord bigint)
LANGUAGE sql IMMUTABLE AS $$
    SELECT * FROM unnest(messages) WITH ORDINALITY
$$;

-- One row per input message, in input order (`ord` counts from 1):
--   app_id       NULL when no application has that id or uid (nothing written);
--   message_id   the new message, or the earlier one with the same eventId;
--   created      true when this call wrote the message;
--   created_at   the new message's timestamp (NULL when not created);
--   key_taken    the idempotency key was there already: nothing was written for this
--                message, and the key_* columns describe what holds it.
-- The arguments are not checked the way herald.send_message checks its own (the API has
-- validated them). A payload that is not valid JSON fails the whole call (retry the
-- messages one by one, as the API does).
CREATE FUNCTION herald.send_messages(messages herald.new_message[])
RETURNS TABLE (ord bigint, app_id text, message_id text, created boolean,
               created_at timestamptz, key_taken boolean, key_request text,
               key_fingerprint bytea, key_status smallint, key_body bytea,
               key_message_id text)
LANGUAGE plpgsql VOLATILE
-- Planned once per session: a custom plan of these statements for every call would cost
-- more than the call itself.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_ord      bigint[];
    v_app      text[];
    v_event_id text[];
    v_id       text[];
    v_created  timestamptz[];
    v_fanout   bigint;
    v_claimed  bigint[] := '{}';
    v_keyed    boolean := EXISTS (SELECT 1 FROM unnest(messages) m WHERE m.idem_key IS NOT NULL);
BEGIN
    IF v_keyed THEN
        -- Claim the keys first: a concurrent request with the same key waits here for this
        -- transaction, then finds the key taken. A claim left by a generic request that
        -- never answered (its lock expired) is taken over if it was for this same request.
        WITH k AS (
            SELECT i.ord, i.idem_scope, i.idem_key, i.idem_request, i.idem_fingerprint
            FROM herald.message_rows(messages) i
            WHERE i.idem_key IS NOT NULL
        ), claimed AS (
            INSERT INTO herald.idempotency AS x (scope, key, request, fingerprint, status)
            SELECT k.idem_scope, k.idem_key, k.idem_request, k.idem_fingerprint, 202 FROM k
            ON CONFLICT (scope, key) DO UPDATE
                SET fingerprint = EXCLUDED.fingerprint, status = 202, body = NULL,
                    locked_until = NULL, created_at = now()
                WHERE x.status IS NULL AND x.message_id IS NULL AND x.request = EXCLUDED.request
                  AND x.fingerprint = EXCLUDED.fingerprint
                  AND coalesce(x.locked_until, '-infinity') < now()
            RETURNING x.scope, x.key
        )
        SELECT coalesce(array_agg(k.ord), '{}') INTO v_claimed
        FROM k JOIN claimed c ON c.scope = k.idem_scope AND c.key = k.idem_key;
    END IF;

    WITH input AS MATERIALIZED (
        SELECT i.*, herald.new_id('msg') AS new_id,
            (SELECT a.id FROM herald.application a
             WHERE (a.id = i.app OR a.uid = i.app) AND NOT a.operational
             ORDER BY a.id = i.app DESC LIMIT 1) AS app_id
        FROM herald.message_rows(messages) i
        WHERE i.idem_key IS NULL OR i.ord = ANY (v_claimed)
    ), checked AS MATERIALIZED (
        -- One index lookup per message with an eventId (a join could be planned as a
        -- scan of every message).
        SELECT i.*,
            CASE WHEN i.event_id IS NOT NULL AND i.app_id IS NOT NULL THEN
                (SELECT m.id FROM herald.message m
                 WHERE m.app_id = i.app_id AND m.event_id = i.event_id)
            END AS earlier
        FROM input i
    ), routed AS MATERIALIZED (
        -- The callback endpoint of a message that names a URL (made on first use; this
        -- statement's snapshot does not see one made here, hence the ids carried along).
        SELECT c.*,
            CASE WHEN c.callback_url IS NOT NULL AND c.app_id IS NOT NULL AND c.earlier IS NULL
                 THEN herald.callback_endpoint(c.app_id, c.callback_url)
            END AS callback_ep
        FROM checked c
    ), inserted AS (
        INSERT INTO herald.message (id, app_id, event_type, event_id, payload, channels, tags,
                                    deliver_at, payload_expires_at, trace_context)
        SELECT c.new_id, c.app_id, c.event_type, c.event_id, c.payload, c.channels, c.tags,
               c.deliver_at, c.payload_expires_at, c.trace_context
        FROM routed c
        -- The cast validates without storing the parsed form: the caller's bytes are kept.
        WHERE c.app_id IS NOT NULL AND c.earlier IS NULL AND c.payload::json IS NOT NULL
        ON CONFLICT (app_id, event_id) DO NOTHING
        RETURNING id, app_id, event_type, channels, deliver_at, created_at
    ), fanned AS (
        INSERT INTO herald.delivery (message_id, endpoint_id, app_id, next_attempt_at)
        SELECT m.id, e.id, m.app_id, greatest(now(), coalesce(m.deliver_at, now()))
        FROM inserted m
        JOIN routed r ON r.new_id = m.id AND r.callback_url IS NULL
        JOIN herald.endpoint e ON e.app_id = m.app_id
        WHERE NOT e.disabled AND NOT e.callback
          AND (e.event_types IS NULL OR m.event_type = ANY (e.event_types))
          AND (e.channels IS NULL OR e.channels && m.channels)
        UNION ALL
        SELECT m.id, r.callback_ep, m.app_id, greatest(now(), coalesce(m.deliver_at, now()))
        FROM inserted m
        JOIN routed r ON r.new_id = m.id AND r.callback_ep IS NOT NULL
        WHERE NOT EXISTS (SELECT 1 FROM herald.endpoint e
                          WHERE e.id = r.callback_ep AND e.disabled)
        RETURNING 1
    )
    SELECT array_agg(c.ord ORDER BY c.ord), array_agg(c.app_id ORDER BY c.ord),
           array_agg(c.event_id ORDER BY c.ord),
           array_agg(coalesce(ins.id, c.earlier) ORDER BY c.ord),
           array_agg(ins.created_at ORDER BY c.ord),
           (SELECT count(*) FROM fanned)
    INTO v_ord, v_app, v_event_id, v_id, v_created, v_fanout
    FROM routed c
    LEFT JOIN inserted ins ON ins.id = c.new_id;

    IF v_fanout > 0 THEN
        -- Identical notifications in one transaction are folded into one by PostgreSQL.
        PERFORM pg_notify('herald_delivery', '');
    END IF;

    IF cardinality(v_claimed) > 0 THEN
        -- A claimed key records the message it made; a claim whose message was not made
        -- (no application, an earlier eventId) is dropped: that answer is not replayed, the
        -- request may simply be sent again.
        WITH outcome AS (
            SELECT i.idem_scope, i.idem_key, u.created_at IS NOT NULL AS made, u.id
            FROM herald.message_rows(messages) i
            JOIN unnest(v_ord, v_id, v_created) AS u(ord, id, created_at) ON u.ord = i.ord
            WHERE i.ord = ANY (v_claimed)
        ), recorded AS (
            -- (A data-modifying CTE runs whether or not it is referenced.)
            UPDATE herald.idempotency x SET message_id = o.id
            FROM outcome o
            WHERE o.made AND x.scope = o.idem_scope AND x.key = o.idem_key
        )
        DELETE FROM herald.idempotency x USING outcome o
        WHERE NOT o.made AND x.scope = o.idem_scope AND x.key = o.idem_key;
    END IF;

    -- A message not written because its eventId was taken meanwhile (a concurrent
    -- transaction committed it, or an earlier message of this call had it): this statement
    -- sees those, and answers with the message that won. A message whose key was taken
    -- answers with what holds the key (this statement sees the committed claim).
    IF NOT v_keyed THEN
        -- The common case, without the keys' columns to fill.
        RETURN QUERY
        SELECT u.ord, u.app_id,
            coalesce(u.id, CASE WHEN u.app_id IS NOT NULL AND u.event_id IS NOT NULL THEN
                (SELECT m.id FROM herald.message m WHERE m.app_id = u.app_id AND m.event_id = u.event_id)
            END),
            u.created_at IS NOT NULL, u.created_at,
            false, NULL::text, NULL::bytea, NULL::smallint, NULL::bytea, NULL::text
        FROM unnest(v_ord, v_app, v_event_id, v_id, v_created)
            AS u(ord, app_id, event_id, id, created_at)
        ORDER BY u.ord;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT i.ord, u.app_id,
        coalesce(u.id, CASE WHEN u.app_id IS NOT NULL AND u.event_id IS NOT NULL THEN
            (SELECT m.id FROM herald.message m WHERE m.app_id = u.app_id AND m.event_id = u.event_id)
        END),
        u.created_at IS NOT NULL, u.created_at,
        i.idem_key IS NOT NULL AND u.ord IS NULL,
        x.request, x.fingerprint, x.status, x.body, x.message_id
    FROM herald.message_rows(messages) i
    LEFT JOIN unnest(v_ord, v_app, v_event_id, v_id, v_created)
        AS u(ord, app_id, event_id, id, created_at) ON u.ord = i.ord
    LEFT JOIN herald.idempotency x
        ON u.ord IS NULL AND x.scope = i.idem_scope AND x.key = i.idem_key
    ORDER BY i.ord;
END
$$;

