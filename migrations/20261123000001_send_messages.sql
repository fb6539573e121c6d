-- Many messages in one call: the set-based form of herald.send_message, for the HTTP API's
-- group commit (concurrently arriving messages written by one statement, one commit).
--
-- herald.send_message runs five or six statements per message, each with its own executor
-- start-up; this runs three per call, whatever the number of messages (measured with
-- batches of 20: 1.4 to 1.9 times the messages per second).
-- (For one message, herald.send_message is the cheaper of the two, so it stays as it is.)
-- The rules are those of herald.send_message, and must stay so (a test compares the rows
-- both write): application by id or uid, payload validated as JSON and stored byte for
-- byte, the first message of an eventId wins, fan-out to every enabled endpoint subscribed
-- to the event type and channels, one NOTIFY per transaction.

CREATE TYPE herald.new_message AS (
    app         text,     -- application id or uid
    event_type  text,
    payload     text,
    event_id    text,
    channels    text[],
    tags        text[]
);

-- One row per input message, in input order (`ord` counts from 1):
--   app_id      NULL when no application has that id or uid (nothing written);
--   message_id  the new message, or the earlier one with the same eventId;
--   created     true when this call wrote the message;
--   created_at  the new message's timestamp (NULL when not created).
-- The arguments are not checked the way herald.send_message checks its own (the API has
-- validated them). A payload that is not valid JSON fails the whole call (retry the
-- messages one by one, as the API does).
CREATE FUNCTION herald.send_messages(messages herald.new_message[])
RETURNS TABLE (ord bigint, app_id text, message_id text, created boolean, created_at timestamptz)
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
BEGIN
    WITH input AS MATERIALIZED (
        SELECT i.*, herald.new_id('msg') AS new_id,
            (SELECT a.id FROM herald.application a WHERE a.id = i.app OR a.uid = i.app
             ORDER BY a.id = i.app DESC LIMIT 1) AS app_id
        FROM unnest(messages) WITH ORDINALITY
            AS i(app, event_type, payload, event_id, channels, tags, ord)
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
        INSERT INTO herald.message (id, app_id, event_type, event_id, payload, channels, tags)
        SELECT c.new_id, c.app_id, c.event_type, c.event_id, c.payload, c.channels, c.tags
        FROM checked c
        -- The cast validates without storing the parsed form: the caller's bytes are kept.
        WHERE c.app_id IS NOT NULL AND c.earlier IS NULL AND c.payload::json IS NOT NULL
        ON CONFLICT (app_id, event_id) DO NOTHING
        RETURNING id, app_id, event_type, channels, created_at
    ), fanned AS (
        INSERT INTO herald.delivery (message_id, endpoint_id, app_id)
        SELECT m.id, e.id, m.app_id
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

    -- A message not written because its eventId was taken meanwhile (a concurrent
    -- transaction committed it, or an earlier message of this call had it): this statement
    -- sees those, and answers with the message that won.
    RETURN QUERY
    SELECT u.ord, u.app_id,
        coalesce(u.id, CASE WHEN u.app_id IS NOT NULL AND u.event_id IS NOT NULL THEN
            (SELECT m.id FROM herald.message m WHERE m.app_id = u.app_id AND m.event_id = u.event_id)
        END),
        u.created_at IS NOT NULL, u.created_at
    FROM unnest(v_ord, v_app, v_event_id, v_id, v_created)
        AS u(ord, app_id, event_id, id, created_at)
    ORDER BY u.ord;
END
$$;
