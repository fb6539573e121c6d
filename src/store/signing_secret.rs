//! Signing secrets with their rotation history, for endpoints and for applications (whose
//! secret signs deliveries to a message's own callback URL). The current secret has no
//! expiry; a rotated-out one keeps signing until its grace period ends, so receivers can
//! deploy the new one without missing a delivery.

use sqlx::PgPool;

use crate::keyring::{Keyring, Purpose};

/// Whose secrets.
#[derive(Debug, Clone, Copy)]
pub enum SecretOwner<'a> {
    Endpoint(&'a str),
    Application(&'a str),
}

/// Rotated-out secrets are kept this long after they stop signing, then forgotten.
const HISTORY: &str = "7 days";

impl SecretOwner<'_> {
    /// What its secrets are, sealed.
    pub fn purpose(&self) -> Purpose {
        match self {
            SecretOwner::Endpoint(_) => Purpose::EndpointSecret,
            SecretOwner::Application(_) => Purpose::ApplicationSecret,
        }
    }

    fn id(&self) -> &str {
        match self {
            SecretOwner::Endpoint(id) | SecretOwner::Application(id) => id,
        }
    }

    /// (secrets table, its owner column, the owners that have such secrets). A callback
    /// endpoint has none of its own: its application's secret signs for it.
    fn tables(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            SecretOwner::Endpoint(_) => (
                "herald.endpoint_secret",
                "endpoint_id",
                "herald.endpoint WHERE NOT callback AND",
            ),
            SecretOwner::Application(_) => (
                "herald.application_secret",
                "app_id",
                "herald.application WHERE",
            ),
        }
    }
}

/// Seals application `app_id`'s secrets still in plaintext: the trigger that makes an
/// application's first secret (for applications written by any means) cannot seal it, so
/// whoever makes an application through Herald seals it right after, in the same
/// transaction. (The retention actor's sweep seals those written by hand.)
pub async fn seal_application_secrets(
    conn: &mut sqlx::PgConnection,
    ring: &Keyring,
    app_id: &str,
) -> Result<(), sqlx::Error> {
    if ring.current_id().is_none() {
        return Ok(());
    }
    let plain: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT id, key FROM herald.application_secret \
         WHERE app_id = $1 AND substring(key FROM 1 FOR 4) <> $2::bytea FOR NO KEY UPDATE",
    )
    .bind(app_id)
    .bind(crate::keyring::PREFIX.as_bytes())
    .fetch_all(&mut *conn)
    .await?;
    for (id, key) in plain {
        sqlx::query("UPDATE herald.application_secret SET key = $2 WHERE id = $1")
            .bind(id)
            .bind(ring.seal(Purpose::ApplicationSecret, &key))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The current secret's key (opened), if there is one.
pub async fn current(
    pool: &PgPool,
    ring: &Keyring,
    owner: SecretOwner<'_>,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let (secrets, column, _) = owner.tables();
    let stored: Option<Vec<u8>> = sqlx::query_scalar(&format!(
        "SELECT key FROM {secrets} WHERE {column} = $1 AND expires_at IS NULL"
    ))
    .bind(owner.id())
    .fetch_optional(pool)
    .await?;
    stored
        .map(|key| {
            ring.open(owner.purpose(), &key)
                .map(|k| k.into_owned())
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))
        })
        .transpose()
}

/// Makes `key` the current secret; the previous one keeps signing beside it for
/// `grace_seconds`. Returns false when the owner does not exist.
pub async fn rotate(
    pool: &PgPool,
    ring: &Keyring,
    owner: SecretOwner<'_>,
    key: &[u8],
    grace_seconds: i64,
) -> Result<bool, sqlx::Error> {
    let (secrets, column, owners) = owner.tables();
    let mut tx = pool.begin().await?;
    // Serialize rotations of one owner: the unique index allows one current secret.
    // (NO KEY: producers' foreign-key locks on the row do not hold a rotation back.)
    let found = sqlx::query(&format!("SELECT 1 FROM {owners} id = $1 FOR NO KEY UPDATE"))
        .bind(owner.id())
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Ok(false);
    }
    sqlx::query(&format!(
        "UPDATE {secrets} SET expires_at = now() + make_interval(secs => $2) \
         WHERE {column} = $1 AND expires_at IS NULL"
    ))
    .bind(owner.id())
    .bind(grace_seconds as f64)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {secrets} ({column}, key) VALUES ($1, $2)"
    ))
    .bind(owner.id())
    .bind(ring.seal(owner.purpose(), key))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "DELETE FROM {secrets} WHERE {column} = $1 AND expires_at < now() - interval '{HISTORY}'"
    ))
    .bind(owner.id())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
