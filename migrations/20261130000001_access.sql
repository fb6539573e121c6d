-- Access and the web UI: tokens managed at run time (hashed; operator-wide or scoped to one
-- application), the dashboard's and the portal's sessions, a per-minute sample of the queue
-- for the overview's charts, and what a bulk replay queued (for its progress).
SET LOCAL lock_timeout = '10s';

CREATE TABLE herald.api_token (
    id            text COLLATE "C" PRIMARY KEY DEFAULT herald.new_id('tok'),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    -- 'operator': every route; 'application': one application's routes (made by an
    -- operator, e.g. for a merchant's own backend); 'portal': the same, made for a partner
    -- by app-portal-access, with its one-time sign-in link.
    kind          text NOT NULL CHECK (kind IN ('operator', 'application', 'portal')),
    app_id        text COLLATE "C" REFERENCES herald.application (id) ON DELETE CASCADE,
    -- SHA-256 of the token: the token itself is shown once and never stored.
    token_hash    bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    -- SHA-256 of a portal token's one-time sign-in code; NULL once used.
    link_hash     bytea UNIQUE CHECK (octet_length(link_hash) = 32),
    feature_flags text[] NOT NULL DEFAULT '{}',
    read_only     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CHECK ((kind = 'operator') = (app_id IS NULL)),
    CHECK (kind <> 'operator' OR (NOT read_only AND feature_flags = '{}'))
);
CREATE INDEX api_token_app_idx ON herald.api_token (app_id) WHERE app_id IS NOT NULL;

-- A browser's session: started by signing in with an operator token (the dashboard) or by
-- a portal link (the portal). It lives no longer than the token it came from: a
-- configured token (`operator`, the first 16 hex digits of its SHA-256) or a token above.
CREATE TABLE herald.ui_session (
    id_hash     bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    token_id    text COLLATE "C" REFERENCES herald.api_token (id) ON DELETE CASCADE,
    operator    text,
    -- Sent back in every form; a POST without it is refused.
    csrf        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK ((token_id IS NULL) <> (operator IS NULL))
);
CREATE INDEX ui_session_expires_idx ON herald.ui_session (expires_at);

-- The queue, once a minute (whichever instance's reaper gets there first), for the
-- overview's queue-depth chart; retention keeps a day of it.
CREATE TABLE herald.queue_sample (
    minute     timestamptz PRIMARY KEY,
    due        bigint NOT NULL,
    scheduled  bigint NOT NULL,
    leased     bigint NOT NULL,
    dead       bigint NOT NULL
);

-- A task's application, when it concerns one (app-scoped tokens see their own tasks only).
ALTER TABLE herald.background_task
    ADD COLUMN app_id text COLLATE "C" REFERENCES herald.application (id) ON DELETE CASCADE;

-- The bulk replay (a background task) that last queued this delivery: its progress is how
-- many of them have been delivered since.
ALTER TABLE herald.delivery ADD COLUMN replay_task text COLLATE "C";
