//! Sealing what is stored in plaintext, and re-sealing what an older key sealed, a batch at
//! a time in short transactions, while Herald runs.
//!
//! The retention actor seals plaintext on every pass (rows of earlier versions, rows written
//! by hand, application secrets made by the database's trigger); `herald keys rotate` also
//! re-seals every value not sealed with the current key. Only the explicit rotation
//! re-seals: instances with different current keys (during a rolling change of key) would
//! otherwise take turns re-sealing each other's values.

use sqlx::{PgPool, Postgres, Transaction};

use super::{Keyring, OpenError, Purpose, PREFIX};

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub endpoint_secrets: u64,
    pub application_secrets: u64,
    /// Endpoints whose header values were sealed.
    pub headers: u64,
    pub sources: u64,
    /// Values left as they are: sealed with a key this Herald does not have.
    pub unreadable: u64,
}

impl Swept {
    pub fn total(&self) -> u64 {
        self.endpoint_secrets + self.application_secrets + self.headers + self.sources
    }
}

/// Which values a sweep takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Plaintext only.
    Plaintext,
    /// Everything not sealed with the current key.
    NotCurrent,
}

impl Scope {
    /// How a batch locks its rows. The retention actor's sweep skips rows locked by the
    /// engine (the next pass takes them); a rotation must take every row, since the old key
    /// may be discarded after it, so it waits for them (up to `lock_timeout`, then fails
    /// and can be run again).
    fn locking(self) -> &'static str {
        match self {
            Scope::Plaintext => "FOR NO KEY UPDATE SKIP LOCKED",
            Scope::NotCurrent => "FOR NO KEY UPDATE",
        }
    }
}

/// Seals (or re-seals) every value in `scope`, `batch` rows per transaction.
pub async fn sweep(
    pool: &PgPool,
    ring: &Keyring,
    scope: Scope,
    batch: i64,
) -> Result<Swept, sqlx::Error> {
    let Some(prefix) = ring.current_prefix() else {
        return Ok(Swept::default()); // Nothing to seal with.
    };
    // The text a value must start with to be left alone.
    let keep = match scope {
        Scope::Plaintext => PREFIX.to_string(),
        Scope::NotCurrent => prefix,
    };
    let mut swept = Swept::default();
    for (table, purpose) in [
        ("endpoint_secret", Purpose::EndpointSecret),
        ("application_secret", Purpose::ApplicationSecret),
    ] {
        let (sealed, unreadable) = secrets(pool, ring, table, purpose, &keep, scope, batch).await?;
        match purpose {
            Purpose::EndpointSecret => swept.endpoint_secrets = sealed,
            _ => swept.application_secrets = sealed,
        }
        swept.unreadable += unreadable;
    }
    let (sealed, unreadable) = json_secrets(pool, ring, &HEADERS, &keep, scope, batch).await?;
    swept.headers = sealed;
    swept.unreadable += unreadable;
    let (sealed, unreadable) = json_secrets(pool, ring, &SOURCES, &keep, scope, batch).await?;
    swept.sources = sealed;
    swept.unreadable += unreadable;
    Ok(swept)
}

/// Opens `stored` and seals it with the current key; `None` when no key here opens it.
fn reseal(ring: &Keyring, purpose: Purpose, stored: &[u8]) -> Result<Option<Vec<u8>>, sqlx::Error> {
    match ring.open(purpose, stored) {
        Ok(plain) => Ok(Some(ring.seal(purpose, &plain))),
        Err(OpenError::UnknownKey(_)) => Ok(None),
        Err(e @ OpenError::Corrupt) => Err(sqlx::Error::Decode(Box::new(e))),
    }
}

async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Re-sealing is not a change of the endpoint (no endpoint.updated event). The engine
    // holds an endpoint's row for a statement at a time: a rotation's wait is short.
    sqlx::query("SELECT set_config('herald.resealing', 'on', true), set_config('lock_timeout', '10s', true)")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Signing secrets (`key bytea`), by id.
async fn secrets(
    pool: &PgPool,
    ring: &Keyring,
    table: &str,
    purpose: Purpose,
    keep: &str,
    scope: Scope,
    batch: i64,
) -> Result<(u64, u64), sqlx::Error> {
    let (mut sealed, mut unreadable, mut after) = (0, 0, 0i64);
    loop {
        let mut tx = begin(pool).await?;
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(&format!(
            "SELECT id, key FROM herald.{table} \
             WHERE id > $1 AND substring(key FROM 1 FOR length($2::bytea)) <> $2::bytea \
             ORDER BY id LIMIT $3 {}",
            scope.locking()
        ))
        .bind(after)
        .bind(keep.as_bytes())
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last() else {
            return Ok((sealed, unreadable));
        };
        after = last.0;
        for (id, key) in &rows {
            match reseal(ring, purpose, key)? {
                Some(new) => {
                    sqlx::query(&format!("UPDATE herald.{table} SET key = $2 WHERE id = $1"))
                        .bind(id)
                        .bind(new)
                        .execute(&mut *tx)
                        .await?;
                    sealed += 1;
                }
                None => unreadable += 1,
            }
        }
        tx.commit().await?;
    }
}

/// A JSON object column whose string values (all of them, or the `fields` named) are
/// secrets: endpoints' headers, sources' configs.
struct JsonSecrets {
    table: &'static str,
    column: &'static str,
    /// `None`: every value.
    fields: Option<&'static [&'static str]>,
    purpose: Purpose,
}

const HEADERS: JsonSecrets = JsonSecrets {
    table: "endpoint",
    column: "headers",
    fields: None,
    purpose: Purpose::HeaderValue,
};

const SOURCES: JsonSecrets = JsonSecrets {
    table: "ingest_source",
    column: "config",
    fields: Some(&SOURCE_SECRET_FIELDS),
    purpose: Purpose::SourceSecret,
};

/// Rows of `what` with a value not starting with `keep`, by id.
async fn json_secrets(
    pool: &PgPool,
    ring: &Keyring,
    what: &JsonSecrets,
    keep: &str,
    scope: Scope,
    batch: i64,
) -> Result<(u64, u64), sqlx::Error> {
    let JsonSecrets {
        table,
        column,
        fields,
        purpose,
    } = what;
    // `$4` null: every key of the object.
    let select = format!(
        "SELECT id, {column} FROM herald.{table} t WHERE id > $1 AND EXISTS ( \
             SELECT 1 FROM jsonb_each(t.{column}) v \
             WHERE ($4::text[] IS NULL OR v.key = ANY ($4::text[])) \
               AND jsonb_typeof(v.value) = 'string' AND NOT starts_with(v.value #>> '{{}}', $2)) \
         ORDER BY id LIMIT $3 {}",
        scope.locking()
    );
    let update = format!("UPDATE herald.{table} SET {column} = $2 WHERE id = $1");
    let (mut sealed, mut unreadable, mut after) = (0, 0, String::new());
    loop {
        let mut tx = begin(pool).await?;
        let rows: Vec<(
            String,
            sqlx::types::Json<serde_json::Map<String, serde_json::Value>>,
        )> = sqlx::query_as(&select)
            .bind(&after)
            .bind(keep)
            .bind(batch)
            .bind(fields.map(|f| f.to_vec()))
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = rows.last() else {
            return Ok((sealed, unreadable));
        };
        after = last.0.clone();
        for (id, object) in rows {
            let mut object = object.0;
            let mut changed = false;
            for (name, value) in object.iter_mut() {
                if fields.is_some_and(|f| !f.contains(&name.as_str())) {
                    continue;
                }
                let Some(text) = value.as_str().filter(|t| !t.starts_with(keep)) else {
                    continue;
                };
                match reseal(ring, *purpose, text.as_bytes())? {
                    Some(new) => {
                        *value = String::from_utf8(new).expect("sealed is ASCII").into();
                        changed = true;
                    }
                    None => unreadable += 1,
                }
            }
            if changed {
                sqlx::query(&update)
                    .bind(&id)
                    .bind(sqlx::types::Json(object))
                    .execute(&mut *tx)
                    .await?;
                sealed += 1;
            }
        }
        tx.commit().await?;
    }
}

/// The fields of a source's config that hold secrets (`crate::ingest::source`).
pub const SOURCE_SECRET_FIELDS: [&str; 2] = ["secret", "apiKey"];

/// A source's config (as the caller gave it, opened) with its secret fields sealed.
pub fn seal_source_config(ring: &Keyring, mut config: serde_json::Value) -> serde_json::Value {
    for field in SOURCE_SECRET_FIELDS {
        if let Some(text) = config[field].as_str() {
            config[field] = ring.seal_str(Purpose::SourceSecret, text).into();
        }
    }
    config
}

/// A source's config with its secret fields opened.
pub fn open_source_config(
    ring: &Keyring,
    mut config: serde_json::Value,
) -> Result<serde_json::Value, OpenError> {
    for field in SOURCE_SECRET_FIELDS {
        if let Some(text) = config[field].as_str() {
            config[field] = ring.open_str(Purpose::SourceSecret, text)?.into();
        }
    }
    Ok(config)
}
