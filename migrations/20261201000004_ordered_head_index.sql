-- no-transaction
-- The head of an ordered endpoint's queue: its unfinished delivery with the lowest id.
-- Built concurrently so that an upgrade never blocks enqueueing or delivery.
CREATE INDEX CONCURRENTLY IF NOT EXISTS delivery_endpoint_open_idx
    ON herald.delivery (endpoint_id, id) WHERE status IN ('pending', 'sending');
