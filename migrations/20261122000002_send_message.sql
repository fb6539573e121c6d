-- The transactional outbox entry point.
--
-- A producer calls this inside its own transaction, next to its own state change:
--
--     BEGIN;
--     UPDATE payment_request SET status = 'confirmed' WHERE id = 42;
--     SELECT herald.send_message('app_…', 'payment.confirmed', '{"id":42}', 'payment-42-confirmed');
--     COMMIT;
--
-- The message and one delivery per subscribed, enabled endpoint are written in that
-- transaction: they commit or roll back with it. NOTIFY is transactional too, so dispatchers
-- are woken exactly when (and only if) the commit happens.
CREATE FUNCTION herald.send_message(
    app         text,
    event_type  text,
    payload     text,
    event_id    text DEFAULT NULL,
    channels    text[] DEFAULT NULL,
    tags        text[] DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_app_id  text;
    v_msg_id  text;
    v_fanout  integer;
BEGIN
    IF event_type IS NULL OR event_type = '' THEN
        RAISE EXCEPTION 'herald.send_message: event_type must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF payload IS NULL THEN
        RAISE EXCEPTION 'herald.send_message: payload must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    SELECT a.id INTO v_app_id FROM herald.application a WHERE a.id = app OR a.uid = app LIMIT 1;
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

    INSERT INTO herald.message (app_id, event_type, event_id, payload, channels, tags)
        VALUES (v_app_id, send_message.event_type, send_message.event_id, send_message.payload,
                send_message.channels, send_message.tags)
        ON CONFLICT (app_id, event_id) DO NOTHING
        RETURNING id INTO v_msg_id;
    IF v_msg_id IS NULL THEN
        -- A concurrent transaction committed the same event_id between our check and insert.
        SELECT m.id INTO v_msg_id FROM herald.message m
            WHERE m.app_id = v_app_id AND m.event_id = send_message.event_id;
        RETURN v_msg_id;
    END IF;

    INSERT INTO herald.delivery (message_id, endpoint_id, app_id)
        SELECT v_msg_id, e.id, v_app_id
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
