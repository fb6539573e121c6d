-- Retention (the retention actor, HERALD_RETENTION_DAYS) finds old attempts by creation
-- time. Attempts are appended in time order, so a BRIN index is enough: it is a few pages
-- for millions of rows and costs next to nothing on the delivery hot path, unlike a B-tree.
CREATE INDEX attempt_created_brin ON herald.attempt USING brin (created_at);
