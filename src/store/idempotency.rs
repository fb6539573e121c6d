//! The idempotency log: a POST with an `idempotency-key` is answered once, and a retry with
//! the same key and body gets that answer instead of acting twice (the Svix SDKs send a key
//! on every POST and reuse it when they retry after a 5xx or a timeout).
//!
//! Keys are scoped to the caller (two tenants' keys never collide) and bound to the request
//! they came with (method, path, query, and a digest of the body). A message create claims
//! its key in the same transaction as the message ([`super::ingest`]). Every other POST
//! claims the key before it runs, with an expiry: if the answer is never recorded (the
//! request failed, the process died), a retry after the expiry runs the request again
//! instead of being told "still in progress" for a day. Claims and answers of concurrent
//! requests share statements and commits (group commit).

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use super::group_commit::Batch;

/// A request with an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedRequest {
    /// Whose key it is (the caller's token identity).
    pub scope: String,
    pub key: String,
    /// `METHOD path?query`.
    pub request: String,
    /// SHA-256 of the body.
    pub fingerprint: Vec<u8>,
}

impl KeyedRequest {
    pub fn new(scope: &str, key: &str, request: String, body: &[u8]) -> KeyedRequest {
        KeyedRequest {
            scope: scope.to_string(),
            key: key.to_string(),
            request,
            fingerprint: Sha256::digest(body).to_vec(),
        }
    }

    /// The same request as the one that holds the key?
    pub fn matches(&self, request: Option<&str>, fingerprint: Option<&[u8]>) -> bool {
        request == Some(self.request.as_str()) && fingerprint == Some(self.fingerprint.as_slice())
    }
}

/// Claims a key for a request about to run, until `locked_until`. The token marks the claim
/// as this request's: its answer (or its release) touches the key only while it still holds
/// it (a request that outlives its lock may find its key taken over by a retry).
pub struct KeyClaim {
    pub request: KeyedRequest,
    pub locked_until: DateTime<Utc>,
    pub token: uuid::Uuid,
}

impl KeyClaim {
    pub fn new(request: KeyedRequest, lock: Duration) -> KeyClaim {
        KeyClaim {
            request,
            locked_until: Utc::now() + chrono::Duration::from_std(lock).unwrap_or_default(),
            token: uuid::Uuid::new_v4(),
        }
    }
}

/// `true` when this claim took the key (the request runs): it was free, or held by a claim
/// of the same request (route and body) whose lock expired without an answer.
impl Batch for KeyClaim {
    type Output = bool;

    #[allow(clippy::manual_async_fn)]
    fn write<'a>(
        conn: &'a mut PgConnection,
        claims: &'a [&'a Self],
    ) -> impl Future<Output = Result<Vec<bool>, sqlx::Error>> + 'a {
        async move {
            let col = |f: fn(&KeyedRequest) -> &str| -> Vec<&str> {
                claims.iter().map(|c| f(&c.request)).collect()
            };
            let fingerprints: Vec<&[u8]> = claims
                .iter()
                .map(|c| c.request.fingerprint.as_slice())
                .collect();
            let until: Vec<DateTime<Utc>> = claims.iter().map(|c| c.locked_until).collect();
            let tokens: Vec<uuid::Uuid> = claims.iter().map(|c| c.token).collect();
            let taken: Vec<(String, String)> = sqlx::query_as(
                "INSERT INTO herald.idempotency AS x (scope, key, request, fingerprint, locked_until, claim_token) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::uuid[]) \
                 ON CONFLICT (scope, key) DO UPDATE SET locked_until = EXCLUDED.locked_until, \
                     claim_token = EXCLUDED.claim_token, created_at = now() \
                   WHERE x.status IS NULL AND x.message_id IS NULL \
                     AND x.request = EXCLUDED.request AND x.fingerprint = EXCLUDED.fingerprint \
                     AND coalesce(x.locked_until, '-infinity') < now() \
                 RETURNING x.scope, x.key",
            )
            .bind(col(|r| &r.scope))
            .bind(col(|r| &r.key))
            .bind(col(|r| &r.request))
            .bind(&fingerprints)
            .bind(&until)
            .bind(&tokens)
            .fetch_all(conn)
            .await?;
            Ok(claims
                .iter()
                .map(|c| {
                    taken
                        .iter()
                        .any(|(s, k)| *s == c.request.scope && *k == c.request.key)
                })
                .collect())
        }
    }

    /// The same key twice in one statement could not tell which request got it.
    fn keys(&self) -> Vec<String> {
        vec![format!("{}\n{}", self.request.scope, self.request.key)]
    }
}

/// The answer to replay for a claimed key, recorded while the claim is still `token`'s.
pub struct KeyAnswer {
    pub scope: String,
    pub key: String,
    pub token: uuid::Uuid,
    pub status: i16,
    pub body: bytes::Bytes,
}

impl Batch for KeyAnswer {
    type Output = ();

    #[allow(clippy::manual_async_fn)]
    fn write<'a>(
        conn: &'a mut PgConnection,
        answers: &'a [&'a Self],
    ) -> impl Future<Output = Result<Vec<()>, sqlx::Error>> + 'a {
        async move {
            let scopes: Vec<&str> = answers.iter().map(|a| a.scope.as_str()).collect();
            let keys: Vec<&str> = answers.iter().map(|a| a.key.as_str()).collect();
            let statuses: Vec<i16> = answers.iter().map(|a| a.status).collect();
            let bodies: Vec<&[u8]> = answers.iter().map(|a| a.body.as_ref()).collect();
            let tokens: Vec<uuid::Uuid> = answers.iter().map(|a| a.token).collect();
            sqlx::query(
                "UPDATE herald.idempotency i SET status = a.status, body = a.body, locked_until = NULL \
                 FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bytea[], $5::uuid[]) \
                     AS a(scope, key, status, body, token) \
                 WHERE i.scope = a.scope AND i.key = a.key AND i.claim_token = a.token",
            )
            .bind(&scopes)
            .bind(&keys)
            .bind(&statuses)
            .bind(&bodies)
            .bind(&tokens)
            .execute(conn)
            .await?;
            Ok(vec![(); answers.len()])
        }
    }

    fn size(&self) -> usize {
        self.body.len()
    }
}

/// What holds a key that a claim found taken.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Held {
    /// `None` when the key vanished meanwhile (it expired): a retry will find it free.
    pub request: Option<String>,
    pub fingerprint: Option<Vec<u8>>,
    /// A recorded answer (a request other than a message create).
    pub status: Option<i16>,
    pub body: Option<Vec<u8>>,
    /// The message a message create made.
    pub message_id: Option<String>,
}

pub async fn held(pool: &PgPool, scope: &str, key: &str) -> Result<Held, sqlx::Error> {
    let held: Option<Held> = sqlx::query_as(
        "SELECT request, fingerprint, status, body, message_id \
         FROM herald.idempotency WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(held.unwrap_or(Held {
        request: None,
        fingerprint: None,
        status: None,
        body: None,
        message_id: None,
    }))
}

/// Frees a claim whose request will not be answered (it failed), if it is still `token`'s:
/// a retry runs the request again. If this fails too, the claim's lock expires by itself.
pub async fn forget(
    pool: &PgPool,
    scope: &str,
    key: &str,
    token: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM herald.idempotency WHERE scope = $1 AND key = $2 AND claim_token = $3 \
         AND status IS NULL AND message_id IS NULL",
    )
    .bind(scope)
    .bind(key)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(())
}
