//! `/api/v1/app/{app_id}/endpoint`: where an application's webhooks go.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{types::Json as Db, PgPool};

use super::{
    application,
    error::{ApiError, ApiResult},
    event_type,
    extract::Json,
    pagination::{ListResponse, Ordering, Page, PageQuery},
    validate::{self, Problems},
};
use crate::{destination::Policy, signing::Secret};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/app/{app_id}/endpoint", web::get().to(list))
        .route("/app/{app_id}/endpoint", web::post().to(create))
        .route("/app/{app_id}/endpoint/{endpoint_id}", web::get().to(get))
        .route(
            "/app/{app_id}/endpoint/{endpoint_id}",
            web::put().to(update),
        )
        .route(
            "/app/{app_id}/endpoint/{endpoint_id}",
            web::patch().to(patch),
        )
        .route(
            "/app/{app_id}/endpoint/{endpoint_id}",
            web::delete().to(delete),
        );
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOut {
    pub id: String,
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub throttle_rate: Option<i32>,
    pub disabled: bool,
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub metadata: Db<HashMap<String, String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Herald: why the endpoint was disabled (410 Gone, failing too long, the API).
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
}

pub const COLUMNS: &str =
    "id, uid, url, description, rate_limit AS throttle_rate, disabled, event_types, channels, \
                           metadata, created_at, updated_at, disabled_reason, disabled_at";

/// The fields PUT replaces (and POST sets).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointFields {
    pub url: String,
    #[serde(default)]
    pub description: String,
    #[serde(alias = "rateLimit")]
    pub throttle_rate: Option<i64>,
    pub uid: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(alias = "filterTypes")]
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointIn {
    #[serde(flatten)]
    fields: EndpointFields,
    secret: Option<String>,
    headers: Option<HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointPatch {
    url: Option<String>,
    description: Option<String>,
    #[serde(default, alias = "rateLimit", deserialize_with = "super::nullable")]
    throttle_rate: Option<Option<i64>>,
    #[serde(default, deserialize_with = "super::nullable")]
    uid: Option<Option<String>>,
    disabled: Option<bool>,
    #[serde(default, alias = "filterTypes", deserialize_with = "super::nullable")]
    event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "super::nullable")]
    channels: Option<Option<Vec<String>>>,
    metadata: Option<HashMap<String, String>>,
}

impl EndpointFields {
    /// Shape checks, the destination policy, then the checks that need the database (event
    /// types must exist).
    async fn validate(&self, pool: &PgPool, policy: &Policy) -> ApiResult<()> {
        let mut p = Problems::default();
        match validate::url("url", &self.url) {
            Ok(_) => {
                if let Err(refusal) = policy.check_url(&self.url) {
                    p.push("url", refusal.to_string());
                }
            }
            Err(e) => p.check(Err(e)),
        }
        if let Some(uid) = &self.uid {
            p.check(validate::uid("uid", uid));
        }
        if let Some(rate) = self.throttle_rate {
            p.check(validate::rate("throttleRate", rate));
        }
        if let Some(types) = &self.event_types {
            p.check(validate::names("eventTypes", types, 1000));
        }
        if let Some(channels) = &self.channels {
            p.check(validate::names("channels", channels, 10));
        }
        p.finish()?;
        if let Some(types) = &self.event_types {
            let unknown = event_type::unknown(pool, types).await?;
            if !unknown.is_empty() {
                return Err(ApiError::invalid(
                    "eventTypes",
                    format!(
                        "unknown event type(s): {}; create them first (POST /api/v1/event-type)",
                        unknown.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The endpoint `{endpoint_id}` (id or uid) of application `app_id`, or 404.
pub async fn find(pool: &PgPool, app_id: &str, key: &str) -> ApiResult<EndpointOut> {
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.endpoint WHERE app_id = $1 AND (id = $2 OR uid = $2) ORDER BY id = $2 DESC LIMIT 1"
    );
    sqlx::query_as(&sql)
        .bind(app_id)
        .bind(key)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("endpoint"))
}

/// Resolves `/app/{app_id}/endpoint/{endpoint_id}` to (application id, endpoint).
pub async fn resolve(pool: &PgPool, path: &(String, String)) -> ApiResult<(String, EndpointOut)> {
    let app_id = application::resolve(pool, &path.0).await?;
    let endpoint = find(pool, &app_id, &path.1).await?;
    Ok((app_id, endpoint))
}

fn disabled_reason(disabled: bool) -> Option<&'static str> {
    disabled.then_some("disabled through the API")
}

async fn create(
    pool: web::Data<PgPool>,
    policy: web::Data<Policy>,
    app: web::Path<String>,
    Json(input): Json<EndpointIn>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &app).await?;
    let f = &input.fields;
    f.validate(&pool, &policy).await?;
    let secret = match &input.secret {
        Some(s) => validate::secret("secret", s).map_err(|e| ApiError::Validation(vec![e]))?,
        None => Secret::generate(),
    };
    let headers = input.headers.unwrap_or_default();
    validate::headers("headers", &headers).map_err(|e| ApiError::Validation(vec![e]))?;

    let mut tx = pool.begin().await?;
    let sql = format!(
        "INSERT INTO herald.endpoint (app_id, uid, url, description, rate_limit, disabled, disabled_reason, disabled_at, \
         event_types, channels, metadata, headers) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $6 THEN now() END, $8, $9, $10, $11) RETURNING {COLUMNS}"
    );
    let endpoint: EndpointOut = sqlx::query_as(&sql)
        .bind(&app_id)
        .bind(&f.uid)
        .bind(&f.url)
        .bind(&f.description)
        .bind(f.throttle_rate.map(|r| r as i32))
        .bind(f.disabled)
        .bind(disabled_reason(f.disabled))
        .bind(&f.event_types)
        .bind(&f.channels)
        .bind(Db(&f.metadata))
        .bind(Db(&headers))
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO herald.endpoint_secret (endpoint_id, key) VALUES ($1, $2)")
        .bind(&endpoint.id)
        .bind(secret.as_bytes())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(endpoint))
}

async fn list(
    pool: web::Data<PgPool>,
    app: web::Path<String>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &app).await?;
    let page = Page::new(&q, Ordering::Ascending)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.endpoint WHERE app_id = $1{}{}",
        page.cursor_clause("id", 2),
        page.order_clause("id")
    );
    let mut query = sqlx::query_as::<_, EndpointOut>(&sql).bind(&app_id);
    if let Some(after) = &page.after {
        query = query.bind(after);
    }
    let rows = query.fetch_all(pool.get_ref()).await?;
    Ok(HttpResponse::Ok().json(ListResponse::from_rows(rows, &page, |e| e.id.clone())))
}

async fn get(
    pool: web::Data<PgPool>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(resolve(&pool, &path).await?.1))
}

/// Writes every field of `f` to the endpoint. Disabling records why; enabling clears it.
pub async fn save(pool: &PgPool, id: &str, f: &EndpointFields) -> ApiResult<EndpointOut> {
    let sql = format!(
        "UPDATE herald.endpoint SET uid = $2, url = $3, description = $4, rate_limit = $5, \
         disabled_reason = CASE WHEN NOT $6 THEN NULL WHEN disabled THEN disabled_reason ELSE $7 END, \
         disabled_at = CASE WHEN NOT $6 THEN NULL WHEN disabled THEN disabled_at ELSE now() END, \
         first_failure_at = CASE WHEN NOT $6 AND disabled THEN NULL ELSE first_failure_at END, \
         disabled = $6, event_types = $8, channels = $9, metadata = $10, version = version + 1, updated_at = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(id)
        .bind(&f.uid)
        .bind(&f.url)
        .bind(&f.description)
        .bind(f.throttle_rate.map(|r| r as i32))
        .bind(f.disabled)
        .bind(disabled_reason(true))
        .bind(&f.event_types)
        .bind(&f.channels)
        .bind(Db(&f.metadata))
        .fetch_one(pool)
        .await?)
}

/// PUT replaces the endpoint; like Svix, a uid that does not exist yet creates it (201).
async fn update(
    pool: web::Data<PgPool>,
    policy: web::Data<Policy>,
    path: web::Path<(String, String)>,
    Json(input): Json<EndpointIn>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.0).await?;
    match find(&pool, &app_id, &path.1).await {
        Ok(existing) => {
            input.fields.validate(&pool, &policy).await?;
            Ok(HttpResponse::Ok().json(save(&pool, &existing.id, &input.fields).await?))
        }
        Err(ApiError::NotFound(_)) if !path.1.starts_with("ep_") => {
            validate::uid("uid", &path.1).map_err(|e| ApiError::Validation(vec![e]))?;
            let mut input = input;
            input.fields.uid.get_or_insert_with(|| path.1.clone());
            create(pool, policy, web::Path::from(path.0.clone()), Json(input)).await
        }
        Err(e) => Err(e),
    }
}

async fn patch(
    pool: web::Data<PgPool>,
    policy: web::Data<Policy>,
    path: web::Path<(String, String)>,
    Json(p): Json<EndpointPatch>,
) -> ApiResult<HttpResponse> {
    let (_, e) = resolve(&pool, &path).await?;
    let merged = EndpointFields {
        url: p.url.unwrap_or(e.url),
        description: p.description.unwrap_or(e.description),
        throttle_rate: p.throttle_rate.unwrap_or(e.throttle_rate.map(i64::from)),
        uid: p.uid.unwrap_or(e.uid),
        disabled: p.disabled.unwrap_or(e.disabled),
        event_types: p.event_types.unwrap_or(e.event_types),
        channels: p.channels.unwrap_or(e.channels),
        metadata: p.metadata.unwrap_or(e.metadata.0),
    };
    merged.validate(&pool, &policy).await?;
    Ok(HttpResponse::Ok().json(save(&pool, &e.id, &merged).await?))
}

async fn delete(
    pool: web::Data<PgPool>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (_, e) = resolve(&pool, &path).await?;
    sqlx::query("DELETE FROM herald.endpoint WHERE id = $1")
        .bind(&e.id)
        .execute(pool.get_ref())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
