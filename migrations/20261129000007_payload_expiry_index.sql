-- no-transaction
-- Payloads whose message asked for a shorter retention, found by retention without scanning
-- the messages. Built without blocking producers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS message_payload_expiry_idx ON herald.message (payload_expires_at)
    WHERE payload IS NOT NULL AND payload_expires_at IS NOT NULL;
