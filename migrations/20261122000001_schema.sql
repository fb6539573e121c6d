-- Herald's schema. Everything lives in schema `herald` so it can share a database with the
-- producer's own tables (that is what makes the transactional outbox possible).
CREATE SCHEMA IF NOT EXISTS herald;

-- Ids look like Svix ids: a prefix, then a time-ordered body. The body starts with the
-- creation time in milliseconds (12 hex digits), so `ORDER BY id` is creation order and ids
-- serve directly as pagination cursors; the rest is random. Columns holding ids use the "C"
-- collation so that comparison is bytewise, whatever the database's locale.
CREATE FUNCTION herald.new_id(prefix text) RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT prefix || '_'
        || lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
        || translate(encode(substr(uuid_send(gen_random_uuid()), 1, 12), 'base64'), '+/', 'Zz')
$$;

CREATE TABLE herald.application (
    id          text COLLATE "C" PRIMARY KEY DEFAULT herald.new_id('app'),
    uid         text COLLATE "C" UNIQUE,
    name        text NOT NULL,
    rate_limit  integer CHECK (rate_limit IS NULL OR rate_limit > 0),
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE herald.event_type (
    name          text COLLATE "C" PRIMARY KEY,
    description   text NOT NULL DEFAULT '',
    archived      boolean NOT NULL DEFAULT false,
    deprecated    boolean NOT NULL DEFAULT false,
    schemas       jsonb,
    feature_flag  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE herald.endpoint (
    id               text COLLATE "C" PRIMARY KEY DEFAULT herald.new_id('ep'),
    app_id           text COLLATE "C" NOT NULL REFERENCES herald.application (id) ON DELETE CASCADE,
    uid              text COLLATE "C",
    url              text NOT NULL,
    description      text NOT NULL DEFAULT '',
    -- NULL: every event type. Otherwise only these.
    event_types      text[],
    channels         text[],
    disabled         boolean NOT NULL DEFAULT false,
    disabled_reason  text,
    disabled_at      timestamptz,
    -- Messages per second; NULL means the service default.
    rate_limit       integer CHECK (rate_limit IS NULL OR rate_limit > 0),
    headers          jsonb NOT NULL DEFAULT '{}',
    metadata         jsonb NOT NULL DEFAULT '{}',
    version          integer NOT NULL DEFAULT 1,
    -- Set by the first failed attempt after a success, cleared by a success: an endpoint
    -- failing for HERALD_DISABLE_AFTER is disabled.
    first_failure_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, uid)
);
CREATE INDEX endpoint_app_idx ON herald.endpoint (app_id, id);

-- Signing secrets with their rotation history. The current secret has no expiry; a rotated-out
-- secret keeps signing until `expires_at` (the grace period), so receivers can switch over
-- without dropping a single delivery.
CREATE TABLE herald.endpoint_secret (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id  text COLLATE "C" NOT NULL REFERENCES herald.endpoint (id) ON DELETE CASCADE,
    key          bytea NOT NULL CHECK (octet_length(key) BETWEEN 24 AND 64),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz
);
CREATE INDEX endpoint_secret_endpoint_idx ON herald.endpoint_secret (endpoint_id);
CREATE UNIQUE INDEX endpoint_secret_current_idx ON herald.endpoint_secret (endpoint_id)
    WHERE expires_at IS NULL;

CREATE TABLE herald.message (
    id          text COLLATE "C" PRIMARY KEY DEFAULT herald.new_id('msg'),
    app_id      text COLLATE "C" NOT NULL REFERENCES herald.application (id) ON DELETE CASCADE,
    event_type  text NOT NULL,
    event_id    text,
    -- The exact bytes the producer gave us (validated as JSON), sent unchanged on every attempt.
    -- NULL once expunged by retention.
    payload     text,
    channels    text[],
    tags        text[],
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, event_id)
);
CREATE INDEX message_app_idx ON herald.message (app_id, id);
CREATE INDEX message_created_idx ON herald.message (created_at);

CREATE TYPE herald.delivery_status AS ENUM (
    'pending',    -- waiting for its next attempt (due when next_attempt_at <= now())
    'sending',    -- leased by a dispatcher until lease_expires_at
    'succeeded',  -- a 2xx answer was received
    'dead'        -- out of attempts, or its endpoint was disabled: kept and replayable
);

-- The outbox: one row per message and endpoint. This is the row that is leased.
CREATE TABLE herald.delivery (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id        text COLLATE "C" NOT NULL REFERENCES herald.message (id) ON DELETE CASCADE,
    endpoint_id       text COLLATE "C" NOT NULL REFERENCES herald.endpoint (id) ON DELETE CASCADE,
    app_id            text COLLATE "C" NOT NULL,
    status            herald.delivery_status NOT NULL DEFAULT 'pending',
    -- Attempts used on the current schedule (reset by a replay).
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    lease_owner       text,
    lease_token       uuid,
    lease_expires_at  timestamptz,
    last_status_code  smallint,
    last_error        text,
    dead_reason       text,
    -- The next attempt was asked for (resend, recover, replay) rather than scheduled.
    manual            boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, endpoint_id)
);
-- The claim path: only rows waiting to be sent are in this index, so claiming stays an index
-- range scan however many finished rows the table holds.
CREATE INDEX delivery_due_idx ON herald.delivery (next_attempt_at) WHERE status = 'pending';
-- The reaper path: only leased rows.
CREATE INDEX delivery_lease_idx ON herald.delivery (lease_expires_at) WHERE status = 'sending';
-- Dead letters, listed and replayed by application / endpoint and time.
CREATE INDEX delivery_dead_idx ON herald.delivery (app_id, updated_at) WHERE status = 'dead';
CREATE INDEX delivery_endpoint_idx ON herald.delivery (endpoint_id, status);

-- One row per HTTP try.
CREATE TABLE herald.attempt (
    id             text COLLATE "C" PRIMARY KEY DEFAULT herald.new_id('atmpt'),
    delivery_id    bigint NOT NULL REFERENCES herald.delivery (id) ON DELETE CASCADE,
    message_id     text COLLATE "C" NOT NULL,
    endpoint_id    text COLLATE "C" NOT NULL,
    app_id         text COLLATE "C" NOT NULL,
    url            text NOT NULL,
    attempt_no     integer NOT NULL,
    started_at     timestamptz NOT NULL,
    duration_ms    integer NOT NULL,
    -- NULL when no HTTP answer was received (timeout, connection error, refused destination).
    status_code    smallint,
    succeeded      boolean NOT NULL,
    -- 0: scheduled, 1: manual (Svix MessageAttemptTriggerType).
    trigger_type   smallint NOT NULL DEFAULT 0,
    response       text,
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attempt_message_idx ON herald.attempt (message_id, id);
CREATE INDEX attempt_endpoint_idx ON herald.attempt (endpoint_id, id);
CREATE INDEX attempt_delivery_idx ON herald.attempt (delivery_id);

-- Replays of POST requests that carried an `idempotency-key` (the Svix SDKs send one on every
-- POST and reuse it when they retry), so a retried request gets the first answer instead of
-- acting twice. A row with no status is a request still being processed.
CREATE TABLE herald.idempotency (
    key          text PRIMARY KEY,
    request      text NOT NULL,
    status       smallint,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_created_idx ON herald.idempotency (created_at);

-- Circuit-breaker state per endpoint and dispatcher instance (breakers live in the sender
-- an endpoint is routed to; each instance has its own). Written on every transition, read by
-- the API.
CREATE TABLE herald.endpoint_circuit (
    endpoint_id   text COLLATE "C" NOT NULL REFERENCES herald.endpoint (id) ON DELETE CASCADE,
    instance      text NOT NULL,
    state         text NOT NULL,
    failures      integer NOT NULL,
    open_until    timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint_id, instance)
);
