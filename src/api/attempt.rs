//! The attempt log and delivery status: attempts by message and by endpoint, one attempt,
//! where a message went, what an endpoint received, and resend.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;

use super::{
    application, endpoint,
    error::{ApiError, ApiResult},
    message::{self, MessageOut},
    pagination::{ListResponse, Ordering, Page, PageQuery},
    query,
};
use crate::store::replay::{self, Resend};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/app/{app_id}/attempt/msg/{msg_id}",
        web::get().to(list_by_msg),
    )
    .route(
        "/app/{app_id}/attempt/endpoint/{endpoint_id}",
        web::get().to(list_by_endpoint),
    )
    .route(
        "/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}",
        web::get().to(get),
    )
    .route(
        "/app/{app_id}/msg/{msg_id}/endpoint",
        web::get().to(destinations),
    )
    .route(
        "/app/{app_id}/endpoint/{endpoint_id}/msg",
        web::get().to(endpoint_messages),
    )
    .route(
        "/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
        web::post().to(resend),
    );
}

/// Svix `MessageStatus` and its text for a delivery status.
pub fn status_of(delivery_status: &str) -> (i16, &'static str) {
    match delivery_status {
        "succeeded" => (0, "success"),
        "pending" => (1, "pending"),
        "dead" => (2, "fail"),
        "sending" => (3, "sending"),
        _ => (4, "canceled"),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptOut {
    pub id: String,
    pub msg_id: String,
    pub endpoint_id: String,
    pub url: String,
    pub response: String,
    pub response_status_code: i16,
    pub response_duration_ms: i64,
    pub status: i16,
    pub status_text: &'static str,
    pub trigger_type: i16,
    pub timestamp: DateTime<Utc>,
    /// Herald: why there was no response (timeout, connection refused, ...).
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<MessageOut>,
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    id: String,
    message_id: String,
    endpoint_id: String,
    url: String,
    response: Option<String>,
    status_code: Option<i16>,
    duration_ms: i32,
    succeeded: bool,
    trigger_type: i16,
    started_at: DateTime<Utc>,
    error: Option<String>,
}

impl From<AttemptRow> for AttemptOut {
    fn from(r: AttemptRow) -> Self {
        let (status, status_text) = if r.succeeded {
            (0, "success")
        } else {
            (2, "fail")
        };
        AttemptOut {
            id: r.id,
            msg_id: r.message_id,
            endpoint_id: r.endpoint_id,
            url: r.url,
            response: r.response.unwrap_or_default(),
            response_status_code: r.status_code.unwrap_or(0),
            response_duration_ms: r.duration_ms.into(),
            status,
            status_text,
            trigger_type: r.trigger_type,
            timestamp: r.started_at,
            error: r.error,
            msg: None,
        }
    }
}

const ATTEMPT_COLUMNS: &str =
    "a.id, a.message_id, a.endpoint_id, a.url, a.response, a.status_code, a.duration_ms, \
                               a.succeeded, a.trigger_type, a.started_at, a.error";

#[derive(Deserialize)]
struct AttemptQuery {
    #[serde(flatten)]
    page: PageQuery,
    #[serde(default, deserialize_with = "super::query::parsed")]
    status: Option<i16>,
    #[serde(default, deserialize_with = "super::query::parsed")]
    status_code_class: Option<i16>,
    endpoint_id: Option<String>,
    #[serde(default, deserialize_with = "query::list")]
    event_types: Option<Vec<String>>,
    channel: Option<String>,
    #[serde(default, deserialize_with = "query::datetime")]
    before: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "query::datetime")]
    after: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "super::query::parsed")]
    with_msg: Option<bool>,
    #[serde(default, deserialize_with = "super::query::parsed")]
    with_content: Option<bool>,
}

/// Lists attempts where `column = key`, with the Svix filters.
async fn attempts(
    pool: &PgPool,
    app_id: &str,
    column: &str,
    key: &str,
    q: &AttemptQuery,
) -> ApiResult<ListResponse<AttemptOut>> {
    let page = Page::new(&q.page, Ordering::Descending)?;
    let succeeded = match q.status {
        None => None,
        Some(0) => Some(true),
        Some(2) => Some(false),
        // An attempt is over: it succeeded or failed. Pending, sending, canceled match none.
        Some(1) | Some(3) | Some(4) => {
            return Ok(ListResponse::from_rows(vec![], &page, |a: &AttemptOut| {
                a.id.clone()
            }))
        }
        Some(_) => {
            return Err(ApiError::Validation(vec![
                super::error::ValidationErrorItem::query("status", "must be 0 to 4"),
            ]))
        }
    };
    let class = match q.status_code_class {
        None | Some(0) => None,
        Some(c @ (100 | 200 | 300 | 400 | 500)) => Some(c),
        Some(_) => {
            return Err(ApiError::Validation(vec![
                super::error::ValidationErrorItem::query(
                    "status_code_class",
                    "must be one of 0, 100, 200, 300, 400, 500",
                ),
            ]))
        }
    };
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM herald.attempt a JOIN herald.message m ON m.id = a.message_id \
         WHERE a.app_id = $1 AND a.{column} = $2 \
         AND ($3::bool IS NULL OR a.succeeded = $3) \
         AND ($4::smallint IS NULL OR a.status_code / 100 * 100 = $4) \
         AND ($5::text IS NULL OR a.endpoint_id = $5) \
         AND ($6::text[] IS NULL OR m.event_type = ANY($6)) AND ($7::text IS NULL OR $7 = ANY(m.channels)) \
         AND ($8::timestamptz IS NULL OR a.started_at < $8) AND ($9::timestamptz IS NULL OR a.started_at > $9){}{}",
        page.cursor_clause("a.id", 10),
        page.order_clause("a.id")
    );
    let mut query = sqlx::query_as::<_, AttemptRow>(&sql)
        .bind(app_id)
        .bind(key)
        .bind(succeeded)
        .bind(class)
        .bind(&q.endpoint_id)
        .bind(&q.event_types)
        .bind(&q.channel)
        .bind(q.before)
        .bind(q.after);
    if let Some(after) = &page.after {
        query = query.bind(after);
    }
    let mut rows: Vec<AttemptOut> = query
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(AttemptOut::from)
        .collect();
    if q.with_msg.unwrap_or(false) {
        for a in &mut rows {
            a.msg =
                Some(message::find(pool, app_id, &a.msg_id, q.with_content.unwrap_or(true)).await?);
        }
    }
    Ok(ListResponse::from_rows(rows, &page, |a| a.id.clone()))
}

async fn list_by_msg(
    pool: web::Data<PgPool>,
    path: web::Path<(String, String)>,
    q: web::Query<AttemptQuery>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.0).await?;
    let msg_id = message::resolve_id(&pool, &app_id, &path.1).await?;
    Ok(HttpResponse::Ok().json(attempts(&pool, &app_id, "message_id", &msg_id, &q).await?))
}

async fn list_by_endpoint(
    pool: web::Data<PgPool>,
    path: web::Path<(String, String)>,
    q: web::Query<AttemptQuery>,
) -> ApiResult<HttpResponse> {
    let (app_id, e) = endpoint::resolve(&pool, &path).await?;
    Ok(HttpResponse::Ok().json(attempts(&pool, &app_id, "endpoint_id", &e.id, &q).await?))
}

async fn get(
    pool: web::Data<PgPool>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.0).await?;
    let msg_id = message::resolve_id(&pool, &app_id, &path.1).await?;
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM herald.attempt a WHERE a.app_id = $1 AND a.message_id = $2 AND a.id = $3");
    let row: AttemptRow = sqlx::query_as(&sql)
        .bind(&app_id)
        .bind(&msg_id)
        .bind(&path.2)
        .fetch_optional(pool.get_ref())
        .await?
        .ok_or_else(|| ApiError::not_found("attempt"))?;
    Ok(HttpResponse::Ok().json(AttemptOut::from(row)))
}

/// Where a message went: each endpoint with its delivery status.
async fn destinations(
    pool: web::Data<PgPool>,
    path: web::Path<(String, String)>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.0).await?;
    let msg_id = message::resolve_id(&pool, &app_id, &path.1).await?;
    let page = Page::new(&q, Ordering::Ascending)?;
    let sql = format!(
        "SELECT e.id, e.uid, e.url, e.description, e.rate_limit, e.disabled, e.event_types, e.channels, \
                e.created_at, e.updated_at, d.status::text AS status, d.next_attempt_at \
         FROM herald.delivery d JOIN herald.endpoint e ON e.id = d.endpoint_id \
         WHERE d.message_id = $1{}{}",
        page.cursor_clause("e.id", 2),
        page.order_clause("e.id")
    );
    let mut query = sqlx::query_as::<_, DestinationRow>(&sql).bind(&msg_id);
    if let Some(after) = &page.after {
        query = query.bind(after);
    }
    let rows: Vec<serde_json::Value> = query
        .fetch_all(pool.get_ref())
        .await?
        .into_iter()
        .map(DestinationRow::into_json)
        .collect();
    Ok(
        HttpResponse::Ok().json(ListResponse::from_rows(rows, &page, |v| {
            v["id"].as_str().unwrap_or_default().to_string()
        })),
    )
}

#[derive(sqlx::FromRow)]
struct DestinationRow {
    id: String,
    uid: Option<String>,
    url: String,
    description: String,
    rate_limit: Option<i32>,
    disabled: bool,
    event_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    status: String,
    next_attempt_at: DateTime<Utc>,
}

impl DestinationRow {
    fn into_json(self) -> serde_json::Value {
        let (status, status_text) = status_of(&self.status);
        json!({
            "id": self.id, "uid": self.uid, "url": self.url, "description": self.description,
            "throttleRate": self.rate_limit, "disabled": self.disabled, "eventTypes": self.event_types,
            "channels": self.channels, "createdAt": self.created_at, "updatedAt": self.updated_at,
            "status": status, "statusText": status_text,
            "nextAttempt": (status == 1).then_some(self.next_attempt_at),
        })
    }
}

#[derive(Deserialize)]
struct EndpointMessagesQuery {
    #[serde(flatten)]
    page: PageQuery,
    #[serde(default, deserialize_with = "super::query::parsed")]
    status: Option<i16>,
    channel: Option<String>,
    #[serde(default, deserialize_with = "query::list")]
    event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "query::datetime")]
    before: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "query::datetime")]
    after: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "super::query::parsed")]
    with_content: Option<bool>,
}

/// What an endpoint was sent: each message with its delivery status there.
async fn endpoint_messages(
    pool: web::Data<PgPool>,
    path: web::Path<(String, String)>,
    q: web::Query<EndpointMessagesQuery>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    let page = Page::new(&q.page, Ordering::Descending)?;
    let status = q.status.map(|s| match s {
        0 => "succeeded",
        1 => "pending",
        2 => "dead",
        3 => "sending",
        _ => "canceled",
    });
    let sql = format!(
        "SELECT {}, d.status::text AS status, d.next_attempt_at \
         FROM herald.delivery d JOIN herald.message m ON m.id = d.message_id \
         WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.status::text = $2) \
         AND ($3::text IS NULL OR $3 = ANY(m.channels)) AND ($4::text[] IS NULL OR m.event_type = ANY($4)) \
         AND ($5::timestamptz IS NULL OR m.created_at < $5) AND ($6::timestamptz IS NULL OR m.created_at > $6){}{}",
        message::COLUMNS,
        page.cursor_clause("m.id", 7),
        page.order_clause("m.id")
    );
    let mut query = sqlx::query_as::<_, EndpointMessageRow>(&sql)
        .bind(&e.id)
        .bind(status)
        .bind(&q.channel)
        .bind(&q.event_types)
        .bind(q.before)
        .bind(q.after);
    if let Some(after) = &page.after {
        query = query.bind(after);
    }
    let with_content = q.with_content.unwrap_or(true);
    let rows: Vec<serde_json::Value> = query
        .fetch_all(pool.get_ref())
        .await?
        .into_iter()
        .map(|r| {
            let (status, status_text) = status_of(&r.status);
            let mut v = serde_json::to_value(r.message.into_out(with_content)).unwrap_or_default();
            v["status"] = json!(status);
            v["statusText"] = json!(status_text);
            v["nextAttempt"] = json!((status == 1).then_some(r.next_attempt_at));
            v
        })
        .collect();
    Ok(
        HttpResponse::Ok().json(ListResponse::from_rows(rows, &page, |v| {
            v["id"].as_str().unwrap_or_default().to_string()
        })),
    )
}

#[derive(sqlx::FromRow)]
struct EndpointMessageRow {
    #[sqlx(flatten)]
    message: message::MessageRow,
    status: String,
    next_attempt_at: DateTime<Utc>,
}

/// Sends a message to one endpoint again, now, with a fresh schedule.
async fn resend(
    pool: web::Data<PgPool>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.0).await?;
    let msg_id = message::resolve_id(&pool, &app_id, &path.1).await?;
    let e = endpoint::find(&pool, &app_id, &path.2).await?;
    match replay::resend(&pool, &app_id, &msg_id, &e.id).await? {
        Resend::Queued => Ok(HttpResponse::Accepted().json(json!({}))),
        Resend::InFlight => Err(ApiError::Conflict(
            "an attempt to this endpoint is under way; try again when it ends".into(),
        )),
    }
}
