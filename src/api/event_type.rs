//! `/api/v1/event-type`: the catalogue of event types endpoints can subscribe to.

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
    cfg.route("/event-type", web::get().to(list))
        .route("/event-type", web::post().to(create))
        .route("/event-type/{name}", web::get().to(get))
        .route("/event-type/{name}", web::put().to(update))
        .route("/event-type/{name}", web::patch().to(patch))
        .route("/event-type/{name}", web::delete().to(delete));
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeOut {
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Db<serde_json::Value>>,
    pub feature_flag: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct EventTypeIn {
    name: String,
    #[serde(flatten)]
    rest: EventTypeUpdate,
}

/// PUT body: everything but the name, which is in the path.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTypeUpdate {
    description: String,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    deprecated: bool,
    schemas: Option<serde_json::Value>,
    feature_flag: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTypePatch {
    description: Option<String>,
    archived: Option<bool>,
    deprecated: Option<bool>,
    #[serde(default, deserialize_with = "super::nullable")]
    schemas: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "super::nullable")]
    feature_flag: Option<Option<String>>,
}

impl EventTypeUpdate {
    fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::default();
        if let Some(flag) = &self.feature_flag {
            p.check(validate::name("featureFlag", flag));
        }
        if let Some(s) = &self.schemas {
            if !s.is_object() {
                p.push("schemas", "must be an object");
            }
        }
        p.finish()
    }
}

const COLUMNS: &str =
    "name, description, archived, deprecated, schemas, feature_flag, created_at, updated_at";

async fn find(pool: &PgPool, name: &str) -> ApiResult<Option<EventTypeOut>> {
    let sql = format!("SELECT {COLUMNS} FROM herald.event_type WHERE name = $1");
    Ok(sqlx::query_as(&sql).bind(name).fetch_optional(pool).await?)
}

/// Inserts, or (`upsert`) replaces; returns the row and whether it was created.
async fn save(
    pool: &PgPool,
    name: &str,
    e: &EventTypeUpdate,
    upsert: bool,
) -> ApiResult<(EventTypeOut, bool)> {
    let conflict = if upsert {
        "ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, archived = EXCLUDED.archived, \
         deprecated = EXCLUDED.deprecated, schemas = EXCLUDED.schemas, feature_flag = EXCLUDED.feature_flag, \
         updated_at = now()"
    } else {
        ""
    };
    let sql = format!(
        "INSERT INTO herald.event_type (name, description, archived, deprecated, schemas, feature_flag) \
         VALUES ($1, $2, $3, $4, $5, $6) {conflict} RETURNING {COLUMNS}, (xmax = 0) AS created"
    );
    let row: EventTypeRow = sqlx::query_as(&sql)
        .bind(name)
        .bind(&e.description)
        .bind(e.archived)
        .bind(e.deprecated)
        .bind(e.schemas.as_ref().map(Db))
        .bind(&e.feature_flag)
        .fetch_one(pool)
        .await?;
    Ok((row.event_type, row.created))
}

#[derive(sqlx::FromRow)]
struct EventTypeRow {
    #[sqlx(flatten)]
    event_type: EventTypeOut,
    created: bool,
}

async fn create(
    pool: web::Data<PgPool>,
    Json(input): Json<EventTypeIn>,
) -> ApiResult<HttpResponse> {
    validate::name("name", &input.name).map_err(|e| ApiError::Validation(vec![e]))?;
    let EventTypeIn { name, rest: body } = input;
    body.validate()?;
    match save(&pool, &name, &body, false).await {
        Ok((e, _)) => Ok(HttpResponse::Created().json(e)),
        Err(ApiError::Conflict(_)) => Err(ApiError::Conflict(format!(
            "event type '{name}' already exists"
        ))),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    page: PageQuery,
    #[serde(default, deserialize_with = "super::query::parsed")]
    include_archived: Option<bool>,
    #[serde(default, deserialize_with = "super::query::parsed")]
    with_content: Option<bool>,
}

async fn list(pool: web::Data<PgPool>, q: web::Query<ListQuery>) -> ApiResult<HttpResponse> {
    let page = Page::new(&q.page, Ordering::Ascending)?;
    let archived = if q.include_archived.unwrap_or(false) {
        ""
    } else {
        " AND NOT archived"
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.event_type WHERE true{archived}{}{}",
        page.cursor_clause("name", 1),
        page.order_clause("name")
    );
    let mut query = sqlx::query_as::<_, EventTypeOut>(&sql);
    if let Some(after) = &page.after {
        query = query.bind(after);
    }
    let mut rows = query.fetch_all(pool.get_ref()).await?;
    if !q.with_content.unwrap_or(false) {
        rows.iter_mut().for_each(|r| r.schemas = None);
    }
    Ok(HttpResponse::Ok().json(ListResponse::from_rows(rows, &page, |e| e.name.clone())))
}

async fn get(pool: web::Data<PgPool>, name: web::Path<String>) -> ApiResult<HttpResponse> {
    let e = find(&pool, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("event type"))?;
    Ok(HttpResponse::Ok().json(e))
}

async fn update(
    pool: web::Data<PgPool>,
    name: web::Path<String>,
    Json(input): Json<EventTypeUpdate>,
) -> ApiResult<HttpResponse> {
    validate::name("name", &name).map_err(|e| ApiError::Validation(vec![e]))?;
    input.validate()?;
    let (e, created) = save(&pool, &name, &input, true).await?;
    Ok(if created {
        HttpResponse::Created().json(e)
    } else {
        HttpResponse::Ok().json(e)
    })
}

async fn patch(
    pool: web::Data<PgPool>,
    name: web::Path<String>,
    Json(input): Json<EventTypePatch>,
) -> ApiResult<HttpResponse> {
    let existing = find(&pool, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("event type"))?;
    let merged = EventTypeUpdate {
        description: input.description.unwrap_or(existing.description),
        archived: input.archived.unwrap_or(existing.archived),
        deprecated: input.deprecated.unwrap_or(existing.deprecated),
        schemas: input.schemas.unwrap_or(existing.schemas.map(|s| s.0)),
        feature_flag: input.feature_flag.unwrap_or(existing.feature_flag),
    };
    merged.validate()?;
    Ok(HttpResponse::Ok().json(save(&pool, &name, &merged, true).await?.0))
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    expunge: bool,
}

/// Archives by default (endpoints may still name it); `?expunge=true` deletes it.
async fn delete(
    pool: web::Data<PgPool>,
    name: web::Path<String>,
    q: web::Query<DeleteQuery>,
) -> ApiResult<HttpResponse> {
    let sql = if q.expunge {
        "DELETE FROM herald.event_type WHERE name = $1"
    } else {
        "UPDATE herald.event_type SET archived = true, updated_at = now() WHERE name = $1"
    };
    let done = sqlx::query(sql)
        .bind(name.as_str())
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
