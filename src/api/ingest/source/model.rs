//! Sources as stored and as the API shows them: the request and answer shapes, the row,
//! its checks and its queries (the handlers are in the parent module; the dashboard uses
//! these too).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{types::Json as Db, PgPool};
use utoipa::{IntoParams, ToSchema};

use crate::{
    access::token::random_secret,
    api::{
        error::{ApiError, ApiResult, ValidationErrorItem},
        pagination::{ListResponse, Ordering, Page, PageQuery},
    },
    ingest::source::{ConfigProblem, SourceKind, SourceType},
    keyring::{
        sweep::{open_source_config, seal_source_config},
        Keyring,
    },
    store::signing_secret::seal_application_secrets,
};

/// The source a path names.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SourcePath {
    /// The source's id (`src_…`) or uid.
    #[param(min_length = 1, max_length = 256)]
    pub source_id: String,
}

/// A new source, or all of a source's fields (PUT).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestSourceIn {
    #[schema(min_length = 2, max_length = 256)]
    pub name: String,
    /// Your identifier, usable wherever the id is.
    #[schema(min_length = 1, max_length = 60, pattern = r"^(?!src_)[a-zA-Z0-9_-]+$")]
    pub uid: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// How requests are verified.
    #[schema(value_type = SourceType)]
    pub r#type: String,
    /// The type's settings (its secret, ...): `stripe`, `shopify`, `slack`: `{"secret"}`;
    /// `svix`, `standard-webhooks`: `{"secret": "whsec_…"}`; `github`: `{"secret"}` (or
    /// none: unauthenticated); `circle`: `{"publicKeys": {keyId: base64 DER}, "publicKeyUrl",
    /// "apiKey"}`; `generic-hmac`: `{"secret", "header", "prefix", "algorithm", "encoding",
    /// "timestampHeader", "eventIdHeader"|"eventIdField", ...}`; `generic-webhook`: none, or
    /// where its event id and type are. Timestamped schemes take `toleranceSeconds`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: serde_json::Value,
}

/// Fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestSourcePatch {
    #[schema(min_length = 2, max_length = 256)]
    pub(super) name: Option<String>,
    #[serde(default, deserialize_with = "crate::api::nullable")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 60, pattern = r"^(?!src_)[a-zA-Z0-9_-]+$")]
    pub(super) uid: Option<Option<String>>,
    pub(super) metadata: Option<BTreeMap<String, String>>,
}

/// A source.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestSourceOut {
    /// `src_…`
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
    /// Where the provider sends its webhooks.
    #[schema(format = Uri)]
    pub ingest_url: String,
    pub r#type: SourceType,
    /// Its settings without their secrets.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub metadata: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Herald: when the source last accepted an event (within retention).
    pub last_event_at: Option<DateTime<Utc>>,
    /// Herald: the application its events are messages of (its endpoints' deliveries,
    /// attempts and dead letters are that application's).
    pub app_id: String,
}

/// A source as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SourceRow {
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
    pub r#type: String,
    pub config: Db<serde_json::Value>,
    pub token: String,
    pub app_id: String,
    pub metadata: Db<BTreeMap<String, String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_event_at: Option<DateTime<Utc>>,
}

impl SourceRow {
    /// Its config with its secrets opened (they are stored sealed).
    pub fn opened_config(&self, ring: &Keyring) -> ApiResult<serde_json::Value> {
        open_source_config(ring, self.config.0.clone())
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("source {}'s secret: {e}", self.id)))
    }

    /// Its type and settings; a row written by hand that does not read is an error of the
    /// server's (logged), not the caller's.
    pub fn kind(&self, ring: &Keyring) -> ApiResult<SourceKind> {
        let config = self.opened_config(ring)?;
        SourceKind::from_parts(&self.r#type, &config).map_err(|p| {
            ApiError::Internal(anyhow::anyhow!(
                "source {} has an unusable config: {}",
                self.id,
                p.msg
            ))
        })
    }

    pub fn out(self, ring: &Keyring, base: &str) -> ApiResult<IngestSourceOut> {
        let kind = self.kind(ring)?;
        Ok(IngestSourceOut {
            ingest_url: format!("{base}/ingest/{}", self.token),
            r#type: kind.source_type(),
            config: kind.shown_config(),
            id: self.id,
            uid: self.uid,
            name: self.name,
            metadata: self.metadata.0,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_event_at: self.last_event_at,
            app_id: self.app_id,
        })
    }
}

const COLUMNS: &str = "s.id, s.uid, s.name, s.type, s.config, s.token, s.app_id, s.metadata, \
     s.created_at, s.updated_at, (SELECT e.received_at FROM herald.ingest_event e \
     WHERE e.source_id = s.id AND e.outcome = 'accepted' ORDER BY e.id DESC LIMIT 1) AS last_event_at";

/// The source `key` names (id or uid; the id wins).
pub async fn find(pool: &PgPool, key: &str) -> ApiResult<SourceRow> {
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.ingest_source s WHERE s.id = $1 OR s.uid = $1 \
         ORDER BY s.id = $1 DESC LIMIT 1"
    );
    sqlx::query_as(&sql)
        .bind(key)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("source"))
}

pub(super) fn invalid(p: ConfigProblem) -> ApiError {
    ApiError::Validation(vec![ValidationErrorItem::field(&p.field, p.msg)])
}

impl IngestSourceIn {
    /// Its type and settings, checked (422 naming the field otherwise).
    pub(super) fn check(&self) -> ApiResult<SourceKind> {
        let mut problems = Vec::new();
        if !(2..=256).contains(&self.name.trim().chars().count()) {
            problems.push(ValidationErrorItem::field(
                "name",
                "must be 2 to 256 characters",
            ));
        }
        if let Some(uid) = &self.uid {
            problems.extend(check_uid(uid));
        }
        let kind = SourceKind::from_parts(&self.r#type, &self.config);
        if let Err(p) = &kind {
            problems.push(ValidationErrorItem::field(&p.field, p.msg.clone()));
        }
        if !problems.is_empty() {
            return Err(ApiError::Validation(problems));
        }
        kind.map_err(invalid)
    }
}

pub(super) fn check_uid(uid: &str) -> Option<ValidationErrorItem> {
    let shaped = !uid.is_empty()
        && uid.len() <= 60
        && !uid.starts_with("src_")
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (!shaped).then(|| {
        ValidationErrorItem::field(
            "uid",
            "must be 1 to 60 of a-z, A-Z, 0-9, '_' and '-', not starting with src_",
        )
    })
}

/// Makes a source and its application, in one statement.
pub(super) async fn insert(
    pool: &PgPool,
    ring: &Keyring,
    input: &IngestSourceIn,
    kind: &SourceKind,
) -> ApiResult<SourceRow> {
    let mut tx = pool.begin().await?;
    let row: SourceRow = sqlx::query_as(
        "WITH sid AS (SELECT herald.new_id('src') AS id), \
         app AS (INSERT INTO herald.application (name, metadata) \
                 SELECT $1, jsonb_build_object('ingestSource', sid.id) FROM sid RETURNING id), \
         s AS (INSERT INTO herald.ingest_source (id, uid, name, type, config, token, app_id, metadata) \
               SELECT sid.id, $2, $1, $3, $4, $5, app.id, $6 FROM sid, app RETURNING *) \
         SELECT s.id, s.uid, s.name, s.type, s.config, s.token, s.app_id, s.metadata, \
                s.created_at, s.updated_at, NULL::timestamptz AS last_event_at FROM s",
    )
    .bind(input.name.trim())
    .bind(&input.uid)
    .bind(kind.source_type().as_str())
    .bind(Db(seal_source_config(ring, kind.config())))
    .bind(random_secret())
    .bind(Db(&input.metadata))
    .fetch_one(&mut *tx)
    .await?;
    seal_application_secrets(&mut tx, ring, &row.app_id).await?;
    tx.commit().await?;
    Ok(row)
}

/// Rewrites a source's fields (and its application's name).
pub(super) async fn save(
    pool: &PgPool,
    ring: &Keyring,
    id: &str,
    input: &IngestSourceIn,
    kind: &SourceKind,
) -> ApiResult<()> {
    sqlx::query(
        "WITH s AS (UPDATE herald.ingest_source SET name = $2, uid = $3, type = $4, config = $5, \
                    metadata = $6, updated_at = now() WHERE id = $1 RETURNING app_id) \
         UPDATE herald.application a SET name = $2, updated_at = now() FROM s WHERE a.id = s.app_id",
    )
    .bind(id)
    .bind(input.name.trim())
    .bind(&input.uid)
    .bind(kind.source_type().as_str())
    .bind(Db(seal_source_config(ring, kind.config())))
    .bind(Db(&input.metadata))
    .execute(pool)
    .await?;
    Ok(())
}

/// Sources, oldest first by default.
pub async fn list_page(pool: &PgPool, q: &PageQuery) -> ApiResult<ListResponse<SourceRow>> {
    let page = Page::new(q, Ordering::Ascending)?;
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM herald.ingest_source s WHERE true"
    ));
    page.push_to(&mut qb, "s.id");
    let rows = qb.build_query_as().fetch_all(pool).await?;
    Ok(ListResponse::from_rows(rows, &page, |s: &SourceRow| {
        s.id.clone()
    }))
}

pub(super) fn outs(
    rows: ListResponse<SourceRow>,
    ring: &Keyring,
    base: &str,
) -> ApiResult<ListResponse<IngestSourceOut>> {
    rows.try_map(|r| r.out(ring, base))
}
