-- no-transaction
-- Claims take due deliveries in (next_attempt_at, id) order: every row of one producer
-- transaction shares next_attempt_at (now() is the transaction's start), and without a
-- tie-breaker the oldest and newest halves of a claim could pick the same rows, so a claim
-- of 500 leased 250. The id makes the order total and the halves disjoint while more than a
-- batch is due. Built concurrently so that an upgrade never blocks enqueueing or delivery
-- (one statement per migration: CONCURRENTLY cannot share a query string).
CREATE INDEX CONCURRENTLY IF NOT EXISTS delivery_due_order_idx
    ON herald.delivery (next_attempt_at, id) WHERE status = 'pending';
