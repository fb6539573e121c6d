//! Signing secrets with their rotation history, for endpoints and for applications (whose
//! secret signs deliveries to a message's own callback URL). The current secret has no
//! expiry; a rotated-out one keeps signing until its grace period ends, so receivers can
//! deploy the new one without missing a delivery.

use sqlx::PgPool;

/// Whose secrets.
#[derive(Debug, Clone, Copy)]
pub enum SecretOwner<'a> {
    Endpoint(&'a str),
    Application(&'a str),
}

/// Rotated-out secrets are kept this long after they stop signing, then forgotten.
const HISTORY: &str = "7 days";

impl SecretOwner<'_> {
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

/// The current secret's key, if there is one.
pub async fn current(
    pool: &PgPool,
    owner: SecretOwner<'_>,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let (secrets, column, _) = owner.tables();
    sqlx::query_scalar(&format!(
        "SELECT key FROM {secrets} WHERE {column} = $1 AND expires_at IS NULL"
    ))
    .bind(owner.id())
    .fetch_optional(pool)
    .await
}

/// Makes `key` the current secret; the previous one keeps signing beside it for
/// `grace_seconds`. Returns false when the owner does not exist.
pub async fn rotate(
    pool: &PgPool,
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
    .bind(key)
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
