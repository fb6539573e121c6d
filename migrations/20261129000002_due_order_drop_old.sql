-- delivery_due_order_idx replaces delivery_due_idx (see the previous migration). It is
-- dropped only once the new one is valid: a concurrent build that was interrupted (a
-- deadlock with another instance migrating at the same moment, say) leaves an invalid
-- index that IF NOT EXISTS then skips, and claims would lose their index.
SET LOCAL lock_timeout = '10s';
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_index
                   WHERE indexrelid = 'herald.delivery_due_order_idx'::regclass AND indisvalid) THEN
        RAISE EXCEPTION 'herald.delivery_due_order_idx is invalid (an interrupted build): run "DROP INDEX CONCURRENTLY herald.delivery_due_order_idx;" and migrate again (herald migrate, one instance at a time)';
    END IF;
END
$$;
DROP INDEX IF EXISTS herald.delivery_due_idx;
