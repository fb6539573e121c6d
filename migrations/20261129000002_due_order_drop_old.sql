-- no-transaction
-- The index delivery_due_order_idx replaces (see the previous migration).
DROP INDEX CONCURRENTLY IF EXISTS herald.delivery_due_idx;
