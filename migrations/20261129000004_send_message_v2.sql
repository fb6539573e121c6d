-- herald.send_message and herald.send_messages, second version:
-- * `deliver_at`: the message is stored now and delivered at that time (a time in the past
--   means now); at most HERALD_MAX_DELIVER_AHEAD ahead (runtime_setting `max_deliver_ahead`);
-- * the application is resolved deterministically in both: its id wins over a uid (uids
--   can no longer look like ids, but rows written before that rule may);
-- * send_messages (the HTTP API's group commit) also takes payload expiry and the request's
--   idempotency key, and claims the key, writes the message and records the answer in the
--   same statement: either all of them exist afterwards or none does.

CREATE FUNCTION herald.max_deliver_ahead() RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT value::interval FROM herald.runtime_setting
                     WHERE name = 'max_deliver_ahead'), interval '90 days')
$$;

-- The new argument means a new function. What an operator set on the old one (EXECUTE
-- granted to producers' roles, SECURITY DEFINER) is carried over to the new one below.
CREATE TEMP TABLE herald_old_send_message ON COMMIT DROP AS
    SELECT proacl, prosecdef FROM pg_proc
    WHERE oid = 'herald.send_message(text, text, text, text, text[], text[])'::regprocedure;

DROP FUNCTION herald.send_message(text, text, text, text, text[], text[]);

CREATE FUNCTION herald.send_message(
    app         text,
    event_type  text,
    payload     text,
    event_id    text DEFAULT NULL,
    channels    text[] DEFAULT NULL,
    tags        text[] DEFAULT NULL,
    deliver_at  timestamptz DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_app_id  text;
    v_msg_id  text;
    v_fanout  integer;
    v_due     timestamptz := greatest(now(), coalesce(send_message.deliver_at, now()));
BEGIN
    IF event_type IS NULL OR event_type = '' THEN
        RAISE EXCEPTION 'herald.send_message: event_type must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF payload IS NULL THEN
        RAISE EXCEPTION 'herald.send_message: payload must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF send_message.deliver_at IS NOT NULL
       AND send_message.deliver_at > now() + herald.max_deliver_ahead() THEN
        RAISE EXCEPTION 'herald.send_message: deliver_at % is more than % ahead (HERALD_MAX_DELIVER_AHEAD)',
            send_message.deliver_at, herald.max_deliver_ahead()
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The id wins over a uid (uids can no longer look like ids; older rows may).
    SELECT a.id INTO v_app_id FROM herald.application a WHERE a.id = app OR a.uid = app
        ORDER BY a.id = app DESC LIMIT 1;
    IF v_app_id IS NULL THEN
        RAISE EXCEPTION 'herald.send_message: no application with id or uid %', quote_literal(app)
            USING ERRCODE = 'no_data_found';
    END IF;

    -- Validate without storing the parsed form: the stored payload keeps the caller's bytes.
    -- (This block only sets a savepoint; it writes nothing, so it takes no subtransaction id.)
    BEGIN
        PERFORM payload::json;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'herald.send_message: payload is not valid JSON (%)', SQLERRM
            USING ERRCODE = 'invalid_text_representation';
    END;

    IF event_id IS NOT NULL THEN
        SELECT m.id INTO v_msg_id FROM herald.message m
            WHERE m.app_id = v_app_id AND m.event_id = send_message.event_id;
        IF v_msg_id IS NOT NULL THEN
            RETURN v_msg_id;  -- idempotent: the first message with this event_id wins
        END IF;
    END IF;

    INSERT INTO herald.message (app_id, event_type, event_id, payload, channels, tags, deliver_at)
        VALUES (v_app_id, send_message.event_type, send_message.event_id, send_message.payload,
                send_message.channels, send_message.tags, send_message.deliver_at)
        ON CONFLICT (app_id, event_id) DO NOTHING
        RETURNING id INTO v_msg_id;
    IF v_msg_id IS NULL THEN
        -- A concurrent transaction committed the same event_id between our check and insert.
        SELECT m.id INTO v_msg_id FROM herald.message m
            WHERE m.app_id = v_app_id AND m.event_id = send_message.event_id;
        RETURN v_msg_id;
    END IF;

    INSERT INTO herald.delivery (message_id, endpoint_id, app_id, next_attempt_at)
        SELECT v_msg_id, e.id, v_app_id, v_due
        FROM herald.endpoint e
        WHERE e.app_id = v_app_id
          AND NOT e.disabled
          AND (e.event_types IS NULL OR send_message.event_type = ANY (e.event_types))
          AND (e.channels IS NULL OR e.channels && send_message.channels);
    GET DIAGNOSTICS v_fanout = ROW_COUNT;

    IF v_fanout > 0 THEN
        -- Identical notifications in one transaction are folded into one by PostgreSQL.
        PERFORM pg_notify('herald_delivery', '');
    END IF;
    RETURN v_msg_id;
END
$$;

DO $$
DECLARE
    old record;
    g   record;
    fn  constant text := 'herald.send_message(text, text, text, text, text[], text[], timestamptz)';
BEGIN
    SELECT * INTO old FROM herald_old_send_message;
    IF old.prosecdef THEN
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER', fn);
    END IF;
    IF old.proacl IS NOT NULL THEN
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
        FOR g IN SELECT * FROM aclexplode(old.proacl) WHERE privilege_type = 'EXECUTE' LOOP
            IF g.grantee = 0 THEN
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', fn);
            ELSE
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, g.grantee::regrole::text);
            END IF;
        END LOOP;
    END IF;
END
$$;

DROP FUNCTION herald.send_messages(herald.new_message[]);
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
    idem_fingerprint    bytea
);

-- The messages of a call as rows, numbered from 1 in input order.
CREATE FUNCTION herald.message_rows(messages herald.new_message[])
RETURNS TABLE (app text, event_type text, payload text, event_id text, channels text[],
               tags text[], deliver_at timestamptz, payload_expires_at timestamptz,
               idem_scope text, idem_key text, idem_request text, idem_fingerprint bytea,
               ord bigint)
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
            (SELECT a.id FROM herald.application a WHERE a.id = i.app OR a.uid = i.app
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
    ), inserted AS (
        INSERT INTO herald.message (id, app_id, event_type, event_id, payload, channels, tags,
                                    deliver_at, payload_expires_at)
        SELECT c.new_id, c.app_id, c.event_type, c.event_id, c.payload, c.channels, c.tags,
               c.deliver_at, c.payload_expires_at
        FROM checked c
        -- The cast validates without storing the parsed form: the caller's bytes are kept.
        WHERE c.app_id IS NOT NULL AND c.earlier IS NULL AND c.payload::json IS NOT NULL
        ON CONFLICT (app_id, event_id) DO NOTHING
        RETURNING id, app_id, event_type, channels, deliver_at, created_at
    ), fanned AS (
        INSERT INTO herald.delivery (message_id, endpoint_id, app_id, next_attempt_at)
        SELECT m.id, e.id, m.app_id, greatest(now(), coalesce(m.deliver_at, now()))
        FROM inserted m
        JOIN herald.endpoint e ON e.app_id = m.app_id
        WHERE NOT e.disabled
          AND (e.event_types IS NULL OR m.event_type = ANY (e.event_types))
          AND (e.channels IS NULL OR e.channels && m.channels)
        RETURNING 1
    )
    SELECT array_agg(c.ord ORDER BY c.ord), array_agg(c.app_id ORDER BY c.ord),
           array_agg(c.event_id ORDER BY c.ord),
           array_agg(coalesce(ins.id, c.earlier) ORDER BY c.ord),
           array_agg(ins.created_at ORDER BY c.ord),
           (SELECT count(*) FROM fanned)
    INTO v_ord, v_app, v_event_id, v_id, v_created, v_fanout
    FROM checked c
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
