//! `/api/v1/app/{app_id}/endpoint`: where an application's webhooks go.

use std::collections::BTreeMap;

use actix_web::{delete, get, patch, post, put, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{types::Json as Db, PgPool};
use utoipa::{IntoParams, ToSchema};

use super::{
    application,
    error::{ApiError, ApiResult, HttpErrorOut},
    extract::Json,
    pagination::{ListResponse, Ordering, Page, PageQuery},
    paths::{AppPath, EndpointPath},
    validate,
};
use crate::{
    destination::Policy,
    keyring::{Keyring, Purpose},
    signing::Secret,
    store::string_map::StringMap,
};

mod input;
pub use input::{
    EndpointFields, EndpointIn, EndpointPatch, EndpointUpdate, EventTypeCatalogue, OrderedOnDead,
};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get)
        .service(update)
        .service(patch_endpoint)
        .service(delete_endpoint);
}

/// An endpoint.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOut {
    /// `ep_…`, time-ordered.
    pub id: String,
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    /// Messages per second at most (none: the service default).
    pub throttle_rate: Option<i32>,
    pub disabled: bool,
    /// The event types it receives (none: all).
    pub event_types: Option<Vec<String>>,
    /// It receives only messages with one of these channels (none: all).
    pub channels: Option<Vec<String>>,
    #[schema(value_type = BTreeMap<String, String>)]
    pub metadata: StringMap,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Herald: why the endpoint was disabled (410 Gone, failing too long, the API).
    pub disabled_reason: Option<String>,
    /// Herald: when it was disabled.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Herald: made for a URL that messages named (`callbackUrl`; in SQL `url =>`): it
    /// receives those messages only, signs with the application's secret, and is listed
    /// only with `callbacks=true`. It can be enabled, recovered or deleted, not edited.
    pub callback: bool,
    /// Herald: deliveries go one at a time, in the order messages were written.
    pub ordered: bool,
    /// Herald: with `ordered`, what a dead delivery at the head does.
    pub ordered_on_dead: OrderedOnDead,
}

pub const COLUMNS: &str =
    "id, uid, url, description, rate_limit AS throttle_rate, disabled, event_types, channels, \
     metadata, created_at, updated_at, disabled_reason, disabled_at, callback, ordered, \
     ordered_on_dead";
/// The same, of an endpoint aliased `e` in a join.
pub const COLUMNS_OF_E: &str =
    "e.id, e.uid, e.url, e.description, e.rate_limit AS throttle_rate, e.disabled, e.event_types, \
     e.channels, e.metadata, e.created_at, e.updated_at, e.disabled_reason, e.disabled_at, \
     e.callback, e.ordered, e.ordered_on_dead";

impl EndpointOut {
    /// A callback endpoint is Herald's, made for a URL that messages name: its settings
    /// follow from that, so it is not edited.
    pub fn editable(&self) -> ApiResult<()> {
        if self.callback {
            return Err(ApiError::Conflict(format!(
                "{} is a callback endpoint, made for the URL {} that messages named: it can \
                 be enabled, recovered or deleted, not edited",
                self.id, self.url
            )));
        }
        Ok(())
    }
}

/// The endpoint `key` (id or uid; the id wins) of application `app_id`, or 404.
pub async fn find(pool: &PgPool, app_id: &str, key: &str) -> ApiResult<EndpointOut> {
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.endpoint WHERE app_id = $1 AND (id = $2 OR uid = $2) \
         ORDER BY id = $2 DESC LIMIT 1"
    );
    sqlx::query_as(&sql)
        .bind(app_id)
        .bind(key)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("endpoint"))
}

/// Resolves `/app/{app_id}/endpoint/{endpoint_id}` to (application id, endpoint).
pub async fn resolve(pool: &PgPool, path: &EndpointPath) -> ApiResult<(String, EndpointOut)> {
    let app_id = application::resolve(pool, &path.app_id).await?;
    let endpoint = find(pool, &app_id, &path.endpoint_id).await?;
    Ok((app_id, endpoint))
}

fn disabled_reason(disabled: bool) -> Option<&'static str> {
    disabled.then_some("disabled through the API")
}

/// Creates an endpoint of `app_id` with its first secret, in one transaction.
pub async fn insert(
    pool: &PgPool,
    ring: &Keyring,
    app_id: &str,
    f: &EndpointFields,
    secret: &Secret,
    headers: &BTreeMap<String, String>,
) -> ApiResult<EndpointOut> {
    let mut tx = pool.begin().await?;
    let sql = format!(
        "INSERT INTO herald.endpoint (app_id, uid, url, description, rate_limit, disabled, disabled_reason, disabled_cause, \
         disabled_at, event_types, channels, metadata, headers, ordered, ordered_on_dead) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $6 THEN 'manual' END, CASE WHEN $6 THEN now() END, \
         $8, $9, $10, $11, $12, $13) RETURNING {COLUMNS}"
    );
    let endpoint: EndpointOut = sqlx::query_as(&sql)
        .bind(app_id)
        .bind(&f.uid)
        .bind(&f.url)
        .bind(&f.description)
        .bind(f.throttle_rate.map(|r| r as i32))
        .bind(f.disabled)
        .bind(disabled_reason(f.disabled))
        .bind(&f.event_types)
        .bind(&f.channels)
        .bind(Db(&f.metadata))
        .bind(Db(ring.seal_headers(headers)))
        .bind(f.ordered)
        .bind(f.ordered_on_dead)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO herald.endpoint_secret (endpoint_id, key) VALUES ($1, $2)")
        .bind(&endpoint.id)
        .bind(ring.seal(Purpose::EndpointSecret, secret.as_bytes()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(endpoint)
}

/// Create an endpoint.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.create", tag = "Endpoint",
    params(AppPath), request_body = EndpointIn,
    responses(
        (status = 201, description = "Created", body = EndpointOut),
        (status = 409, description = "The uid is taken in this application", body = HttpErrorOut),
    )
)]
#[post("/app/{app_id}/endpoint")]
async fn create(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    policy: web::Data<Policy>,
    path: web::Path<AppPath>,
    Json(input): Json<EndpointIn>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    let (fields, secret, headers) = input.split();
    let endpoint = create_checked(
        &pool,
        &ring,
        &policy,
        (&app_id, EventTypeCatalogue::Registered),
        &fields,
        secret.as_deref(),
        &headers,
    )
    .await?;
    Ok(HttpResponse::Created().json(endpoint))
}

/// Checks a new endpoint of an application (its fields against the application's event
/// type catalogue, its secret, its headers) and creates it; the secret is a new one unless
/// given (`whsec_…`).
pub async fn create_checked(
    pool: &PgPool,
    ring: &Keyring,
    policy: &Policy,
    (app_id, catalogue): (&str, EventTypeCatalogue),
    fields: &EndpointFields,
    secret: Option<&str>,
    headers: &BTreeMap<String, String>,
) -> ApiResult<EndpointOut> {
    fields.validate_in(pool, policy, catalogue).await?;
    let secret = match secret {
        Some(s) => validate::secret("secret", s).map_err(|e| ApiError::Validation(vec![e]))?,
        None => Secret::generate(),
    };
    validate::headers("headers", headers).map_err(|e| ApiError::Validation(vec![e]))?;
    insert(pool, ring, app_id, fields, &secret, headers).await
}

/// Which endpoints a list shows.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndpointListQuery {
    /// Herald: also list the callback endpoints (made for URLs that messages named).
    #[serde(default)]
    pub callbacks: bool,
}

/// An application's endpoints, oldest first by default; callback endpoints only when asked.
pub async fn list_page(
    pool: &PgPool,
    app_id: &str,
    q: &PageQuery,
    callbacks: bool,
) -> ApiResult<ListResponse<EndpointOut>> {
    let page = Page::new(q, Ordering::Ascending)?;
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM herald.endpoint WHERE app_id = "
    ));
    qb.push_bind(app_id.to_string());
    if !callbacks {
        qb.push(" AND NOT callback");
    }
    page.push_to(&mut qb, "id");
    let rows = qb.build_query_as().fetch_all(pool).await?;
    Ok(ListResponse::from_rows(rows, &page, |e: &EndpointOut| {
        e.id.clone()
    }))
}

/// List an application's endpoints.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.list", tag = "Endpoint", params(AppPath, PageQuery, EndpointListQuery),
    responses((status = 200, description = "A page of endpoints", body = ListResponse<EndpointOut>))
)]
#[get("/app/{app_id}/endpoint")]
async fn list(
    pool: web::Data<PgPool>,
    path: web::Path<AppPath>,
    q: web::Query<PageQuery>,
    which: web::Query<EndpointListQuery>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    Ok(HttpResponse::Ok().json(list_page(&pool, &app_id, &q, which.callbacks).await?))
}

/// Get an endpoint.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.get", tag = "Endpoint", params(EndpointPath),
    responses((status = 200, description = "The endpoint", body = EndpointOut))
)]
#[get("/app/{app_id}/endpoint/{endpoint_id}")]
async fn get(pool: web::Data<PgPool>, path: web::Path<EndpointPath>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(resolve(&pool, &path).await?.1))
}

/// Writes every field of `f` to the endpoint. Disabling records why; enabling clears it.
pub async fn save(pool: &PgPool, id: &str, f: &EndpointFields) -> ApiResult<EndpointOut> {
    let sql = format!(
        "UPDATE herald.endpoint SET uid = $2, url = $3, description = $4, rate_limit = $5, \
         disabled_reason = CASE WHEN NOT $6 THEN NULL WHEN disabled THEN disabled_reason ELSE $7 END, \
         disabled_cause = CASE WHEN NOT $6 THEN NULL WHEN disabled THEN disabled_cause ELSE 'manual' END, \
         disabled_at = CASE WHEN NOT $6 THEN NULL WHEN disabled THEN disabled_at ELSE now() END, \
         first_failure_at = CASE WHEN NOT $6 AND disabled THEN NULL ELSE first_failure_at END, \
         disabled = $6, event_types = $8, channels = $9, metadata = $10, ordered = $11, \
         ordered_on_dead = $12, version = version + 1, updated_at = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql)
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
        .bind(f.ordered)
        .bind(f.ordered_on_dead)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("endpoint"))
}

/// Replace an endpoint; like Svix, a uid that does not exist yet creates it (201).
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.update", tag = "Endpoint",
    params(EndpointPath), request_body = EndpointUpdate,
    responses(
        (status = 200, description = "Replaced", body = EndpointOut),
        (status = 201, description = "Created with this uid", body = EndpointOut),
        (status = 409, description = "The new uid is taken", body = HttpErrorOut),
    )
)]
#[put("/app/{app_id}/endpoint/{endpoint_id}")]
async fn update(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    policy: web::Data<Policy>,
    path: web::Path<EndpointPath>,
    Json(input): Json<EndpointUpdate>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    let app = (app_id.as_str(), EventTypeCatalogue::Registered);
    Ok(
        match upsert(&pool, &ring, &policy, app, &path.endpoint_id, input).await? {
            Upserted::Replaced(e) => HttpResponse::Ok().json(e),
            Upserted::Created(e) => HttpResponse::Created().json(e),
        },
    )
}

/// What a PUT did.
pub enum Upserted {
    Replaced(EndpointOut),
    Created(EndpointOut),
}

/// Replaces the endpoint `key` names, or creates it (with a new secret) when `key` is a uid
/// not used yet in the application (whose event type catalogue its fields are checked
/// against).
pub async fn upsert(
    pool: &PgPool,
    ring: &Keyring,
    policy: &Policy,
    (app_id, catalogue): (&str, EventTypeCatalogue),
    key: &str,
    mut fields: EndpointFields,
) -> ApiResult<Upserted> {
    match find(pool, app_id, key).await {
        Ok(existing) => {
            existing.editable()?;
            fields.validate_in(pool, policy, catalogue).await?;
            Ok(Upserted::Replaced(save(pool, &existing.id, &fields).await?))
        }
        Err(ApiError::NotFound(_)) if !validate::looks_like_id(key) => {
            validate::uid("uid", key).map_err(|e| ApiError::Validation(vec![e]))?;
            fields.uid.get_or_insert_with(|| key.to_string());
            fields.validate_in(pool, policy, catalogue).await?;
            let created = insert(
                pool,
                ring,
                app_id,
                &fields,
                &Secret::generate(),
                &BTreeMap::new(),
            )
            .await?;
            Ok(Upserted::Created(created))
        }
        Err(e) => Err(e),
    }
}

/// Change some of an endpoint's fields.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.patch", tag = "Endpoint",
    params(EndpointPath), request_body = EndpointPatch,
    responses(
        (status = 200, description = "Changed", body = EndpointOut),
        (status = 409, description = "The new uid is taken", body = HttpErrorOut),
    )
)]
#[patch("/app/{app_id}/endpoint/{endpoint_id}")]
async fn patch_endpoint(
    pool: web::Data<PgPool>,
    policy: web::Data<Policy>,
    path: web::Path<EndpointPath>,
    Json(p): Json<EndpointPatch>,
) -> ApiResult<HttpResponse> {
    let (_, e) = resolve(&pool, &path).await?;
    e.editable()?;
    let id = e.id.clone();
    let merged = p.apply(e);
    merged.validate(&pool, &policy).await?;
    Ok(HttpResponse::Ok().json(save(&pool, &id, &merged).await?))
}

/// Delete an endpoint with its deliveries and attempts.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.delete", tag = "Endpoint", params(EndpointPath),
    responses((status = 204, description = "Deleted"))
)]
#[delete("/app/{app_id}/endpoint/{endpoint_id}")]
async fn delete_endpoint(
    pool: web::Data<PgPool>,
    path: web::Path<EndpointPath>,
) -> ApiResult<HttpResponse> {
    let (_, e) = resolve(&pool, &path).await?;
    delete(&pool, &e.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes an endpoint with its deliveries and attempts.
pub async fn delete(pool: &PgPool, id: &str) -> ApiResult<()> {
    sqlx::query("DELETE FROM herald.endpoint WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
