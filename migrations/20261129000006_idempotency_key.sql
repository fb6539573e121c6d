-- (scope, key) becomes the primary key, from the index the previous migration built.
SET LOCAL lock_timeout = '10s';
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_index
                   WHERE indexrelid = 'herald.idempotency_scope_key_idx'::regclass AND indisvalid) THEN
        RAISE EXCEPTION 'herald.idempotency_scope_key_idx is invalid (an interrupted build): run "DROP INDEX CONCURRENTLY herald.idempotency_scope_key_idx;" and migrate again (herald migrate, one instance at a time)';
    END IF;
END
$$;
ALTER TABLE herald.idempotency
    DROP CONSTRAINT idempotency_pkey,
    ADD CONSTRAINT idempotency_pkey PRIMARY KEY USING INDEX idempotency_scope_key_idx;
