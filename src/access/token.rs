//! Tokens managed at run time: made by `herald token create`, the token routes, or a portal
//! link; stored only as a SHA-256 hash and shown once, at creation.
//!
//! A token is `hrld_` and 43 characters of base64url (32 random bytes): no dot in it, since
//! the Svix SDKs read what follows a token's last dot as a region.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use utoipa::ToSchema;

/// What every runtime token starts with: a presented token without it is not looked up.
pub const PREFIX: &str = "hrld_";

/// What a token may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ApiTokenKind)]
pub enum TokenKind {
    /// Every route, as a token from `HERALD_API_TOKENS`.
    Operator,
    /// One application's routes (a merchant's own backend, say).
    Application,
    /// One application's routes, made for a partner by app-portal-access.
    Portal,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Operator => "operator",
            TokenKind::Application => "application",
            TokenKind::Portal => "portal",
        }
    }

    fn parse(s: &str) -> Option<TokenKind> {
        [
            TokenKind::Operator,
            TokenKind::Application,
            TokenKind::Portal,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl sqlx::Type<sqlx::Postgres> for TokenKind {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for TokenKind {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let s = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        TokenKind::parse(s).ok_or_else(|| format!("unknown token kind {s:?}").into())
    }
}

/// A token as listed: everything but the token.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ApiTokenOut)]
pub struct TokenRow {
    /// `tok_…`
    pub id: String,
    pub name: String,
    pub kind: TokenKind,
    /// The application it is limited to (not for operator tokens).
    pub app_id: Option<String>,
    /// Event types with a feature flag are visible only to tokens with one of their flags.
    pub feature_flags: Vec<String>,
    /// Only `GET` routes.
    pub read_only: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// To the minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TokenRow {
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// A token to make.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub kind: TokenKind,
    pub app_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub feature_flags: Vec<String>,
    pub read_only: bool,
}

/// A token just made: the only time its secret (and a portal token's sign-in code) exists
/// outside the caller's hands.
#[derive(Debug)]
pub struct Issued {
    pub row: TokenRow,
    pub token: String,
    /// A portal token's one-time sign-in code (for its link).
    pub link_code: Option<String>,
}

/// 32 random bytes, base64url.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

pub const COLUMNS: &str =
    "id, name, kind, app_id, feature_flags, read_only, created_at, expires_at, \
                       revoked_at, last_used_at";

pub async fn issue(pool: &PgPool, new: &NewToken) -> Result<Issued, sqlx::Error> {
    let token = format!("{PREFIX}{}", random_secret());
    let link_code = (new.kind == TokenKind::Portal).then(random_secret);
    let sql = format!(
        "INSERT INTO herald.api_token \
             (name, kind, app_id, token_hash, link_hash, feature_flags, read_only, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as(&sql)
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(&new.app_id)
        .bind(hash(&token))
        .bind(link_code.as_deref().map(hash))
        .bind(&new.feature_flags)
        .bind(new.read_only)
        .bind(new.expires_at)
        .fetch_one(pool)
        .await?;
    Ok(Issued {
        row,
        token,
        link_code,
    })
}

/// The live token `presented` is, if any. Its use is noted, at most once a minute (a write
/// per request would make every API call a write).
pub async fn verify(pool: &PgPool, presented: &str) -> Result<Option<TokenRow>, sqlx::Error> {
    if !presented.starts_with(PREFIX) {
        return Ok(None);
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.api_token WHERE token_hash = $1 \
         AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
    );
    let row: Option<TokenRow> = sqlx::query_as(&sql)
        .bind(hash(presented))
        .fetch_optional(pool)
        .await?;
    if let Some(t) = &row {
        if t.last_used_at
            .is_none_or(|at| Utc::now() - at > chrono::Duration::minutes(1))
        {
            sqlx::query("UPDATE herald.api_token SET last_used_at = now() WHERE id = $1")
                .bind(&t.id)
                .execute(pool)
                .await?;
        }
    }
    Ok(row)
}

/// The live token with this id (a session's token, checked on every page).
pub async fn live(pool: &PgPool, id: &str) -> Result<Option<TokenRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.api_token WHERE id = $1 \
         AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
    );
    sqlx::query_as(&sql).bind(id).fetch_optional(pool).await
}

/// Uses up a portal link's one-time code: the live token it signs in as, once.
pub async fn redeem_link(pool: &PgPool, code: &str) -> Result<Option<TokenRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE herald.api_token SET link_hash = NULL, last_used_at = now() \
         WHERE link_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) \
         RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(hash(code))
        .fetch_optional(pool)
        .await
}

/// Revokes a token; `None` if there is no such token. Revoking twice keeps the first time.
pub async fn revoke(pool: &PgPool, id: &str) -> Result<Option<TokenRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE herald.api_token SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 \
         RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql).bind(id).fetch_optional(pool).await
}

/// Revokes the token `presented` is (logout); whether it was one.
pub async fn revoke_presented(pool: &PgPool, presented: &str) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE herald.api_token SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash(presented))
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_dotless() {
        let a = random_secret();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_secret());
        assert!(!a.contains('.'));
        assert_eq!(hash(&a).len(), 32);
    }

    #[test]
    fn liveness_follows_revocation_and_expiry() {
        let now = Utc::now();
        let mut t = TokenRow {
            id: "tok_x".into(),
            name: "x".into(),
            kind: TokenKind::Portal,
            app_id: Some("app_x".into()),
            feature_flags: vec![],
            read_only: false,
            created_at: now,
            expires_at: Some(now + chrono::Duration::hours(1)),
            revoked_at: None,
            last_used_at: None,
        };
        assert!(t.is_live(now));
        assert!(!t.is_live(now + chrono::Duration::hours(2)));
        t.expires_at = None;
        assert!(t.is_live(now));
        t.revoked_at = Some(now);
        assert!(!t.is_live(now));
    }
}
