-- Storage bounded by time, not by volume (issue 15): messages, deliveries and attempts are
-- partitioned by time, so that retention drops whole partitions instead of deleting rows
-- one batch at a time (which at thousands of messages a second neither kept up nor left
-- the hot indexes dense).
--
-- * message: by RANGE of its id, which begins with its creation time (herald.new_id);
-- * delivery: by RANGE of its message's id, so a message and its deliveries share a range;
-- * attempt: by RANGE of its id (created with it).
--
-- Each table has a DEFAULT partition: rows whose id names no time (written by hand), rows
-- written while no partition covered their time, and what must outlive its partition (a
-- delivery still waiting, a dead letter not yet past retention: `herald.drop_partition`
-- moves those there). Retention deletes the default partition's expired rows in batches.
--
-- Existing rows stay where they are: each table becomes the first partition of its new
-- parent, covering every id before this migration (ids are time-ordered, and rows of ids
-- that are not go to the default partition first). Nothing is copied but those few rows;
-- attaching the old table checks its rows against its range (one read of each table).
--
-- What partitions cannot keep:
-- * UNIQUE (app_id, event_id) on messages, which would have to include the partition key:
--   each partition keeps it on its own rows, and writers take a transaction lock on the
--   (application, eventId) pair before looking for an earlier message in every partition
--   (herald.lock_event_id), so two writers of one eventId still serialise;
-- * the foreign keys delivery → message and attempt → delivery (a partitioned parent's key
--   must include its partition key): messages are removed by retention only after their
--   deliveries, and an endpoint's attempts go with it (a trigger below);
-- * delivery's primary key on id alone: each partition has its own index on id instead
--   (ids come from one sequence, so they are unique all the same).
--
-- (Upgrading: the instances of the previous version stop before this runs; see README.)
SET LOCAL lock_timeout = '10s';

-- The id bound of an instant: the prefix and the time part of herald.new_id's ids. An id
-- made at `t` or later sorts at or after it.
CREATE FUNCTION herald.id_bound(prefix text, t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT prefix || '_' || lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0')
$$;

-- The time ranges that have partitions (the same for the three tables). `suffix` names
-- their partitions: herald.message_{suffix}, herald.delivery_{suffix}, herald.attempt_{suffix}.
CREATE TABLE herald.time_partition (
    lo      timestamptz PRIMARY KEY,
    hi      timestamptz NOT NULL CHECK (hi > lo),
    suffix  text NOT NULL UNIQUE
);

-- 1. The constraints partitions cannot keep.
ALTER TABLE herald.attempt DROP CONSTRAINT attempt_delivery_id_fkey;
ALTER TABLE herald.delivery DROP CONSTRAINT delivery_message_id_fkey;

-- 2. The old tables, renamed with their indexes (the new parents' take the names).
ALTER TABLE herald.message RENAME TO message_legacy;
ALTER TABLE herald.delivery RENAME TO delivery_legacy;
ALTER TABLE herald.attempt RENAME TO attempt_legacy;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT i.relname FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = 'herald'
               AND t.relname IN ('message_legacy', 'delivery_legacy', 'attempt_legacy') LOOP
        EXECUTE format('ALTER INDEX herald.%I RENAME TO %I', r.relname, 'legacy_' || r.relname);
    END LOOP;
END
$$;
-- A partition may not have an identity column of its own: the parent's continues it.
ALTER TABLE herald.delivery_legacy ALTER COLUMN id DROP IDENTITY;

-- 3. The partitioned parents, with the indexes every partition has (the old tables have
--    them all already, so attaching them builds nothing).
CREATE TABLE herald.message (LIKE herald.message_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (id);
ALTER TABLE herald.message ADD PRIMARY KEY (id);
ALTER TABLE herald.message ADD FOREIGN KEY (app_id) REFERENCES herald.application (id) ON DELETE CASCADE;
CREATE INDEX message_app_idx ON herald.message (app_id, id);
CREATE INDEX message_created_idx ON herald.message (created_at);
CREATE INDEX message_payload_expiry_idx ON herald.message (payload_expires_at)
    WHERE payload IS NOT NULL AND payload_expires_at IS NOT NULL;

CREATE TABLE herald.delivery (LIKE herald.delivery_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (message_id);
ALTER TABLE herald.delivery ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;
SELECT setval(pg_get_serial_sequence('herald.delivery', 'id'),
              greatest(1, (SELECT coalesce(max(id), 0) FROM herald.delivery_legacy)),
              (SELECT count(*) > 0 FROM herald.delivery_legacy));
ALTER TABLE herald.delivery ADD UNIQUE (message_id, endpoint_id);
ALTER TABLE herald.delivery ADD FOREIGN KEY (endpoint_id) REFERENCES herald.endpoint (id) ON DELETE CASCADE;
CREATE INDEX delivery_lease_idx ON herald.delivery (lease_expires_at) WHERE status = 'sending';
CREATE INDEX delivery_dead_idx ON herald.delivery (app_id, updated_at) WHERE status = 'dead';
CREATE INDEX delivery_endpoint_idx ON herald.delivery (endpoint_id, status);
CREATE INDEX delivery_due_order_idx ON herald.delivery (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX delivery_replay_task_idx ON herald.delivery (replay_task) WHERE replay_task IS NOT NULL;
CREATE INDEX delivery_endpoint_open_idx ON herald.delivery (endpoint_id, id)
    WHERE status IN ('pending', 'sending');

CREATE TABLE herald.attempt (LIKE herald.attempt_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (id);
ALTER TABLE herald.attempt ADD PRIMARY KEY (id);
CREATE INDEX attempt_message_idx ON herald.attempt (message_id, id);
CREATE INDEX attempt_endpoint_idx ON herald.attempt (endpoint_id, id);
CREATE INDEX attempt_delivery_idx ON herald.attempt (delivery_id);
CREATE INDEX attempt_created_brin ON herald.attempt USING brin (created_at);

-- What each partition has on its own: a message partition's eventIds are unique within
-- it, a delivery partition has an index on id. And a delivery partition is vacuumed
-- sooner than PostgreSQL's default (a fifth of its rows dead): each delivery is updated
-- twice (leased, then settled), and until a vacuum the versions left behind stay in the
-- index of due deliveries every claim reads. (A soak at 2,000 messages/s left 120,000 dead
-- versions in each 30 s partition and the claim took 5-8 ms instead of 2; that machine ran
-- with autovacuum off, so the drops alone cleaned up, and this setting was not measured
-- there. A day's partition would wait for millions of dead versions at the default.)
CREATE FUNCTION herald.prepare_partition(suffix text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE UNIQUE INDEX IF NOT EXISTS %I ON herald.%I (app_id, event_id)',
                   'message_' || suffix || '_event_id_idx', 'message_' || suffix);
    EXECUTE format('CREATE UNIQUE INDEX IF NOT EXISTS %I ON herald.%I (id)',
                   'delivery_' || suffix || '_id_idx', 'delivery_' || suffix);
    EXECUTE format('ALTER TABLE herald.%I SET (autovacuum_vacuum_scale_factor = 0.01, '
                   'autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_limit = 1000)',
                   'delivery_' || suffix);
END
$$;

-- 4. The default partitions.
CREATE TABLE herald.message_default PARTITION OF herald.message DEFAULT;
CREATE TABLE herald.delivery_default PARTITION OF herald.delivery DEFAULT;
CREATE TABLE herald.attempt_default PARTITION OF herald.attempt DEFAULT;
SELECT herald.prepare_partition('default');

-- 5. The old tables become the first partitions: every id before now. Rows whose ids name
--    no earlier time (written by hand) go to the default partitions first.
DO $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    INSERT INTO herald.message_default
        SELECT * FROM herald.message_legacy WHERE id >= herald.id_bound('msg', t0);
    DELETE FROM herald.message_legacy WHERE id >= herald.id_bound('msg', t0);
    INSERT INTO herald.delivery_default OVERRIDING SYSTEM VALUE
        SELECT * FROM herald.delivery_legacy WHERE message_id >= herald.id_bound('msg', t0);
    DELETE FROM herald.delivery_legacy WHERE message_id >= herald.id_bound('msg', t0);
    INSERT INTO herald.attempt_default
        SELECT * FROM herald.attempt_legacy WHERE id >= herald.id_bound('atmpt', t0);
    DELETE FROM herald.attempt_legacy WHERE id >= herald.id_bound('atmpt', t0);

    EXECUTE format('ALTER TABLE herald.message ATTACH PARTITION herald.message_legacy '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', herald.id_bound('msg', t0));
    EXECUTE format('ALTER TABLE herald.delivery ATTACH PARTITION herald.delivery_legacy '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', herald.id_bound('msg', t0));
    EXECUTE format('ALTER TABLE herald.attempt ATTACH PARTITION herald.attempt_legacy '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', herald.id_bound('atmpt', t0));
    INSERT INTO herald.time_partition (lo, hi, suffix) VALUES ('-infinity', t0, 'legacy');
END
$$;
-- Its own unique eventIds and delivery ids it has already (its old constraints).

-- 6. Making and dropping partitions (the retention actor calls these; see
--    store::partitions).

-- Makes the partitions of [lo, hi) for the three tables, if no partition covers it. An
-- empty new table is attached (the parent stays open to reads and writes meanwhile); the
-- default partition is checked for rows of the range, and if it has some (written while no
-- partition existed), the range is left to it. Returns whether it made them.
CREATE FUNCTION herald.make_partition(lo timestamptz, hi timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    suffix text := to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MISS');
    t      record;
BEGIN
    IF EXISTS (SELECT 1 FROM herald.time_partition p WHERE p.lo < make_partition.hi AND p.hi > make_partition.lo) THEN
        RETURN false;
    END IF;
    -- Every lock the attaches below take, at once and without queueing; NULL if one is
    -- held (the caller tries again a moment later; caught here, so the server's log is not
    -- filled with refused locks). Waiting for them one by one deadlocked with the engine's
    -- statements, which lock these tables in another order, and a queued ACCESS EXCLUSIVE
    -- request holds up every query behind it.
    BEGIN
        LOCK TABLE ONLY herald.message, ONLY herald.delivery, ONLY herald.attempt
            IN SHARE UPDATE EXCLUSIVE MODE NOWAIT;
        LOCK TABLE herald.message_default, herald.delivery_default, herald.attempt_default
            IN ACCESS EXCLUSIVE MODE NOWAIT;
        LOCK TABLE herald.application, herald.endpoint IN SHARE ROW EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        RETURN NULL;
    END;
    IF EXISTS (SELECT 1 FROM herald.message_default
               WHERE id >= herald.id_bound('msg', lo) AND id < herald.id_bound('msg', hi))
       OR EXISTS (SELECT 1 FROM herald.delivery_default
               WHERE message_id >= herald.id_bound('msg', lo) AND message_id < herald.id_bound('msg', hi))
       OR EXISTS (SELECT 1 FROM herald.attempt_default
               WHERE id >= herald.id_bound('atmpt', lo) AND id < herald.id_bound('atmpt', hi)) THEN
        RETURN false;
    END IF;
    FOR t IN SELECT * FROM (VALUES ('message', 'msg'), ('delivery', 'msg'), ('attempt', 'atmpt')) v(name, prefix) LOOP
        EXECUTE format('CREATE TABLE herald.%I (LIKE herald.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       t.name || '_' || suffix, t.name);
        EXECUTE format('ALTER TABLE herald.%I ATTACH PARTITION herald.%I FOR VALUES FROM (%L) TO (%L)',
                       t.name, t.name || '_' || suffix,
                       herald.id_bound(t.prefix, lo), herald.id_bound(t.prefix, hi));
    END LOOP;
    PERFORM herald.prepare_partition(suffix);
    INSERT INTO herald.time_partition (lo, hi, suffix) VALUES (lo, hi, suffix);
    RETURN true;
END
$$;

-- A first range of a minute from the upgrade on, which the ranges Herald keeps ahead
-- continue (an instance started within it leaves no gap for the default partition).
SELECT herald.make_partition(hi, hi + interval '1 minute')
FROM herald.time_partition WHERE suffix = 'legacy';

-- Drops the partitions of range `suffix` (whose rows are all older than `cutoff`): what
-- must outlive it moves to the default partitions first, in the same transaction, so no
-- query ever misses a row. What outlives it: a message with a delivery still waiting or
-- being sent, or dead and not yet `cutoff` old, with those deliveries. (Attempts go by
-- their age alone.) Returns how many messages moved; NULL if its locks were busy, as in
-- make_partition.
CREATE FUNCTION herald.drop_partition(suffix text, cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    moved bigint;
BEGIN
    -- As in make_partition: every lock at once, or none (the parents' locks cover their
    -- partitions). Dropping a partition drops its foreign keys' triggers on the
    -- applications and endpoints, which takes ACCESS EXCLUSIVE locks on those too.
    BEGIN
        LOCK TABLE herald.message, herald.delivery, herald.attempt IN ACCESS EXCLUSIVE MODE NOWAIT;
        LOCK TABLE herald.application, herald.endpoint IN ACCESS EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        RETURN NULL;
    END;
    EXECUTE format('ALTER TABLE herald.delivery DETACH PARTITION herald.%I', 'delivery_' || suffix);
    EXECUTE format('ALTER TABLE herald.message DETACH PARTITION herald.%I', 'message_' || suffix);
    EXECUTE format('ALTER TABLE herald.attempt DETACH PARTITION herald.%I', 'attempt_' || suffix);
    EXECUTE format(
        'CREATE TEMP TABLE herald_survivors ON COMMIT DROP AS
         SELECT DISTINCT d.message_id AS id FROM herald.%I d
         WHERE d.status IN (''pending'', ''sending'') OR (d.status = ''dead'' AND d.updated_at >= %L)',
        'delivery_' || suffix, cutoff);
    EXECUTE format('INSERT INTO herald.message SELECT m.* FROM herald.%I m
                    WHERE m.id IN (SELECT id FROM herald_survivors)', 'message_' || suffix);
    GET DIAGNOSTICS moved = ROW_COUNT;
    EXECUTE format(
        'INSERT INTO herald.delivery OVERRIDING SYSTEM VALUE SELECT d.* FROM herald.%I d
         WHERE d.message_id IN (SELECT id FROM herald_survivors)
           AND (d.status IN (''pending'', ''sending'') OR (d.status = ''dead'' AND d.updated_at >= %L))',
        'delivery_' || suffix, cutoff);
    DROP TABLE herald_survivors;
    EXECUTE format('DROP TABLE herald.%I, herald.%I, herald.%I',
                   'delivery_' || suffix, 'message_' || suffix, 'attempt_' || suffix);
    DELETE FROM herald.time_partition p WHERE p.suffix = drop_partition.suffix;
    RETURN moved;
END
$$;

-- 7. An endpoint's attempts go with it (the foreign key that did it is gone).
CREATE FUNCTION herald.endpoint_attempts_on_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM herald.attempt a USING old_rows o WHERE a.endpoint_id = o.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER endpoint_attempts_on_delete AFTER DELETE ON herald.endpoint
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION herald.endpoint_attempts_on_delete();

-- 8. eventIds: unique per application across partitions. A writer locks the pair for its
--    transaction, then looks for an earlier message (with a snapshot taken after the lock:
--    a later statement), so a concurrent writer of the same pair waits for this one and
--    then finds its message.
CREATE FUNCTION herald.lock_event_id(app_id text, event_id text) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT pg_advisory_xact_lock(hashtextextended(app_id || '/' || event_id, 1507))
$$;

-- The writers of messages, without ON CONFLICT (app_id, event_id) (no such constraint
-- spans partitions) and with the lock above; otherwise as before. (CREATE OR REPLACE keeps
-- herald.send_message's grants; SECURITY DEFINER, part of a definition, is carried over
-- below.)
CREATE TEMP TABLE herald_old_send_message ON COMMIT DROP AS
    SELECT prosecdef FROM pg_proc
    WHERE oid = 'herald.send_message(text, text, text, text, text[], text[], timestamptz, text)'::regprocedure;
CREATE OR REPLACE FUNCTION herald.send_message(
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
        -- A concurrent writer of the same eventId waits here until this transaction ends;
        -- the next statement (a new snapshot) then sees its message.
        PERFORM herald.lock_event_id(v_app_id, send_message.event_id);
        SELECT m.id INTO v_msg_id FROM herald.message m
            WHERE m.app_id = v_app_id AND m.event_id = send_message.event_id;
        IF v_msg_id IS NOT NULL THEN
            RETURN v_msg_id;  -- idempotent: the first message with this event_id wins
        END IF;
    END IF;

    INSERT INTO herald.message (app_id, event_type, event_id, payload, channels, tags, deliver_at)
        VALUES (v_app_id, send_message.event_type, send_message.event_id, send_message.payload,
                send_message.channels, send_message.tags, send_message.deliver_at)
        RETURNING id INTO v_msg_id;

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

CREATE OR REPLACE FUNCTION herald.send_messages(messages herald.new_message[])
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

    IF EXISTS (SELECT 1 FROM unnest(messages) m WHERE m.event_id IS NOT NULL) THEN
        -- The eventIds of this call, locked in one order (two calls never wait on each
        -- other in a circle); the statement below, with a snapshot taken after the locks,
        -- then finds a concurrent writer's message as `earlier`.
        PERFORM herald.lock_event_id(k.app_id, k.event_id) FROM (
            SELECT DISTINCT a.id AS app_id, i.event_id
            FROM herald.message_rows(messages) i
            CROSS JOIN LATERAL (
                SELECT a.id FROM herald.application a
                WHERE (a.id = i.app OR a.uid = i.app) AND NOT a.operational
                ORDER BY a.id = i.app DESC LIMIT 1) a
            WHERE i.event_id IS NOT NULL AND (i.idem_key IS NULL OR i.ord = ANY (v_claimed))
            ORDER BY 1, 2) k;
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

CREATE OR REPLACE FUNCTION herald.emit_operational(subject_app text, event_type text, data jsonb,
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
    IF emit_operational.event_id IS NOT NULL THEN
        PERFORM herald.lock_event_id(v_app, emit_operational.event_id);
        IF EXISTS (SELECT 1 FROM herald.message m
                   WHERE m.app_id = v_app AND m.event_id = emit_operational.event_id) THEN
            RETURN NULL;  -- emitted before, under this event_id
        END IF;
    END IF;
    INSERT INTO herald.message (app_id, event_type, event_id, payload)
        VALUES (v_app, emit_operational.event_type, emit_operational.event_id,
                jsonb_build_object('type', emit_operational.event_type, 'data', data)::text)
        RETURNING id INTO v_msg;
    INSERT INTO herald.delivery (message_id, endpoint_id, app_id)
        SELECT v_msg, e.id, v_app FROM herald.endpoint e
        WHERE e.app_id = v_app AND NOT e.disabled
          AND (e.event_types IS NULL OR emit_operational.event_type = ANY (e.event_types));
    PERFORM pg_notify('herald_delivery', '');
    RETURN v_msg;
END
$$;

DO $$
BEGIN
    IF (SELECT prosecdef FROM herald_old_send_message) THEN
        ALTER FUNCTION herald.send_message(text, text, text, text, text[], text[], timestamptz, text)
            SECURITY DEFINER;
    END IF;
END
$$;

-- The ordered claim looks deliveries up by message id and id, as the usual claim does (one
-- partition each), instead of by id alone (every partition).
CREATE OR REPLACE FUNCTION herald.lease_ordered_heads(paused text[], owner text, token uuid, lease_secs float8)
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
        SELECT e.id AS ep, e.ordered_on_dead, h.id AS head, h.message_id AS head_message
        FROM herald.endpoint e
        CROSS JOIN LATERAL (
            SELECT d.id, d.message_id FROM herald.delivery d
            WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'sending')
            ORDER BY d.id LIMIT 1) h
        WHERE e.id = ANY (v_locked)
    ), ready AS MATERIALIZED (
        SELECT h.head, h.head_message FROM heads h
        JOIN herald.delivery d ON d.message_id = h.head_message AND d.id = h.head
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
    FROM ready r
    WHERE d.message_id = r.head_message AND d.id = r.head AND d.status = 'pending'
    RETURNING d.id, d.attempts, d.manual, d.alerted, d.message_id, d.endpoint_id;
END
$$;
