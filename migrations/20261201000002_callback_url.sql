-- A URL per message (issue 14): herald.send_message(..., url => 'https://merchant.example/cb')
-- sends the message to that URL only, with every guarantee an endpoint has, because it is
-- delivered through an endpoint: one implicit "callback" endpoint per (application, URL),
-- made on first use. Its deliveries are signed with the application's secret.
--
-- A callback endpoint takes no part in fan-out: its event_types is the empty array, which
-- matches no event type in every fan-out (herald.send_message, herald.send_messages,
-- herald.receive_events, replay-missing), and the constraint below keeps it so.
-- A lock wait gives up after 10 s rather than stall producers behind it (migrate again).
SET LOCAL lock_timeout = '10s';

ALTER TABLE herald.endpoint
    ADD COLUMN callback boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT endpoint_callback_takes_no_fan_out
        CHECK (NOT callback OR event_types = '{}');
CREATE UNIQUE INDEX endpoint_callback_url_idx ON herald.endpoint (app_id, url) WHERE callback;

-- The destination rules, as the instance that started last published them
-- (runtime_setting `destination_allowlist`, `require_https`, `allowed_cidrs`), applied to a
-- URL a producer names. Returns the URL; raises 'invalid_parameter_value' naming the rule.
-- Names are not resolved here: the sender checks every address a name resolves to, as for
-- any endpoint. Literal addresses are judged here by the ranges of Rust's
-- destination::ip::non_public (a test compares the two on a corpus of URLs); an IPv6 literal
-- carrying an IPv4 address (mapped, compatible, NAT64, 6to4) is refused outright.
CREATE FUNCTION herald.check_callback_url(url text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    m          text[];
    v_scheme   text;
    v_host     text;
    v_port     text;
    v_ip       inet;
    v_allow    text[];
    v_cidrs    inet[];
    p          text;
    v_allowed  boolean;
    v_https    boolean;
    forbidden  constant inet[] := ARRAY[
        '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16',
        '172.16.0.0/12', '192.0.0.0/24', '192.0.2.0/24', '192.88.99.0/24', '192.168.0.0/16',
        '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24', '224.0.0.0/4', '240.0.0.0/4',
        -- IPv6: outside global unicast 2000::/3 (the IPv4-carrying forms live there too),
        -- 6to4, Teredo and other protocol assignments, documentation.
        '::/3', '4000::/2', '8000::/1', '2002::/16', '2001::/23', '2001:db8::/32',
        '3fff::/20']::inet[];
BEGIN
    IF url IS NULL OR length(url) > 2048 THEN
        RAISE EXCEPTION 'herald.send_message: url must be a URL of at most 2048 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- What a URL parser would quietly remove or rewrite (spaces, control characters, `\`),
    -- and percent-encoded or non-ASCII hosts, are refused rather than judged as written.
    IF url ~ '[[:space:][:cntrl:]\\]' THEN
        RAISE EXCEPTION 'herald.send_message: url % must not contain spaces, control characters or backslashes', quote_literal(url)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM herald.runtime_setting WHERE name = 'require_https') THEN
        RAISE EXCEPTION 'herald.send_message: url cannot be checked: no Herald instance has published its destination rules yet (start one)'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    m := regexp_match(url, '^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)$');
    IF m IS NULL THEN
        RAISE EXCEPTION 'herald.send_message: url % is not an absolute http(s) URL', quote_literal(url)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_scheme := lower(m[1]);
    v_https := coalesce((SELECT value FROM herald.runtime_setting WHERE name = 'require_https'), 'false') = 'true';
    IF v_scheme = 'http' AND v_https THEN
        RAISE EXCEPTION 'herald.send_message: url % is refused: plain http is not allowed (HERALD_REQUIRE_HTTPS=true); use https',
            quote_literal(url) USING ERRCODE = 'invalid_parameter_value';
    ELSIF v_scheme NOT IN ('http', 'https') THEN
        RAISE EXCEPTION 'herald.send_message: url % must use http or https, not %', quote_literal(url), v_scheme
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF position('@' IN m[2]) > 0 THEN
        RAISE EXCEPTION 'herald.send_message: url % must not carry credentials', quote_literal(url)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF m[2] LIKE '[%' THEN
        v_host := substring(m[2] FROM '^\[([^\]]*)\]');
        v_port := substring(m[2] FROM '^\[[^\]]*\](.*)$');
    ELSE
        v_host := split_part(m[2], ':', 1);
        v_port := substring(m[2] FROM '^[^:]*(.*)$');
    END IF;
    IF v_host IS NULL OR v_host = '' OR (v_port <> '' AND v_port !~ '^:[0-9]{0,5}$')
       OR (v_port ~ '^:[0-9]+$' AND substr(v_port, 2)::integer > 65535) THEN
        RAISE EXCEPTION 'herald.send_message: url % has no valid host and port', quote_literal(url)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_host := rtrim(lower(v_host), '.');
    IF m[2] LIKE '[%' AND position(':' IN v_host) = 0 THEN
        RAISE EXCEPTION 'herald.send_message: url % has an invalid IPv6 address', quote_literal(url)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF m[2] NOT LIKE '[%' AND v_host !~ '^[a-z0-9_-]+(\.[a-z0-9_-]+)*$' THEN
        RAISE EXCEPTION 'herald.send_message: url % has a host that is not plain ASCII letters, digits, hyphens and dots (write an internationalized name in its xn-- form)', quote_literal(url)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- A host whose last label is a number is an IPv4 address to a URL parser (2130706433,
    -- 0x7f.1 and 0177.0.0.1 are 127.0.0.1): only the plain dotted form is accepted.
    IF m[2] NOT LIKE '[%' AND v_host ~ '(^|\.)(0x[0-9a-f]*|[0-9]+)$' THEN
        IF v_host !~ '^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$' THEN
            RAISE EXCEPTION 'herald.send_message: url % is refused: write an IPv4 address as four decimal numbers', quote_literal(url)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_ip := v_host::inet;
    ELSIF m[2] LIKE '[%' THEN
        BEGIN
            v_ip := v_host::inet;
        EXCEPTION WHEN invalid_text_representation THEN
            RAISE EXCEPTION 'herald.send_message: url % has an invalid IPv6 address', quote_literal(url)
                USING ERRCODE = 'invalid_parameter_value';
        END;
        v_host := '[' || host(v_ip) || ']';
    END IF;

    v_allow := (SELECT string_to_array(value, ',') FROM herald.runtime_setting
                WHERE name = 'destination_allowlist' AND value <> '');
    IF v_allow IS NOT NULL THEN
        v_allowed := false;
        FOREACH p IN ARRAY v_allow LOOP
            p := rtrim(lower(trim(p)), '.');
            IF (p LIKE '*.%' AND length(v_host) > length(p) - 1
                    AND right(v_host, length(p) - 1) = substr(p, 2))
               OR v_host = p THEN
                v_allowed := true;
                EXIT;
            END IF;
        END LOOP;
        IF NOT v_allowed THEN
            RAISE EXCEPTION 'herald.send_message: url % is refused: % is not in HERALD_DESTINATION_ALLOWLIST',
                quote_literal(url), v_host USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    v_cidrs := coalesce((SELECT string_to_array(value, ',')::inet[] FROM herald.runtime_setting
                         WHERE name = 'allowed_cidrs' AND value <> ''), '{}');
    IF v_ip IS NULL AND (v_host = 'localhost' OR v_host LIKE '%.localhost') THEN
        v_ip := '127.0.0.1';
    END IF;
    IF v_ip IS NOT NULL AND NOT v_ip <<= ANY (v_cidrs) AND v_ip <<= ANY (forbidden) THEN
        RAISE EXCEPTION 'herald.send_message: url % is refused: % is not a public address; Herald only delivers to public addresses (an operator can allow a range with HERALD_ALLOWED_CIDRS)',
            quote_literal(url), v_host USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN url;
END
$$;

-- The callback endpoint of (application, URL), made on first use. No lock is taken on an
-- existing one, so producers naming the same URL never wait on each other.
CREATE FUNCTION herald.callback_endpoint(app_id text, url text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_id text;
BEGIN
    SELECT e.id INTO v_id FROM herald.endpoint e
        WHERE e.app_id = callback_endpoint.app_id AND e.url = callback_endpoint.url AND e.callback;
    IF v_id IS NULL THEN
        INSERT INTO herald.endpoint (app_id, url, event_types, callback, description)
            VALUES (callback_endpoint.app_id, callback_endpoint.url, '{}', true,
                    'callback URL named by messages')
            ON CONFLICT (app_id, url) WHERE callback DO NOTHING
            RETURNING id INTO v_id;
        IF v_id IS NULL THEN
            -- Made by a concurrent transaction that has committed meanwhile.
            SELECT e.id INTO v_id FROM herald.endpoint e
                WHERE e.app_id = callback_endpoint.app_id AND e.url = callback_endpoint.url AND e.callback;
        END IF;
    END IF;
    RETURN v_id;
END
$$;

-- herald.send_message, third version: `url` names the one URL the message goes to (checked
-- by herald.check_callback_url inside the producer's transaction, so a URL the rules refuse
-- fails that transaction). The new argument means a new function; what an operator set on
-- the old one (EXECUTE grants, SECURITY DEFINER) is carried over.
CREATE TEMP TABLE herald_old_send_message ON COMMIT DROP AS
    SELECT proacl, prosecdef FROM pg_proc
    WHERE oid = 'herald.send_message(text, text, text, text, text[], text[], timestamptz)'::regprocedure;

DROP FUNCTION herald.send_message(text, text, text, text, text[], text[], timestamptz);

CREATE FUNCTION herald.send_message(
    app         text,
    event_type  text,
    payload     text,
    event_id    text DEFAULT NULL,
    channels    text[] DEFAULT NULL,
    tags        text[] DEFAULT NULL,
    deliver_at  timestamptz DEFAULT NULL,
    url         text DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_app_id   text;
    v_msg_id   text;
    v_fanout   integer;
    v_callback text;
    v_due      timestamptz := greatest(now(), coalesce(send_message.deliver_at, now()));
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
    IF send_message.url IS NOT NULL THEN
        PERFORM herald.check_callback_url(send_message.url);
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

    IF send_message.url IS NOT NULL THEN
        v_callback := herald.callback_endpoint(v_app_id, send_message.url);
        INSERT INTO herald.delivery (message_id, endpoint_id, app_id, next_attempt_at)
            SELECT v_msg_id, e.id, v_app_id, v_due
            FROM herald.endpoint e WHERE e.id = v_callback AND NOT e.disabled;
    ELSE
        INSERT INTO herald.delivery (message_id, endpoint_id, app_id, next_attempt_at)
            SELECT v_msg_id, e.id, v_app_id, v_due
            FROM herald.endpoint e
            WHERE e.app_id = v_app_id
              AND NOT e.disabled AND NOT e.callback
              AND (e.event_types IS NULL OR send_message.event_type = ANY (e.event_types))
              AND (e.channels IS NULL OR e.channels && send_message.channels);
    END IF;
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
    fn  constant text := 'herald.send_message(text, text, text, text, text[], text[], timestamptz, text)';
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
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', fn, g.grantee::regrole);
            END IF;
        END LOOP;
    END IF;
END
$$;

-- herald.send_messages (the HTTP API's group commit), third version: a message's
-- `callback_url` (the API's `callbackUrl`, checked by the API against the destination
-- rules) sends it to that URL only, through its callback endpoint.
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
    callback_url        text
);

-- The messages of a call as rows, numbered from 1 in input order.
CREATE FUNCTION herald.message_rows(messages herald.new_message[])
RETURNS TABLE (app text, event_type text, payload text, event_id text, channels text[],
               tags text[], deliver_at timestamptz, payload_expires_at timestamptz,
               idem_scope text, idem_key text, idem_request text, idem_fingerprint bytea,
               callback_url text, ord bigint)
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
                                    deliver_at, payload_expires_at)
        SELECT c.new_id, c.app_id, c.event_type, c.event_id, c.payload, c.channels, c.tags,
               c.deliver_at, c.payload_expires_at
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
