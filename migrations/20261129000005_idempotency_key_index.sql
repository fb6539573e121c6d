-- no-transaction
-- Idempotency keys are unique per caller: (scope, key). Built without blocking the POSTs
-- that write keys; the next migration makes it the primary key.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idempotency_scope_key_idx
    ON herald.idempotency (scope, key);
