//! `/api/v1/app/{app_id}/msg`: reading messages (creating one is [`super::message_create`]).

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::{
    application,
    error::{ApiError, ApiResult},
    extract::Json,
    pagination::{ListResponse, Ordering, Page, PageQuery},
    paths::{AppPath, MsgPath},
    query::{ContentQuery, MessageFilter},
    validate::{self, Problems},
};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list)
        .service(precheck)
        .service(get)
        .service(expunge);
}

/// A message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    /// `msg_…`, time-ordered: the `webhook-id` receivers see.
    pub id: String,
    pub event_type: String,
    /// The stored bytes, verbatim (an object, or any JSON a producer gave in SQL); `{}`
    /// when not asked for or expunged.
    #[schema(value_type = serde_json::Value)]
    pub payload: Box<RawValue>,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub timestamp: DateTime<Utc>,
    /// When it is (or was) to be delivered, if it was scheduled.
    pub deliver_at: Option<DateTime<Utc>>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub event_type: String,
    pub payload: Option<String>,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub deliver_at: Option<DateTime<Utc>>,
}

pub const COLUMNS: &str =
    "m.id, m.event_type, m.payload, m.event_id, m.channels, m.tags, m.created_at, m.deliver_at";

impl MessageRow {
    pub fn into_out(self, with_content: bool) -> MessageOut {
        MessageOut {
            id: self.id,
            event_type: self.event_type,
            payload: payload(self.payload, with_content),
            event_id: self.event_id,
            channels: self.channels,
            tags: self.tags,
            timestamp: self.created_at,
            deliver_at: self.deliver_at,
        }
    }
}

/// Stored payloads were validated as JSON on the way in; anything else (a row written by
/// hand) becomes `{}`.
pub fn payload(stored: Option<String>, with_content: bool) -> Box<RawValue> {
    stored
        .filter(|_| with_content)
        .and_then(|p| RawValue::from_string(p).ok())
        .unwrap_or_else(|| RawValue::from_string("{}".into()).expect("valid JSON"))
}

/// The message `key` (its id or its eventId; the id wins) of `app_id`.
pub async fn find(
    pool: &PgPool,
    app_id: &str,
    key: &str,
    with_content: bool,
) -> ApiResult<MessageOut> {
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.message m WHERE m.app_id = $1 AND (m.id = $2 OR m.event_id = $2) \
         ORDER BY m.id = $2 DESC LIMIT 1"
    );
    let row: MessageRow = sqlx::query_as(&sql)
        .bind(app_id)
        .bind(key)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(row.into_out(with_content))
}

/// A message by its id alone (its application is the message's own).
pub async fn find_by_id(pool: &PgPool, id: &str, with_content: bool) -> ApiResult<MessageOut> {
    let sql = format!("SELECT {COLUMNS} FROM herald.message m WHERE m.id = $1");
    let row: MessageRow = sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(row.into_out(with_content))
}

pub async fn resolve_id(pool: &PgPool, app_id: &str, key: &str) -> ApiResult<String> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT id FROM herald.message WHERE app_id = $1 AND (id = $2 OR event_id = $2) \
         ORDER BY id = $2 DESC LIMIT 1",
    )
    .bind(app_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    id.ok_or_else(|| ApiError::not_found("message"))
}

/// Sends a message to one endpoint only (send-example), bypassing fan-out.
pub async fn send_to_endpoint(
    pool: &PgPool,
    app_id: &str,
    endpoint_id: &str,
    event_type: &str,
    payload: &str,
) -> ApiResult<String> {
    let mut tx = pool.begin().await?;
    let id: String = sqlx::query_scalar(
        "INSERT INTO herald.message (app_id, event_type, payload) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(app_id)
    .bind(event_type)
    .bind(payload)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO herald.delivery (message_id, endpoint_id, app_id) VALUES ($1, $2, $3)",
    )
    .bind(&id)
    .bind(endpoint_id)
    .bind(app_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::store::WAKE_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// An application's messages, newest first by default.
pub async fn list_page(
    pool: &PgPool,
    app_id: &str,
    page: &PageQuery,
    filter: &MessageFilter,
    with_content: bool,
) -> ApiResult<ListResponse<MessageOut>> {
    let page = Page::new(page, Ordering::Descending)?;
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM herald.message m WHERE m.app_id = "
    ));
    qb.push_bind(app_id.to_string());
    filter.push_to(&mut qb, "m", "m.created_at");
    page.push_to(&mut qb, "m.id");
    let rows: Vec<MessageRow> = qb.build_query_as().fetch_all(pool).await?;
    let rows = rows.into_iter().map(|r| r.into_out(with_content)).collect();
    Ok(ListResponse::from_rows(rows, &page, |m: &MessageOut| {
        m.id.clone()
    }))
}

/// List an application's messages.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.message.list", tag = "Message",
    params(AppPath, PageQuery, MessageFilter, ContentQuery),
    responses((status = 200, description = "A page of messages", body = ListResponse<MessageOut>))
)]
#[get("/app/{app_id}/msg")]
async fn list(
    pool: web::Data<PgPool>,
    path: web::Path<AppPath>,
    page: web::Query<PageQuery>,
    filter: web::Query<MessageFilter>,
    content: web::Query<ContentQuery>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    let page = list_page(&pool, &app_id, &page, &filter, content.wanted()).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Get a message, by its id or its `eventId`.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.message.get", tag = "Message", params(MsgPath, ContentQuery),
    responses((status = 200, description = "The message", body = MessageOut))
)]
#[get("/app/{app_id}/msg/{msg_id}")]
async fn get(
    pool: web::Data<PgPool>,
    path: web::Path<MsgPath>,
    content: web::Query<ContentQuery>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    Ok(HttpResponse::Ok().json(find(&pool, &app_id, &path.msg_id, content.wanted()).await?))
}

/// Delete a message's payload (personal data, say), keeping the message and its delivery
/// history. A delivery still waiting then dies ("payload was expunged").
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.message.expunge-content", tag = "Message", params(MsgPath),
    responses((status = 204, description = "Expunged"))
)]
#[delete("/app/{app_id}/msg/{msg_id}/content")]
async fn expunge(pool: web::Data<PgPool>, path: web::Path<MsgPath>) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    let id = resolve_id(&pool, &app_id, &path.msg_id).await?;
    sqlx::query("UPDATE herald.message SET payload = NULL WHERE id = $1")
        .bind(id)
        .execute(pool.get_ref())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Would a message go anywhere?
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrecheckIn {
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    event_type: String,
    #[schema(value_type = Option<std::collections::BTreeSet<super::validate::shape::Channel>>, min_items = 1, max_items = 10)]
    channels: Option<Vec<String>>,
}

/// Whether any enabled endpoint would receive it.
#[derive(Serialize, ToSchema)]
pub struct PrecheckOut {
    active: bool,
}

/// Check whether a message of this event type (and channels) would reach any enabled
/// endpoint of the application, without creating it.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.message.precheck", tag = "Message",
    params(AppPath), request_body = PrecheckIn,
    responses((status = 200, description = "Whether it would be sent", body = PrecheckOut))
)]
#[post("/app/{app_id}/msg/precheck/active")]
async fn precheck(
    pool: web::Data<PgPool>,
    path: web::Path<AppPath>,
    Json(input): Json<PrecheckIn>,
) -> ApiResult<HttpResponse> {
    let mut p = Problems::default();
    p.check(validate::name("eventType", &input.event_type));
    if let Some(c) = &input.channels {
        p.check(validate::list("channels", c, 10, validate::channel));
    }
    p.finish()?;
    let app_id = application::resolve(&pool, &path.app_id).await?;
    // The same subscription rule as herald.send_message's fan-out.
    let active: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM herald.endpoint e WHERE e.app_id = $1 AND NOT e.disabled \
         AND (e.event_types IS NULL OR $2 = ANY (e.event_types)) \
         AND (e.channels IS NULL OR e.channels && $3::text[]))",
    )
    .bind(&app_id)
    .bind(&input.event_type)
    .bind(&input.channels)
    .fetch_one(pool.get_ref())
    .await?;
    Ok(HttpResponse::Ok().json(PrecheckOut { active }))
}
