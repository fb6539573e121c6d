//! `/api/v1/app`: applications (tenants: a merchant, an organization).

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{types::Json as Db, PgPool};

use super::{
    error::{ApiError, ApiResult},
    extract::Json,
    pagination::{ListResponse, Ordering, Page, PageQuery},
    validate::{self, Problems},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/app", web::get().to(list))
        .route("/app", web::post().to(create))
        .route("/app/{app_id}", web::get().to(get))
        .route("/app/{app_id}", web::put().to(update))
        .route("/app/{app_id}", web::patch().to(patch))
        .route("/app/{app_id}", web::delete().to(delete));
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationOut {
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
    pub throttle_rate: Option<i32>,
    pub metadata: Db<HashMap<String, String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationIn {
    pub name: String,
    pub uid: Option<String>,
    #[serde(alias = "rateLimit")]
    pub throttle_rate: Option<i64>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

impl ApplicationIn {
    pub fn validate(&self, prefix: &str) -> Result<(), ApiError> {
        let mut p = Problems::default();
        p.check(validate::non_empty(&format!("{prefix}name"), &self.name));
        if let Some(uid) = &self.uid {
            p.check(validate::uid(&format!("{prefix}uid"), uid));
        }
        if let Some(rate) = self.throttle_rate {
            p.check(validate::rate(&format!("{prefix}throttleRate"), rate));
        }
        p.finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationPatch {
    name: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    uid: Option<Option<String>>,
    #[serde(default, alias = "rateLimit", deserialize_with = "super::nullable")]
    throttle_rate: Option<Option<i64>>,
    metadata: Option<HashMap<String, String>>,
}

const COLUMNS: &str =
    "id, uid, name, rate_limit AS throttle_rate, metadata, created_at, updated_at";

/// The application an `{app_id}` path segment names: its id, or its uid.
pub async fn find(pool: &PgPool, key: &str) -> ApiResult<Option<ApplicationOut>> {
    let sql = format!("SELECT {COLUMNS} FROM herald.application WHERE id = $1 OR uid = $1 ORDER BY id = $1 DESC LIMIT 1");
    Ok(sqlx::query_as(&sql).bind(key).fetch_optional(pool).await?)
}

/// The id of the application named by `key`, or 404.
pub async fn resolve(pool: &PgPool, key: &str) -> ApiResult<String> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT id FROM herald.application WHERE id = $1 OR uid = $1 ORDER BY id = $1 DESC LIMIT 1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await?;
    id.ok_or_else(|| ApiError::not_found("application"))
}

pub async fn insert(pool: &PgPool, input: &ApplicationIn) -> ApiResult<ApplicationOut> {
    let sql = format!(
        "INSERT INTO herald.application (uid, name, rate_limit, metadata) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(&input.uid)
        .bind(&input.name)
        .bind(input.throttle_rate.map(|r| r as i32))
        .bind(Db(&input.metadata))
        .fetch_one(pool)
        .await?)
}

async fn save(pool: &PgPool, id: &str, input: &ApplicationIn) -> ApiResult<ApplicationOut> {
    let sql = format!(
        "UPDATE herald.application SET uid = $2, name = $3, rate_limit = $4, metadata = $5, updated_at = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(id)
        .bind(&input.uid)
        .bind(&input.name)
        .bind(input.throttle_rate.map(|r| r as i32))
        .bind(Db(&input.metadata))
        .fetch_one(pool)
        .await?)
}

#[derive(Deserialize)]
struct CreateQuery {
    #[serde(default)]
    get_if_exists: bool,
}

async fn create(
    pool: web::Data<PgPool>,
    q: web::Query<CreateQuery>,
    Json(input): Json<ApplicationIn>,
) -> ApiResult<HttpResponse> {
    input.validate("")?;
    if q.get_if_exists {
        if let Some(uid) = &input.uid {
            if let Some(existing) = find(&pool, uid).await? {
                return Ok(HttpResponse::Ok().json(existing));
            }
        }
    }
    match insert(&pool, &input).await {
        Ok(app) => Ok(HttpResponse::Created().json(app)),
        // Lost a race with a concurrent get-or-create of the same uid.
        Err(ApiError::Conflict(_)) if q.get_if_exists => {
            let uid = input.uid.as_deref().unwrap_or_default();
            let existing = find(&pool, uid)
                .await?
                .ok_or_else(|| ApiError::not_found("application"))?;
            Ok(HttpResponse::Ok().json(existing))
        }
        Err(e) => Err(e),
    }
}

async fn list(pool: web::Data<PgPool>, q: web::Query<PageQuery>) -> ApiResult<HttpResponse> {
    let page = Page::new(&q, Ordering::Ascending)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.application WHERE true{}{}",
        page.cursor_clause("id", 1),
        page.order_clause("id")
    );
    let mut query = sqlx::query_as::<_, ApplicationOut>(&sql);
    if let Some(after) = &page.after {
        query = query.bind(after);
    }
    let rows = query.fetch_all(pool.get_ref()).await?;
    Ok(HttpResponse::Ok().json(ListResponse::from_rows(rows, &page, |a| a.id.clone())))
}

async fn get(pool: web::Data<PgPool>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let app = find(&pool, &path)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    Ok(HttpResponse::Ok().json(app))
}

/// PUT: replaces the application, or creates it (201) when `{app_id}` is a uid not yet used.
async fn update(
    pool: web::Data<PgPool>,
    path: web::Path<String>,
    Json(mut input): Json<ApplicationIn>,
) -> ApiResult<HttpResponse> {
    input.validate("")?;
    match find(&pool, &path).await? {
        Some(existing) => Ok(HttpResponse::Ok().json(save(&pool, &existing.id, &input).await?)),
        None if path.starts_with("app_") => Err(ApiError::not_found("application")),
        None => {
            validate::uid("uid", &path).map_err(|e| ApiError::Validation(vec![e]))?;
            input.uid.get_or_insert_with(|| path.clone());
            Ok(HttpResponse::Created().json(insert(&pool, &input).await?))
        }
    }
}

async fn patch(
    pool: web::Data<PgPool>,
    path: web::Path<String>,
    Json(input): Json<ApplicationPatch>,
) -> ApiResult<HttpResponse> {
    let existing = find(&pool, &path)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    let merged = ApplicationIn {
        name: input.name.unwrap_or(existing.name),
        uid: input.uid.unwrap_or(existing.uid),
        throttle_rate: input
            .throttle_rate
            .unwrap_or(existing.throttle_rate.map(i64::from)),
        metadata: input.metadata.unwrap_or(existing.metadata.0),
    };
    merged.validate("")?;
    Ok(HttpResponse::Ok().json(save(&pool, &existing.id, &merged).await?))
}

async fn delete(pool: web::Data<PgPool>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = resolve(&pool, &path).await?;
    sqlx::query("DELETE FROM herald.application WHERE id = $1")
        .bind(id)
        .execute(pool.get_ref())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
