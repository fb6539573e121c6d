-- An application's own signing secret, beside its endpoints' (issue 14). Deliveries to a
-- URL given with a message (a payment request's callback URL) are signed with it: the
-- merchant learns it once, before its first delivery, instead of one secret per URL.
-- Same shape and rotation as endpoint secrets: the current one has no expiry; a
-- rotated-out one keeps signing until `expires_at`.
-- A lock wait gives up after 10 s rather than stall producers behind it (migrate again).
SET LOCAL lock_timeout = '10s';

CREATE TABLE herald.application_secret (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id      text COLLATE "C" NOT NULL REFERENCES herald.application (id) ON DELETE CASCADE,
    key         bytea NOT NULL CHECK (octet_length(key) BETWEEN 24 AND 64),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz
);
CREATE INDEX application_secret_app_idx ON herald.application_secret (app_id);
CREATE UNIQUE INDEX application_secret_current_idx ON herald.application_secret (app_id)
    WHERE expires_at IS NULL;

-- 32 bytes for a new key: SHA-256 over two v4 UUIDs, i.e. 244 bits from PostgreSQL's
-- strong random source (gen_random_uuid), without requiring the pgcrypto extension.
CREATE FUNCTION herald.new_signing_key() RETURNS bytea
LANGUAGE sql VOLATILE AS $$
    SELECT sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))
$$;

-- Every application has a secret from its creation, however it was created (the API, a
-- source, SQL written by hand).
CREATE FUNCTION herald.application_secret_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO herald.application_secret (app_id, key) VALUES (NEW.id, herald.new_signing_key());
    RETURN NULL;
END
$$;
CREATE TRIGGER application_secret_on_insert AFTER INSERT ON herald.application
    FOR EACH ROW EXECUTE FUNCTION herald.application_secret_on_insert();

INSERT INTO herald.application_secret (app_id, key)
    SELECT a.id, herald.new_signing_key() FROM herald.application a
    WHERE NOT EXISTS (SELECT 1 FROM herald.application_secret s WHERE s.app_id = a.id);
