//! `/api/v1/app`: applications (tenants: a merchant, an organization).
//!
//! An application's `throttleRate` (Svix: a rate over all of its endpoints) is not offered:
//! Herald limits each endpoint (`throttleRate` on the endpoint), and a field it would not
//! honour is refused rather than ignored.

use actix_web::{delete, get, patch, post, put, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{types::Json as Db, PgPool};
use utoipa::{IntoParams, ToSchema};

use super::{
    error::{ApiError, ApiResult},
    extract::Json,
    pagination::{ListResponse, Ordering, Page, PageQuery},
    paths::AppPath,
    validate::{self, Problems},
};
use crate::{
    keyring::Keyring,
    store::{signing_secret::seal_application_secrets, string_map::StringMap},
};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get)
        .service(update)
        .service(patch_app)
        .service(delete_app);
}

/// An application.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationOut {
    /// `app_…`, time-ordered.
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub metadata: StringMap,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new application, or all of an application's fields (PUT).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationIn {
    /// For humans.
    #[schema(min_length = 1)]
    pub name: String,
    /// Your own identifier: usable wherever the id is. It may not look like a Herald id
    /// (`app_…`, `ep_…`, `msg_…`).
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    pub uid: Option<String>,
    /// Free-form strings.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl ApplicationIn {
    pub fn validate(&self, prefix: &str) -> Result<(), ApiError> {
        let mut p = Problems::default();
        p.check(validate::non_empty(&format!("{prefix}name"), &self.name));
        if let Some(uid) = &self.uid {
            p.check(validate::uid(&format!("{prefix}uid"), uid));
        }
        p.finish()
    }
}

/// Fields to change; `uid: null` removes the uid.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationPatch {
    #[schema(min_length = 1)]
    name: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    uid: Option<Option<String>>,
    metadata: Option<std::collections::BTreeMap<String, String>>,
}

const COLUMNS: &str = "id, uid, name, metadata, created_at, updated_at";

/// The application an `{app_id}` path segment names: its id, or its uid (the id wins).
/// Herald's own application of operational events is none of these (it is reached through
/// `/api/v1/operational-webhook` only), nor in the lists below.
pub async fn find(pool: &PgPool, key: &str) -> ApiResult<Option<ApplicationOut>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.application WHERE (id = $1 OR uid = $1) AND NOT operational \
         ORDER BY id = $1 DESC LIMIT 1"
    );
    Ok(sqlx::query_as(&sql).bind(key).fetch_optional(pool).await?)
}

/// The id of the application named by `key`, or 404.
pub async fn resolve(pool: &PgPool, key: &str) -> ApiResult<String> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT id FROM herald.application WHERE (id = $1 OR uid = $1) AND NOT operational \
         ORDER BY id = $1 DESC LIMIT 1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await?;
    id.ok_or_else(|| ApiError::not_found("application"))
}

/// Makes an application (with its signing secret, sealed).
pub async fn insert(
    pool: &PgPool,
    ring: &Keyring,
    input: &ApplicationIn,
) -> ApiResult<ApplicationOut> {
    let sql = format!(
        "INSERT INTO herald.application (uid, name, metadata) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    );
    let mut tx = pool.begin().await?;
    let app: ApplicationOut = sqlx::query_as(&sql)
        .bind(&input.uid)
        .bind(&input.name)
        .bind(Db(&input.metadata))
        .fetch_one(&mut *tx)
        .await?;
    seal_application_secrets(&mut tx, ring, &app.id).await?;
    tx.commit().await?;
    Ok(app)
}

async fn save(pool: &PgPool, id: &str, input: &ApplicationIn) -> ApiResult<ApplicationOut> {
    let sql = format!(
        "UPDATE herald.application SET uid = $2, name = $3, metadata = $4, updated_at = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(id)
        .bind(&input.uid)
        .bind(&input.name)
        .bind(Db(&input.metadata))
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))
}

/// The application a path names (a uid), created from `new_app` (a message's or a portal
/// access's `application`); the one a concurrent request created meanwhile if it won the
/// race.
pub async fn get_or_create(
    pool: &PgPool,
    ring: &Keyring,
    key: &str,
    new_app: &ApplicationIn,
) -> ApiResult<String> {
    // An id names an application that exists or not; a uid can be given to a new one.
    if validate::looks_like_id(key) {
        return Err(ApiError::not_found("application"));
    }
    new_app.validate("application.")?;
    let mut new_app = new_app.clone();
    let uid = new_app.uid.get_or_insert_with(|| key.to_string()).clone();
    match insert(pool, ring, &new_app).await {
        Ok(app) => Ok(app.id),
        Err(ApiError::Conflict(_)) => resolve(pool, &uid).await,
        Err(e) => Err(e),
    }
}

/// Applications, oldest first by default.
pub async fn list_page(pool: &PgPool, q: &PageQuery) -> ApiResult<ListResponse<ApplicationOut>> {
    let page = Page::new(q, Ordering::Ascending)?;
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM herald.application WHERE NOT operational"
    ));
    page.push_to(&mut qb, "id");
    let rows = qb.build_query_as().fetch_all(pool).await?;
    Ok(ListResponse::from_rows(
        rows,
        &page,
        |a: &ApplicationOut| a.id.clone(),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CreateQuery {
    /// With a `uid` that is taken: answer that application (200) instead of 409.
    #[serde(default)]
    get_if_exists: bool,
}

/// Create an application.
#[utoipa::path(
    operation_id = "v1.application.create", tag = "Application",
    params(CreateQuery), request_body = ApplicationIn,
    responses(
        (status = 201, description = "Created", body = ApplicationOut),
        (status = 200, description = "It existed (`get_if_exists=true`)", body = ApplicationOut),
        (status = 404, description = "`get_if_exists=true` lost a race with a delete", body = super::error::HttpErrorOut),
    )
)]
#[post("/app")]
async fn create(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
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
    match insert(&pool, &ring, &input).await {
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

/// List applications.
#[utoipa::path(
    operation_id = "v1.application.list", tag = "Application", params(PageQuery),
    responses((status = 200, description = "A page of applications", body = ListResponse<ApplicationOut>))
)]
#[get("/app")]
async fn list(pool: web::Data<PgPool>, q: web::Query<PageQuery>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(list_page(&pool, &q).await?))
}

/// Get an application.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.application.get", tag = "Application", params(AppPath),
    responses((status = 200, description = "The application", body = ApplicationOut))
)]
#[get("/app/{app_id}")]
async fn get(pool: web::Data<PgPool>, path: web::Path<AppPath>) -> ApiResult<HttpResponse> {
    let app = find(&pool, &path.app_id)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    Ok(HttpResponse::Ok().json(app))
}

/// Replace an application, or create it (201) when `{app_id}` is a uid not used yet.
#[utoipa::path(
    operation_id = "v1.application.update", tag = "Application",
    params(AppPath), request_body = ApplicationIn,
    responses(
        (status = 200, description = "Replaced", body = ApplicationOut),
        (status = 201, description = "Created with this uid", body = ApplicationOut),
        (status = 409, description = "The new uid is taken", body = super::error::HttpErrorOut),
    )
)]
#[put("/app/{app_id}")]
async fn update(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<AppPath>,
    Json(mut input): Json<ApplicationIn>,
) -> ApiResult<HttpResponse> {
    input.validate("")?;
    let key = &path.app_id;
    match find(&pool, key).await? {
        Some(existing) => Ok(HttpResponse::Ok().json(save(&pool, &existing.id, &input).await?)),
        // An id names an application that exists; it is no uid to create one with.
        None if validate::looks_like_id(key) => Err(ApiError::not_found("application")),
        None => {
            validate::uid("uid", key).map_err(|e| ApiError::Validation(vec![e]))?;
            input.uid.get_or_insert_with(|| key.clone());
            Ok(HttpResponse::Created().json(insert(&pool, &ring, &input).await?))
        }
    }
}

/// Change some of an application's fields.
#[utoipa::path(
    operation_id = "v1.application.patch", tag = "Application",
    params(AppPath), request_body = ApplicationPatch,
    responses(
        (status = 200, description = "Changed", body = ApplicationOut),
        (status = 409, description = "The new uid is taken", body = super::error::HttpErrorOut),
    )
)]
#[patch("/app/{app_id}")]
async fn patch_app(
    pool: web::Data<PgPool>,
    path: web::Path<AppPath>,
    Json(input): Json<ApplicationPatch>,
) -> ApiResult<HttpResponse> {
    let existing = find(&pool, &path.app_id)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    let merged = ApplicationIn {
        name: input.name.unwrap_or(existing.name),
        uid: input.uid.unwrap_or(existing.uid),
        metadata: input.metadata.unwrap_or(existing.metadata.0),
    };
    merged.validate("")?;
    Ok(HttpResponse::Ok().json(save(&pool, &existing.id, &merged).await?))
}

/// Delete an application with its endpoints, messages and attempts.
#[utoipa::path(
    operation_id = "v1.application.delete", tag = "Application", params(AppPath),
    responses((status = 204, description = "Deleted"))
)]
#[delete("/app/{app_id}")]
async fn delete_app(pool: web::Data<PgPool>, path: web::Path<AppPath>) -> ApiResult<HttpResponse> {
    let id = resolve(&pool, &path.app_id).await?;
    sqlx::query("DELETE FROM herald.application WHERE id = $1")
        .bind(id)
        .execute(pool.get_ref())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
