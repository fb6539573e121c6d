//! `/api/v1/event-type`: the catalogue of event types endpoints can subscribe to.
//!
//! `schemas` are kept as the exact JSON text given (stored as `json`, not `jsonb`), so every
//! number comes back as it was sent, however large or precise.

use actix_web::{delete, get, patch, post, put, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::{
    error::{ApiError, ApiResult, HttpErrorOut},
    extract::Json,
    pagination::{ListResponse, Ordering, Page, PageQuery},
    paths::EventTypePath,
    validate,
};

mod input;
use input::EventTypeFields;

use crate::access::principal::Reach;
pub use input::{EventTypeIn, EventTypePatch, EventTypeUpdate};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get)
        .service(update)
        .service(patch_event_type)
        .service(delete_event_type);
}

/// An event type.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeOut {
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    /// JSON schemas by version (`{"1": {...}}`), exactly as given; only with
    /// `with_content=true` in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub schemas: Option<Box<RawValue>>,
    pub group_name: Option<String>,
    pub feature_flags: Option<Vec<String>>,
    /// Deprecated: the first of `featureFlags`.
    pub feature_flag: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct EventTypeRow {
    name: String,
    description: String,
    archived: bool,
    deprecated: bool,
    schemas: Option<String>,
    group_name: Option<String>,
    feature_flags: Option<Vec<String>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl EventTypeRow {
    fn fields(self) -> EventTypeFields {
        EventTypeFields {
            description: self.description,
            archived: self.archived,
            deprecated: self.deprecated,
            schemas: self.schemas,
            group_name: self.group_name,
            feature_flags: self.feature_flags,
        }
    }

    fn into_out(self, with_schemas: bool) -> EventTypeOut {
        EventTypeOut {
            // Stored from a RawValue: valid JSON; a row written by hand is shown as absent.
            schemas: self
                .schemas
                .filter(|_| with_schemas)
                .and_then(|s| RawValue::from_string(s).ok()),
            feature_flag: self.feature_flags.as_ref().and_then(|f| f.first().cloned()),
            name: self.name,
            description: self.description,
            archived: self.archived,
            deprecated: self.deprecated,
            group_name: self.group_name,
            feature_flags: self.feature_flags,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

const COLUMNS: &str = "name, description, archived, deprecated, schemas::text AS schemas, \
                       group_name, feature_flags, created_at, updated_at";

async fn find(pool: &PgPool, name: &str) -> ApiResult<Option<EventTypeRow>> {
    let sql = format!("SELECT {COLUMNS} FROM herald.event_type WHERE name = $1");
    Ok(sqlx::query_as(&sql).bind(name).fetch_optional(pool).await?)
}

/// Inserts, or (`upsert`) replaces; returns the row and whether it was created.
async fn save(
    pool: &PgPool,
    name: &str,
    e: &EventTypeFields,
    upsert: bool,
) -> ApiResult<(EventTypeOut, bool)> {
    let conflict = if upsert {
        "ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, \
         archived = EXCLUDED.archived, deprecated = EXCLUDED.deprecated, \
         schemas = EXCLUDED.schemas, group_name = EXCLUDED.group_name, \
         feature_flags = EXCLUDED.feature_flags, updated_at = now()"
    } else {
        ""
    };
    let sql = format!(
        "INSERT INTO herald.event_type (name, description, archived, deprecated, schemas, group_name, feature_flags) \
         VALUES ($1, $2, $3, $4, $5::json, $6, $7) {conflict} RETURNING {COLUMNS}, (xmax = 0) AS created"
    );
    let row: SavedRow = sqlx::query_as(&sql)
        .bind(name)
        .bind(&e.description)
        .bind(e.archived)
        .bind(e.deprecated)
        .bind(&e.schemas)
        .bind(&e.group_name)
        .bind(&e.feature_flags)
        .fetch_one(pool)
        .await?;
    Ok((row.event_type.into_out(true), row.created))
}

#[derive(sqlx::FromRow)]
struct SavedRow {
    #[sqlx(flatten)]
    event_type: EventTypeRow,
    created: bool,
}

/// Create an event type.
#[utoipa::path(
    operation_id = "v1.event-type.create", tag = "Event Type", request_body = EventTypeIn,
    responses(
        (status = 201, description = "Created", body = EventTypeOut),
        (status = 409, description = "An event type with this name exists", body = HttpErrorOut),
    )
)]
#[post("/event-type")]
async fn create(
    pool: web::Data<PgPool>,
    Json(input): Json<EventTypeIn>,
) -> ApiResult<HttpResponse> {
    let (name, fields) = input.into_parts()?;
    match save(&pool, &name, &fields, false).await {
        Ok((e, _)) => Ok(HttpResponse::Created().json(e)),
        Err(ApiError::Conflict(_)) => Err(ApiError::Conflict(format!(
            "event type '{name}' already exists"
        ))),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Include archived event types.
    #[serde(default)]
    include_archived: bool,
    /// Include each event type's `schemas`.
    #[serde(default)]
    with_content: bool,
}

/// SQL: the event type is visible to a caller with feature flags `$flags` (it has no flag,
/// or one of them).
const VISIBLE: &str = "(coalesce(cardinality(feature_flags), 0) = 0 OR feature_flags && ";

/// Event types in name order: those `reach` sees (an application-scoped token sees those
/// without a feature flag, or with one of its flags).
pub async fn list_page(
    pool: &PgPool,
    reach: &Reach,
    page: &PageQuery,
    include_archived: bool,
    with_schemas: bool,
) -> ApiResult<ListResponse<EventTypeOut>> {
    let page = Page::new(page, Ordering::Ascending)?;
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM herald.event_type WHERE true"
    ));
    if !include_archived {
        qb.push(" AND NOT archived");
    }
    if let Some(flags) = reach.feature_flags() {
        qb.push(" AND ")
            .push(VISIBLE)
            .push_bind(flags.to_vec())
            .push(")");
    }
    page.push_to(&mut qb, "name");
    let rows: Vec<EventTypeRow> = qb.build_query_as().fetch_all(pool).await?;
    let rows = rows.into_iter().map(|r| r.into_out(with_schemas)).collect();
    Ok(ListResponse::from_rows(rows, &page, |e: &EventTypeOut| {
        e.name.clone()
    }))
}

/// List event types.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.event-type.list", tag = "Event Type", params(PageQuery, ListQuery),
    responses((status = 200, description = "A page of event types", body = ListResponse<EventTypeOut>))
)]
#[get("/event-type")]
async fn list(
    pool: web::Data<PgPool>,
    reach: Reach,
    page: web::Query<PageQuery>,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let page = list_page(&pool, &reach, &page, q.include_archived, q.with_content).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Get an event type (archived ones too).
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.event-type.get", tag = "Event Type", params(EventTypePath),
    responses((status = 200, description = "The event type", body = EventTypeOut))
)]
#[get("/event-type/{event_type_name}")]
async fn get(
    pool: web::Data<PgPool>,
    reach: Reach,
    path: web::Path<EventTypePath>,
) -> ApiResult<HttpResponse> {
    let e = find(&pool, &path.event_type_name)
        .await?
        .filter(|e| visible(e, &reach))
        .ok_or_else(|| ApiError::not_found("event type"))?;
    Ok(HttpResponse::Ok().json(e.into_out(true)))
}

/// Whether event type `name` exists and `reach` may see it (its feature flags).
pub async fn visible_to(pool: &PgPool, name: &str, reach: &Reach) -> ApiResult<bool> {
    Ok(find(pool, name).await?.is_some_and(|e| visible(&e, reach)))
}

/// What [`VISIBLE`] says, for one row.
fn visible(e: &EventTypeRow, reach: &Reach) -> bool {
    let own = e.feature_flags.as_deref().unwrap_or_default();
    match reach.feature_flags() {
        None => true,
        Some(flags) => own.is_empty() || own.iter().any(|f| flags.contains(f)),
    }
}

/// Replace an event type, or create it (201).
#[utoipa::path(
    operation_id = "v1.event-type.update", tag = "Event Type",
    params(EventTypePath), request_body = EventTypeUpdate,
    responses(
        (status = 200, description = "Replaced", body = EventTypeOut),
        (status = 201, description = "Created", body = EventTypeOut),
    )
)]
#[put("/event-type/{event_type_name}")]
async fn update(
    pool: web::Data<PgPool>,
    path: web::Path<EventTypePath>,
    Json(input): Json<EventTypeUpdate>,
) -> ApiResult<HttpResponse> {
    let name = &path.event_type_name;
    validate::name("name", name).map_err(|e| ApiError::Validation(vec![e]))?;
    let (e, created) = save(&pool, name, &input.into_fields()?, true).await?;
    Ok(if created {
        HttpResponse::Created().json(e)
    } else {
        HttpResponse::Ok().json(e)
    })
}

/// Change some of an event type's fields.
#[utoipa::path(
    operation_id = "v1.event-type.patch", tag = "Event Type",
    params(EventTypePath), request_body = EventTypePatch,
    responses((status = 200, description = "Changed", body = EventTypeOut))
)]
#[patch("/event-type/{event_type_name}")]
async fn patch_event_type(
    pool: web::Data<PgPool>,
    path: web::Path<EventTypePath>,
    Json(input): Json<EventTypePatch>,
) -> ApiResult<HttpResponse> {
    let existing = find(&pool, &path.event_type_name)
        .await?
        .ok_or_else(|| ApiError::not_found("event type"))?;
    let merged = input.apply(existing.fields())?;
    Ok(HttpResponse::Ok().json(save(&pool, &path.event_type_name, &merged, true).await?.0))
}

/// Archives (or restores) an event type.
pub async fn set_archived(pool: &PgPool, name: &str, archived: bool) -> ApiResult<()> {
    let existing = find(pool, name)
        .await?
        .ok_or_else(|| ApiError::not_found("event type"))?;
    let mut fields = existing.fields();
    fields.archived = archived;
    save(pool, name, &fields, true).await?;
    Ok(())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete it for good instead of archiving it.
    #[serde(default)]
    expunge: bool,
}

/// Archive an event type (endpoints may still name it), or delete it (`expunge=true`).
#[utoipa::path(
    operation_id = "v1.event-type.delete", tag = "Event Type", params(EventTypePath, DeleteQuery),
    responses((status = 204, description = "Archived or deleted"))
)]
#[delete("/event-type/{event_type_name}")]
async fn delete_event_type(
    pool: web::Data<PgPool>,
    path: web::Path<EventTypePath>,
    q: web::Query<DeleteQuery>,
) -> ApiResult<HttpResponse> {
    let sql = if q.expunge {
        "DELETE FROM herald.event_type WHERE name = $1"
    } else {
        "UPDATE herald.event_type SET archived = true, updated_at = now() WHERE name = $1"
    };
    let done = sqlx::query(sql)
        .bind(&path.event_type_name)
        .execute(pool.get_ref())
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("event type"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Which of `names` are not known event types (archived ones count as known).
pub async fn unknown(pool: &PgPool, names: &[String]) -> ApiResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT n FROM unnest($1::text[]) AS n WHERE NOT EXISTS (SELECT 1 FROM herald.event_type e WHERE e.name = n)",
    )
    .bind(names)
    .fetch_all(pool)
    .await?)
}

/// The stored schemas of an event type: `None` when there is no such event type, `Some(None)`
/// when it has none.
pub async fn schemas(pool: &PgPool, name: &str) -> ApiResult<Option<Option<serde_json::Value>>> {
    let row: Option<Option<String>> =
        sqlx::query_scalar("SELECT schemas::text FROM herald.event_type WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|s| s.and_then(|s| serde_json::from_str(&s).ok())))
}
