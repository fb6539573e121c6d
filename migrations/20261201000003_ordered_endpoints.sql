-- Strictly ordered endpoints (issue 14): an endpoint with `ordered` gets its deliveries one
-- at a time, in the order they were written (delivery.id: the order of the producers'
-- inserts), the next only once the previous one succeeded or died. `ordered_on_dead` says
-- what a dead delivery at the head does: 'skip' (the default) lets the rest go on, the dead
-- letter recorded as any other; 'block' holds the rest until it is replayed (or deleted).
-- A lock wait gives up after 10 s rather than stall producers behind it (migrate again).
SET LOCAL lock_timeout = '10s';

ALTER TABLE herald.endpoint
    ADD COLUMN ordered boolean NOT NULL DEFAULT false,
    ADD COLUMN ordered_on_dead text NOT NULL DEFAULT 'skip'
        CHECK (ordered_on_dead IN ('skip', 'block'));
CREATE INDEX endpoint_ordered_idx ON herald.endpoint (id) WHERE ordered;

-- Leases the next delivery of each ordered endpoint that nothing of it is in flight, for
-- `owner` under `token` for `lease_secs`. Two statements, in one function so that a client
-- sends one statement (nothing is left open if it gives up midway): the first locks the
-- ordered endpoints no other claimer is working on (FOR NO KEY UPDATE SKIP LOCKED, which
-- producers' foreign-key locks do not conflict with); the second runs with a snapshot
-- taken after those locks were granted (each statement of a VOLATILE function gets its
-- own), so it sees every lease an earlier claimer of the same endpoint committed, and
-- leases an endpoint's head only when none of its deliveries is in flight.
CREATE FUNCTION herald.lease_ordered_heads(paused text[], owner text, token uuid, lease_secs float8)
RETURNS TABLE (id bigint, attempts integer, manual boolean, message_id text, endpoint_id text)
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
    RETURNING d.id, d.attempts, d.manual, d.message_id, d.endpoint_id;
END
$$;
