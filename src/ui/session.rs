//! Browser sessions of the dashboard and the portal, stored hashed (`herald.ui_session`).
//! A session is as good as the token it was started with: it names that token, and every
//! page checks the token is still live (or still configured), so revoking a token ends its
//! sessions at once.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::access::token::{hash, random_secret};

/// What a session was started with.
#[derive(Debug, Clone, PartialEq)]
pub enum Holder {
    /// A token of `HERALD_API_TOKENS`, by its digest.
    Configured { digest: String },
    /// A runtime token (operator, or the portal token of a link).
    Token { id: String },
}

#[derive(Debug, Clone)]
pub struct Session {
    pub holder: Holder,
    /// Sent back by every form.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Starts a session; returns the cookie's value (shown to nobody else, stored hashed).
pub async fn start(
    pool: &PgPool,
    holder: &Holder,
    expires_at: DateTime<Utc>,
) -> Result<(String, Session), sqlx::Error> {
    let id = random_secret();
    let csrf = random_secret();
    let (token_id, operator) = match holder {
        Holder::Configured { digest } => (None, Some(digest.as_str())),
        Holder::Token { id } => (Some(id.as_str()), None),
    };
    sqlx::query(
        "INSERT INTO herald.ui_session (id_hash, token_id, operator, csrf, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash(&id))
    .bind(token_id)
    .bind(operator)
    .bind(&csrf)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok((
        id,
        Session {
            holder: holder.clone(),
            csrf,
            expires_at,
        },
    ))
}

/// A session as stored: its token or its configured token's digest, its CSRF token, and
/// when it ends.
type SessionRow = (Option<String>, Option<String>, String, DateTime<Utc>);

/// The unexpired session a cookie names.
pub async fn find(pool: &PgPool, cookie: &str) -> Result<Option<Session>, sqlx::Error> {
    let row: Option<SessionRow> = sqlx::query_as(
        "SELECT token_id, operator, csrf, expires_at FROM herald.ui_session \
         WHERE id_hash = $1 AND expires_at > now()",
    )
    .bind(hash(cookie))
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(token_id, operator, csrf, expires_at)| {
        let holder = match (token_id, operator) {
            (Some(id), _) => Holder::Token { id },
            (None, Some(digest)) => Holder::Configured { digest },
            (None, None) => return None,
        };
        Some(Session {
            holder,
            csrf,
            expires_at,
        })
    }))
}

/// Ends the session a cookie names (signing out).
pub async fn end(pool: &PgPool, cookie: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM herald.ui_session WHERE id_hash = $1")
        .bind(hash(cookie))
        .execute(pool)
        .await?;
    Ok(())
}
