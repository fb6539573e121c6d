-- no-transaction
-- A bulk replay's deliveries, for its progress; only replayed rows are in it. Built without
-- blocking producers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS delivery_replay_task_idx ON herald.delivery (replay_task)
    WHERE replay_task IS NOT NULL;
