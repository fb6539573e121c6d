//! The attempt log: attempts by message and by endpoint, and one attempt.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::{
    application, endpoint,
    error::{ApiError, ApiResult, ValidationErrorItem},
    message::{self, MessageOut},
    pagination::{ListResponse, Ordering, Page, PageQuery},
    paths::{AttemptPath, EndpointPath, MsgPath},
    query::{ContentQuery, MessageFilter},
};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_by_msg)
        .service(list_by_endpoint)
        .service(get);
}

/// Svix `MessageStatus` (0 success, 1 pending, 2 fail, 3 sending) and its text, for a
/// delivery's status.
pub fn status_of(delivery_status: &str) -> (i16, &'static str) {
    match delivery_status {
        "succeeded" => (0, "success"),
        "pending" => (1, "pending"),
        "dead" => (2, "fail"),
        "sending" => (3, "sending"),
        _ => (4, "canceled"),
    }
}

/// One HTTP try.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptOut {
    /// `atmpt_…`.
    pub id: String,
    pub msg_id: String,
    pub endpoint_id: String,
    pub url: String,
    /// The start of the receiver's answer (up to `HERALD_RESPONSE_BODY_LIMIT` bytes).
    pub response: String,
    /// 0 when there was no answer (timeout, connection error, refused destination).
    pub response_status_code: i16,
    pub response_duration_ms: i64,
    /// 0 success, 2 fail.
    #[schema(minimum = 0, maximum = 4)]
    pub status: i16,
    pub status_text: &'static str,
    /// 0 scheduled, 1 manual (a resend, recover or replay).
    #[schema(minimum = 0, maximum = 1)]
    pub trigger_type: i16,
    pub timestamp: DateTime<Utc>,
    /// Herald: why there was no answer (timeout, connection refused, ...).
    pub error: Option<String>,
    /// The message, with `with_msg=true`.
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

const COLUMNS: &str = "a.id, a.message_id, a.endpoint_id, a.url, a.response, a.status_code, \
                       a.duration_ms, a.succeeded, a.trigger_type, a.started_at, a.error";

/// The attempt-only filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptQuery {
    /// 0 success, 2 fail (1 pending, 3 sending: an attempt is never either).
    #[param(minimum = 0, maximum = 4)]
    pub status: Option<i16>,
    /// 200, 300, 400 or 500 for answers of that class, 100 for 1xx, 0 for no answer at all.
    #[param(minimum = 0, maximum = 500)]
    pub status_code_class: Option<i16>,
    /// Include each attempt's message.
    pub with_msg: Option<bool>,
    /// Svix: also list canceled attempts. Herald never cancels one, so nothing changes.
    #[allow(dead_code)] // accepted and honoured: there is nothing to expand
    pub expanded_statuses: Option<bool>,
}

/// Whose attempts to list.
#[derive(Debug, Clone, Copy)]
pub enum AttemptsOf<'a> {
    /// A message's, to one endpoint or all.
    Message(&'a str, Option<&'a str>),
    Endpoint(&'a str),
}

/// Attempts of a message or an endpoint, newest first by default.
pub async fn list_page(
    pool: &PgPool,
    app_id: &str,
    of: AttemptsOf<'_>,
    page: &PageQuery,
    q: &AttemptQuery,
    filter: &MessageFilter,
    with_content: bool,
) -> ApiResult<ListResponse<AttemptOut>> {
    let page = Page::new(page, Ordering::Descending)?;
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM herald.attempt a JOIN herald.message m ON m.id = a.message_id \
         WHERE a.app_id = "
    ));
    qb.push_bind(app_id.to_string());
    match of {
        AttemptsOf::Message(id, _) => qb.push(" AND a.message_id = ").push_bind(id.to_string()),
        AttemptsOf::Endpoint(id) => qb.push(" AND a.endpoint_id = ").push_bind(id.to_string()),
    };
    match q.status {
        None => {}
        Some(0) => {
            qb.push(" AND a.succeeded");
        }
        Some(2) => {
            qb.push(" AND NOT a.succeeded");
        }
        // An attempt is over: it succeeded or failed. Pending, sending, canceled match none.
        Some(1 | 3 | 4) => {
            qb.push(" AND false");
        }
        Some(_) => return Err(invalid_query("status", "must be 0 to 4")),
    }
    match q.status_code_class {
        None => {}
        Some(0) => {
            qb.push(" AND a.status_code IS NULL");
        }
        Some(c @ (100 | 200 | 300 | 400 | 500)) => {
            qb.push(" AND a.status_code / 100 * 100 = ").push_bind(c);
        }
        Some(_) => {
            return Err(invalid_query(
                "status_code_class",
                "must be one of 0 (no answer), 100, 200, 300, 400, 500",
            ))
        }
    }
    if let AttemptsOf::Message(_, Some(ep)) = of {
        qb.push(" AND a.endpoint_id = ").push_bind(ep.to_string());
    }
    filter.push_to(&mut qb, "m", "a.started_at");
    page.push_to(&mut qb, "a.id");
    let rows: Vec<AttemptRow> = qb.build_query_as().fetch_all(pool).await?;
    let mut rows: Vec<AttemptOut> = rows.into_iter().map(AttemptOut::from).collect();
    if q.with_msg.unwrap_or(false) {
        for a in &mut rows {
            a.msg = Some(message::find(pool, app_id, &a.msg_id, with_content).await?);
        }
    }
    Ok(ListResponse::from_rows(rows, &page, |a| a.id.clone()))
}

/// The by-message list's own filter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ByMsgQuery {
    /// Only attempts to this endpoint (id).
    #[param(max_length = 256)]
    endpoint_id: Option<String>,
}

fn invalid_query(name: &str, msg: &str) -> ApiError {
    ApiError::Validation(vec![ValidationErrorItem::query(name, msg)])
}

/// List a message's attempts.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.message-attempt.list-by-msg", tag = "Message Attempt",
    params(MsgPath, PageQuery, AttemptQuery, ByMsgQuery, MessageFilter, ContentQuery),
    responses((status = 200, description = "A page of attempts", body = ListResponse<AttemptOut>))
)]
#[get("/app/{app_id}/attempt/msg/{msg_id}")]
async fn list_by_msg(
    pool: web::Data<PgPool>,
    path: web::Path<MsgPath>,
    page: web::Query<PageQuery>,
    q: web::Query<AttemptQuery>,
    by_msg: web::Query<ByMsgQuery>,
    filter: web::Query<MessageFilter>,
    content: web::Query<ContentQuery>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    let msg_id = message::resolve_id(&pool, &app_id, &path.msg_id).await?;
    let list = list_page(
        &pool,
        &app_id,
        AttemptsOf::Message(&msg_id, by_msg.endpoint_id.as_deref()),
        &page,
        &q,
        &filter,
        content.wanted(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// List an endpoint's attempts.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.message-attempt.list-by-endpoint", tag = "Message Attempt",
    params(EndpointPath, PageQuery, AttemptQuery, MessageFilter, ContentQuery),
    responses((status = 200, description = "A page of attempts", body = ListResponse<AttemptOut>))
)]
#[get("/app/{app_id}/attempt/endpoint/{endpoint_id}")]
async fn list_by_endpoint(
    pool: web::Data<PgPool>,
    path: web::Path<EndpointPath>,
    page: web::Query<PageQuery>,
    q: web::Query<AttemptQuery>,
    filter: web::Query<MessageFilter>,
    content: web::Query<ContentQuery>,
) -> ApiResult<HttpResponse> {
    let (app_id, e) = endpoint::resolve(&pool, &path).await?;
    let list = list_page(
        &pool,
        &app_id,
        AttemptsOf::Endpoint(&e.id),
        &page,
        &q,
        &filter,
        content.wanted(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Get one attempt of a message.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.message-attempt.get", tag = "Message Attempt", params(AttemptPath),
    responses((status = 200, description = "The attempt", body = AttemptOut))
)]
#[get("/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}")]
async fn get(pool: web::Data<PgPool>, path: web::Path<AttemptPath>) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    let msg_id = message::resolve_id(&pool, &app_id, &path.msg_id).await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.attempt a WHERE a.app_id = $1 AND a.message_id = $2 AND a.id = $3"
    );
    let row: AttemptRow = sqlx::query_as(&sql)
        .bind(&app_id)
        .bind(&msg_id)
        .bind(&path.attempt_id)
        .fetch_optional(pool.get_ref())
        .await?
        .ok_or_else(|| ApiError::not_found("attempt"))?;
    Ok(HttpResponse::Ok().json(AttemptOut::from(row)))
}
