//! Where messages went: a message's endpoints with its delivery status there, an endpoint's
//! messages with theirs, and resend.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::{
    application,
    attempt::status_of,
    endpoint::{self, EndpointOut},
    error::{ApiError, ApiResult, HttpErrorOut},
    message::{self, MessageOut, MessageRow},
    pagination::{ListResponse, Ordering, Page, PageQuery},
    paths::{EndpointPath, MsgEndpointPath, MsgPath},
    query::{ContentQuery, MessageFilter},
};
use crate::store::replay::{self, Resend};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(destinations)
        .service(endpoint_messages)
        .service(resend);
}

/// An endpoint a message was sent to, with the delivery's status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageEndpointOut {
    #[serde(flatten)]
    pub endpoint: EndpointOut,
    /// 0 success, 1 pending, 2 fail (dead), 3 sending.
    #[schema(minimum = 0, maximum = 4)]
    pub status: i16,
    pub status_text: &'static str,
    /// When the next attempt is due, while pending.
    pub next_attempt: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct DestinationRow {
    #[sqlx(flatten)]
    endpoint: EndpointOut,
    status: String,
    next_attempt_at: DateTime<Utc>,
}

impl From<DestinationRow> for MessageEndpointOut {
    fn from(r: DestinationRow) -> Self {
        let (status, status_text) = status_of(&r.status);
        MessageEndpointOut {
            endpoint: r.endpoint,
            status,
            status_text,
            next_attempt: (status == 1).then_some(r.next_attempt_at),
        }
    }
}

/// List the endpoints a message was sent to, with the delivery's status at each.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.message-attempt.list-attempted-destinations", tag = "Message Attempt",
    params(MsgPath, PageQuery),
    responses((status = 200, description = "A page of endpoints", body = ListResponse<MessageEndpointOut>))
)]
#[get("/app/{app_id}/msg/{msg_id}/endpoint")]
async fn destinations(
    pool: web::Data<PgPool>,
    path: web::Path<MsgPath>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    let msg_id = message::resolve_id(&pool, &app_id, &path.msg_id).await?;
    Ok(HttpResponse::Ok().json(destinations_page(&pool, &msg_id, &q).await?))
}

/// The endpoints message `msg_id` was sent to, with the delivery's status at each.
pub async fn destinations_page(
    pool: &PgPool,
    msg_id: &str,
    q: &PageQuery,
) -> ApiResult<ListResponse<MessageEndpointOut>> {
    let page = Page::new(q, Ordering::Ascending)?;
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {}, d.status::text AS status, d.next_attempt_at \
         FROM herald.delivery d JOIN herald.endpoint e ON e.id = d.endpoint_id \
         WHERE d.message_id = ",
        endpoint::COLUMNS_OF_E
    ));
    qb.push_bind(msg_id.to_string());
    page.push_to(&mut qb, "e.id");
    let rows: Vec<DestinationRow> = qb.build_query_as().fetch_all(pool).await?;
    let rows: Vec<MessageEndpointOut> = rows.into_iter().map(Into::into).collect();
    Ok(ListResponse::from_rows(rows, &page, |e| {
        e.endpoint.id.clone()
    }))
}

/// A message sent to an endpoint, with the delivery's status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointMessageOut {
    #[serde(flatten)]
    pub message: MessageOut,
    /// 0 success, 1 pending, 2 fail (dead), 3 sending.
    #[schema(minimum = 0, maximum = 4)]
    pub status: i16,
    pub status_text: &'static str,
    /// When the next attempt is due, while pending.
    pub next_attempt: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct EndpointMessageRow {
    #[sqlx(flatten)]
    message: MessageRow,
    status: String,
    next_attempt_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// Only deliveries in this state: 0 success, 1 pending, 2 fail (dead), 3 sending.
    #[param(minimum = 0, maximum = 4)]
    status: Option<i16>,
}

/// List the messages an endpoint was sent, with the delivery's status at it.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.message-attempt.list-attempted-messages", tag = "Message Attempt",
    params(EndpointPath, PageQuery, StatusQuery, MessageFilter, ContentQuery),
    responses((status = 200, description = "A page of messages", body = ListResponse<EndpointMessageOut>))
)]
#[get("/app/{app_id}/endpoint/{endpoint_id}/msg")]
async fn endpoint_messages(
    pool: web::Data<PgPool>,
    path: web::Path<EndpointPath>,
    page: web::Query<PageQuery>,
    q: web::Query<StatusQuery>,
    filter: web::Query<MessageFilter>,
    content: web::Query<ContentQuery>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    let page =
        endpoint_messages_page(&pool, &e.id, &page, q.status, &filter, content.wanted()).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// The messages endpoint `endpoint_id` was sent, with the delivery's status at it
/// (`status`: Svix's 0 success, 1 pending, 2 fail, 3 sending).
pub async fn endpoint_messages_page(
    pool: &PgPool,
    endpoint_id: &str,
    page: &PageQuery,
    status: Option<i16>,
    filter: &MessageFilter,
    with_content: bool,
) -> ApiResult<ListResponse<EndpointMessageOut>> {
    let page = Page::new(page, Ordering::Descending)?;
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {}, d.status::text AS status, d.next_attempt_at \
         FROM herald.delivery d JOIN herald.message m ON m.id = d.message_id \
         WHERE d.endpoint_id = ",
        message::COLUMNS
    ));
    qb.push_bind(endpoint_id.to_string());
    if let Some(status) = status {
        let status = match status {
            0 => "succeeded",
            1 => "pending",
            2 => "dead",
            3 => "sending",
            // Herald never cancels a delivery.
            4 => "canceled",
            _ => {
                return Err(ApiError::Validation(vec![
                    super::error::ValidationErrorItem::query("status", "must be 0 to 4"),
                ]))
            }
        };
        qb.push(" AND d.status::text = ").push_bind(status);
    }
    filter.push_to(&mut qb, "m", "m.created_at");
    page.push_to(&mut qb, "m.id");
    let rows: Vec<EndpointMessageRow> = qb.build_query_as().fetch_all(pool).await?;
    let rows: Vec<EndpointMessageOut> = rows
        .into_iter()
        .map(|r| {
            let (status, status_text) = status_of(&r.status);
            EndpointMessageOut {
                message: r.message.into_out(with_content),
                status,
                status_text,
                next_attempt: (status == 1).then_some(r.next_attempt_at),
            }
        })
        .collect();
    Ok(ListResponse::from_rows(rows, &page, |m| {
        m.message.id.clone()
    }))
}

/// Send a message to one endpoint again, now, with a fresh schedule.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.message-attempt.resend", tag = "Message Attempt", params(MsgEndpointPath),
    responses(
        (status = 202, description = "Queued", body = Object),
        (status = 409, description = "An attempt to this endpoint is under way", body = HttpErrorOut),
    )
)]
#[post("/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend")]
async fn resend(
    pool: web::Data<PgPool>,
    path: web::Path<MsgEndpointPath>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    resend_to(&pool, &app_id, &path.msg_id, &path.endpoint_id).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({})))
}

/// Queues message `msg_key` (id or `eventId`) for endpoint `endpoint_key` (id or uid) of
/// `app_id` once more.
pub async fn resend_to(
    pool: &PgPool,
    app_id: &str,
    msg_key: &str,
    endpoint_key: &str,
) -> ApiResult<()> {
    let msg_id = message::resolve_id(pool, app_id, msg_key).await?;
    let e = endpoint::find(pool, app_id, endpoint_key).await?;
    // A message that named its own URL goes there only, and a callback endpoint gets only
    // the messages that named it: a resend may repeat a delivery, not make a new pairing.
    let (paired, to_callback): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM herald.delivery WHERE message_id = $1 AND endpoint_id = $2), \
                EXISTS (SELECT 1 FROM herald.delivery d JOIN herald.endpoint ce \
                        ON ce.id = d.endpoint_id AND ce.callback WHERE d.message_id = $1)",
    )
    .bind(&msg_id)
    .bind(&e.id)
    .fetch_one(pool)
    .await?;
    if !paired && (e.callback || to_callback) {
        return Err(ApiError::Conflict(
            "a message that named a callback URL goes to that URL only, and a callback \
             endpoint gets only the messages that named it"
                .into(),
        ));
    }
    match replay::resend(pool, app_id, &msg_id, &e.id).await? {
        Resend::Queued => Ok(()),
        Resend::InFlight => Err(ApiError::Conflict(
            "an attempt to this endpoint is under way; try again when it ends".into(),
        )),
    }
}
