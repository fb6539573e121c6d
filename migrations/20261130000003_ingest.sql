-- Inbound webhooks: sources (a provider's webhooks arrive at a source's secret URL), the
-- log of what arrived (read it in SQL; NOTIFY herald_ingest on commit), the dedupe window
-- of providers' event ids, and what a forwarded message carries besides its body.
SET LOCAL lock_timeout = '10s';

-- A source forwards what it accepts to its endpoints through the delivery engine: its
-- events are messages of an application of its own (`app_id`, made with the source and
-- deleted with it), its endpoints that application's endpoints.
CREATE TABLE herald.ingest_source (
    id          text COLLATE "C" PRIMARY KEY DEFAULT herald.new_id('src'),
    uid         text COLLATE "C" UNIQUE
                CHECK (uid ~ '^[a-zA-Z0-9_-]{1,60}$' AND uid !~ '^src_'),
    name        text NOT NULL,
    -- stripe, github, shopify, slack, svix, standard-webhooks, circle, generic-hmac,
    -- generic-webhook: how a request is verified and what identifies its event.
    type        text NOT NULL,
    -- The type's settings, secrets included (never shown by the API).
    config      jsonb NOT NULL DEFAULT '{}',
    -- The secret part of the source's URL (`/ingest/{token}`); rotating it replaces it.
    token       text COLLATE "C" NOT NULL UNIQUE CHECK (length(token) >= 32),
    app_id      text COLLATE "C" NOT NULL UNIQUE
                REFERENCES herald.application (id) ON DELETE CASCADE,
    metadata    jsonb NOT NULL DEFAULT '{}' CHECK (herald.is_string_map(metadata)),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Everything that arrived at a source's URL, accepted or not.
CREATE TABLE herald.ingest_event (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id    text COLLATE "C" NOT NULL REFERENCES herald.ingest_source (id) ON DELETE CASCADE,
    -- The provider's identity of the event (Stripe's `id`, GitHub's X-GitHub-Delivery, ...).
    event_key    text,
    event_type   text NOT NULL,
    -- accepted: forwarded (message_id); duplicate: its key was seen within the dedupe
    -- window (message_id: the first one's); rejected: not verified (reason), not forwarded.
    outcome      text NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'rejected')),
    -- Whether a signature was checked (false: a generic-webhook source, unauthenticated).
    verified     boolean NOT NULL,
    reason       text,
    -- The request's headers (names in lower case) and its body, exactly as received.
    headers      jsonb NOT NULL,
    body         text NOT NULL,
    message_id   text COLLATE "C",
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ingest_event_source_idx ON herald.ingest_event (source_id, id);
CREATE INDEX ingest_event_received_brin ON herald.ingest_event USING brin (received_at);

-- The providers' event ids seen lately: a second event with the same id within the window
-- is answered 2xx, recorded as a duplicate, and not forwarded again.
CREATE TABLE herald.ingest_dedupe (
    source_id   text COLLATE "C" NOT NULL REFERENCES herald.ingest_source (id) ON DELETE CASCADE,
    event_key   text NOT NULL,
    message_id  text COLLATE "C",
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (source_id, event_key)
);
CREATE INDEX ingest_dedupe_expires_idx ON herald.ingest_dedupe (expires_at);

-- A forwarded event's message keeps the provider's headers (passed on with the body, under
-- a prefix) and content type. NULL for messages created by producers.
ALTER TABLE herald.message
    ADD COLUMN forward_headers jsonb CHECK (forward_headers IS NULL OR herald.is_string_map(forward_headers)),
    ADD COLUMN content_type text;

-- Source ids can name sources wherever a uid could: no uid may look like one.
CREATE OR REPLACE FUNCTION herald.is_uid(u text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT u ~ '^[a-zA-Z0-9._-]+$' AND length(u) <= 256 AND u !~ '^(app|ep|msg|atmpt|qtask|src|tok)_'
$$;

-- One received request, verified (or not) by the API.
CREATE TYPE herald.ingest_in AS (
    source_id        text,
    event_key        text,
    event_type       text,
    outcome          text,     -- 'accepted' (to forward, unless a duplicate) or 'rejected'
    verified         boolean,
    reason           text,
    headers          jsonb,    -- as received
    body             text,
    forward_headers  jsonb,    -- what the forwarded message carries
    content_type     text,
    dedupe_window    interval
);

-- Records a batch of received requests in one statement (the API's group commit): each
-- accepted one whose event key is new (or seen longer ago than its window) becomes a
-- message of its source's application with a delivery to each of its endpoints; one whose
-- key is within the window is recorded as a duplicate of the first. Returns, per input in
-- order (`ord` from 1), the event's id, its outcome and its message.
CREATE FUNCTION herald.receive_events(events herald.ingest_in[])
RETURNS TABLE (ord bigint, event_id bigint, outcome text, message_id text)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH i AS MATERIALIZED (
        SELECT e.*, n AS ord, s.app_id,
               nextval(pg_get_serial_sequence('herald.ingest_event', 'id')) AS ev_id,
               CASE WHEN e.outcome = 'accepted' THEN herald.new_id('msg') END AS new_msg
        FROM unnest(events) WITH ORDINALITY AS e(source_id, event_key, event_type, outcome,
                 verified, reason, headers, body, forward_headers, content_type,
                 dedupe_window, n)
        JOIN herald.ingest_source s ON s.id = e.source_id
    ),
    -- A key is claimed when it is new, or its last claim has expired.
    claimed AS (
        INSERT INTO herald.ingest_dedupe AS d (source_id, event_key, message_id, expires_at)
        SELECT i.source_id, i.event_key, i.new_msg, now() + i.dedupe_window
        FROM i WHERE i.outcome = 'accepted' AND i.event_key IS NOT NULL
        ON CONFLICT (source_id, event_key) DO UPDATE
            SET message_id = EXCLUDED.message_id, expires_at = EXCLUDED.expires_at
            WHERE d.expires_at < now()
        RETURNING d.source_id, d.event_key
    ),
    r AS MATERIALIZED (
        SELECT i.*, x.result,
               CASE x.result
                   WHEN 'accepted' THEN i.new_msg
                   -- The first event's message (claimed by a statement before this one).
                   WHEN 'duplicate' THEN (SELECT d.message_id FROM herald.ingest_dedupe d
                                          WHERE d.source_id = i.source_id
                                            AND d.event_key = i.event_key)
               END AS msg_out
        FROM i CROSS JOIN LATERAL (SELECT CASE
                   WHEN i.outcome <> 'accepted' THEN i.outcome
                   WHEN i.event_key IS NULL THEN 'accepted'
                   WHEN EXISTS (SELECT 1 FROM claimed c
                                WHERE c.source_id = i.source_id AND c.event_key = i.event_key)
                       THEN 'accepted'
                   ELSE 'duplicate'
               END AS result) x
    ),
    msgs AS (
        INSERT INTO herald.message (id, app_id, event_type, payload, forward_headers, content_type)
        SELECT r.new_msg, r.app_id, r.event_type, r.body, r.forward_headers, r.content_type
        FROM r WHERE r.result = 'accepted'
        RETURNING id, app_id, event_type
    ),
    dels AS (
        INSERT INTO herald.delivery (message_id, endpoint_id, app_id)
        SELECT m.id, e.id, m.app_id
        FROM msgs m JOIN herald.endpoint e ON e.app_id = m.app_id
        WHERE NOT e.disabled
          AND (e.event_types IS NULL OR m.event_type = ANY (e.event_types))
        RETURNING 1
    ),
    evs AS (
        INSERT INTO herald.ingest_event (id, source_id, event_key, event_type, outcome,
                                         verified, reason, headers, body, message_id)
        OVERRIDING SYSTEM VALUE
        SELECT r.ev_id, r.source_id, r.event_key, r.event_type, r.result, r.verified,
               r.reason, r.headers, r.body, r.msg_out
        FROM r
        RETURNING 1
    ),
    -- (Plain CTEs run only when read: the final query reads these two.)
    woken AS (
        SELECT pg_notify('herald_delivery', '') AS n
        FROM (SELECT count(*) AS c FROM dels) x WHERE x.c > 0
    ),
    told AS (
        SELECT pg_notify('herald_ingest', s.source_id) AS n
        FROM (SELECT DISTINCT r.source_id FROM r WHERE r.result = 'accepted') s
    )
    SELECT r.ord, r.ev_id, r.result, r.msg_out
    FROM r
    WHERE (SELECT count(*) FROM woken) >= 0 AND (SELECT count(*) FROM told) >= 0
      AND (SELECT count(*) FROM evs) >= 0
    ORDER BY r.ord;
END
$$;
