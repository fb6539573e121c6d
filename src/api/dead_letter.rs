//! Herald: dead letters (deliveries out of attempts, or whose endpoint was disabled): list
//! them, replay one, or replay in bulk by application, endpoint and time range.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;

use super::{
    application,
    error::{ApiError, ApiResult, ValidationErrorItem},
    extract::Json,
    pagination::{ListResponse, Ordering, Page, PageQuery},
    query,
};
use crate::store::replay::{self, Selection};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dead-letter", web::get().to(list))
        .route("/dead-letter/replay", web::post().to(replay_bulk))
        .route("/dead-letter/{id}/replay", web::post().to(replay_one));
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct DeadLetterOut {
    /// `dlv_<n>`: the delivery.
    id: String,
    app_id: String,
    msg_id: String,
    endpoint_id: String,
    event_type: String,
    attempts: i32,
    last_status_code: Option<i16>,
    last_error: Option<String>,
    reason: Option<String>,
    /// When the message was created.
    created_at: DateTime<Utc>,
    /// When the delivery died.
    dead_at: DateTime<Utc>,
}

fn delivery_id(id: &str) -> Option<i64> {
    id.strip_prefix("dlv_").unwrap_or(id).parse().ok()
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    page: PageQuery,
    app_id: Option<String>,
    endpoint_id: Option<String>,
    #[serde(default, deserialize_with = "query::datetime")]
    since: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "query::datetime")]
    until: Option<DateTime<Utc>>,
}

async fn app_filter(pool: &PgPool, app: &Option<String>) -> ApiResult<Option<String>> {
    match app {
        Some(key) => Ok(Some(application::resolve(pool, key).await?)),
        None => Ok(None),
    }
}

async fn list(pool: web::Data<PgPool>, q: web::Query<ListQuery>) -> ApiResult<HttpResponse> {
    let app_id = app_filter(&pool, &q.app_id).await?;
    let mut page = Page::new(&q.page, Ordering::Descending)?;
    let cursor = match page.after.take() {
        Some(it) => Some(delivery_id(&it).ok_or_else(|| {
            ApiError::Validation(vec![ValidationErrorItem::query(
                "iterator",
                "is not an iterator this list returned",
            )])
        })?),
        None => None,
    };
    page.after = cursor.map(|c| c.to_string());
    let sql = format!(
        "SELECT 'dlv_' || d.id AS id, d.app_id, d.message_id AS msg_id, d.endpoint_id, m.event_type, d.attempts, \
                d.last_status_code, d.last_error, d.dead_reason AS reason, d.created_at, d.updated_at AS dead_at \
         FROM herald.delivery d JOIN herald.message m ON m.id = d.message_id \
         WHERE d.status = 'dead' AND ($1::text IS NULL OR d.app_id = $1) AND ($2::text IS NULL OR d.endpoint_id = $2) \
         AND ($3::timestamptz IS NULL OR d.created_at >= $3) AND ($4::timestamptz IS NULL OR d.created_at < $4){}{}",
        page.cursor_clause("d.id", 5),
        page.order_clause("d.id")
    );
    let mut query = sqlx::query_as::<_, DeadLetterOut>(&sql)
        .bind(&app_id)
        .bind(&q.endpoint_id)
        .bind(q.since)
        .bind(q.until);
    if let Some(c) = cursor {
        query = query.bind(c);
    }
    let rows = query.fetch_all(pool.get_ref()).await?;
    Ok(HttpResponse::Ok().json(ListResponse::from_rows(rows, &page, |d| d.id.clone())))
}

async fn replay_one(pool: web::Data<PgPool>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let n = delivery_id(&id).ok_or_else(|| ApiError::not_found("dead letter"))?;
    let replayed = replay::replay(
        &pool,
        &Selection {
            delivery_ids: Some(vec![n]),
            ..Default::default()
        },
    )
    .await?;
    if replayed == 0 {
        return Err(ApiError::not_found("dead letter"));
    }
    Ok(HttpResponse::Accepted().json(json!({ "replayed": replayed })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplayIn {
    app_id: Option<String>,
    endpoint_id: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

async fn replay_bulk(
    pool: web::Data<PgPool>,
    Json(input): Json<ReplayIn>,
) -> ApiResult<HttpResponse> {
    if let (Some(s), Some(u)) = (input.since, input.until) {
        if u <= s {
            return Err(ApiError::invalid("until", "must be after since"));
        }
    }
    let selection = Selection {
        app_id: app_filter(&pool, &input.app_id).await?,
        endpoint_id: input.endpoint_id,
        since: input.since,
        until: input.until,
        delivery_ids: None,
    };
    let replayed = replay::replay(&pool, &selection).await?;
    tracing::info!(replayed, ?selection, "dead letters replayed");
    Ok(HttpResponse::Accepted().json(json!({ "replayed": replayed })))
}
