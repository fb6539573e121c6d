//! Herald: dead letters (deliveries out of attempts, or whose endpoint was disabled): list
//! them, replay one, or replay in bulk by application, endpoint and time range.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::{
    application,
    error::{ApiError, ApiResult, ValidationErrorItem},
    extract::Json,
    pagination::{ListResponse, Ordering, Page, PageQuery},
    query,
};
use crate::{
    access::principal::Reach,
    store::{
        replay::{self, Selection},
        task::TaskKind,
    },
};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list).service(replay_bulk).service(replay_one);
}

/// A dead letter: a delivery that will not be tried again unless replayed.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterOut {
    /// `dlv_<n>`: the delivery.
    pub id: String,
    pub app_id: String,
    pub msg_id: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub attempts: i32,
    pub last_status_code: Option<i16>,
    pub last_error: Option<String>,
    /// Why it died.
    pub reason: Option<String>,
    /// When the message was created.
    pub created_at: DateTime<Utc>,
    /// When the delivery died.
    pub dead_at: DateTime<Utc>,
}

fn delivery_id(id: &str) -> Option<i64> {
    id.strip_prefix("dlv_").unwrap_or(id).parse().ok()
}

/// Which dead letters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterFilter {
    /// Only this application's (id or uid).
    #[param(max_length = 256)]
    pub app_id: Option<String>,
    /// Only this endpoint's (id).
    #[param(max_length = 256)]
    pub endpoint_id: Option<String>,
    /// Only of messages created at or after this time.
    #[serde(default, deserialize_with = "query::datetime")]
    #[param(value_type = Option<DateTime<Utc>>)]
    pub since: Option<DateTime<Utc>>,
    /// Only of messages created before this time.
    #[serde(default, deserialize_with = "query::datetime")]
    #[param(value_type = Option<DateTime<Utc>>)]
    pub until: Option<DateTime<Utc>>,
}

/// The application whose dead letters to take: the one named (id or uid), within what the
/// caller reaches (an application-scoped caller naming another one finds nothing: 404).
async fn app_filter(
    pool: &PgPool,
    reach: &Reach,
    named: &Option<String>,
) -> ApiResult<Option<String>> {
    let named = match named {
        Some(key) => Some(application::resolve(pool, key).await?),
        None => None,
    };
    match (reach.app_id(), named) {
        (Some(own), Some(named)) if named != own => Err(ApiError::not_found("application")),
        (Some(own), _) => Ok(Some(own.to_string())),
        (None, named) => Ok(named),
    }
}

impl DeadLetterFilter {
    /// The replay selection these filters make, within `reach`.
    pub async fn selection(&self, pool: &PgPool, reach: &Reach) -> ApiResult<Selection> {
        check_range(self.since, self.until)?;
        Ok(Selection {
            app_id: app_filter(pool, reach, &self.app_id).await?,
            endpoint_id: self.endpoint_id.clone(),
            since: self.since,
            until: self.until,
            delivery_ids: None,
        })
    }
}

fn check_range(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> ApiResult<()> {
    match (since, until) {
        (Some(s), Some(u)) if u <= s => Err(ApiError::invalid("until", "must be after since")),
        _ => Ok(()),
    }
}

/// Dead letters, most recent delivery first by default.
pub async fn list_page(
    pool: &PgPool,
    reach: &Reach,
    page: &PageQuery,
    f: &DeadLetterFilter,
) -> ApiResult<ListResponse<DeadLetterOut>> {
    let app_id = app_filter(pool, reach, &f.app_id).await?;
    let mut page = Page::new(page, Ordering::Descending)?;
    let cursor = match page.after.take() {
        Some(it) => Some(delivery_id(&it).ok_or_else(|| {
            ApiError::Validation(vec![ValidationErrorItem::query(
                "iterator",
                "is not an iterator this list returned",
            )])
        })?),
        None => None,
    };
    let mut qb = sqlx::QueryBuilder::new(
        "SELECT 'dlv_' || d.id AS id, d.app_id, d.message_id AS msg_id, d.endpoint_id, m.event_type, \
                d.attempts, d.last_status_code, d.last_error, d.dead_reason AS reason, d.created_at, \
                d.updated_at AS dead_at \
         FROM herald.delivery d JOIN herald.message m ON m.id = d.message_id \
         WHERE d.status = 'dead'",
    );
    if let Some(app) = app_id {
        qb.push(" AND d.app_id = ").push_bind(app);
    }
    if let Some(ep) = &f.endpoint_id {
        qb.push(" AND d.endpoint_id = ").push_bind(ep.clone());
    }
    if let Some(since) = f.since {
        qb.push(" AND d.created_at >= ").push_bind(since);
    }
    if let Some(until) = f.until {
        qb.push(" AND d.created_at < ").push_bind(until);
    }
    if let Some(c) = cursor {
        qb.push(if page.descending {
            " AND d.id < "
        } else {
            " AND d.id > "
        })
        .push_bind(c);
    }
    qb.push(page.order_clause("d.id"));
    let rows = qb.build_query_as().fetch_all(pool).await?;
    Ok(ListResponse::from_rows(rows, &page, |d: &DeadLetterOut| {
        d.id.clone()
    }))
}

/// Herald: list dead letters.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "herald.dead-letter.list", tag = "Dead letters",
    params(PageQuery, DeadLetterFilter),
    responses(
        (status = 200, description = "A page of dead letters", body = ListResponse<DeadLetterOut>),
        (status = 404, description = "No application has the `app_id` given", body = super::error::HttpErrorOut),
    )
)]
#[get("/dead-letter")]
async fn list(
    pool: web::Data<PgPool>,
    reach: Reach,
    page: web::Query<PageQuery>,
    f: web::Query<DeadLetterFilter>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(list_page(&pool, &reach, &page, &f).await?))
}

/// How many were replayed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayedOut {
    pub replayed: u64,
    /// A bulk replay's background task (`qtask_…`): its `data` shows how many of the
    /// replayed deliveries have been delivered since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct DeadLetterPath {
    /// The dead letter's id (`dlv_<n>`).
    #[param(min_length = 1, max_length = 64)]
    delivery_id: String,
}

/// Herald: replay one dead letter (due now, with a fresh retry schedule).
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "herald.dead-letter.replay", tag = "Dead letters", params(DeadLetterPath),
    responses((status = 202, description = "Queued", body = ReplayedOut))
)]
#[post("/dead-letter/{delivery_id}/replay")]
async fn replay_one(
    pool: web::Data<PgPool>,
    reach: Reach,
    path: web::Path<DeadLetterPath>,
) -> ApiResult<HttpResponse> {
    let n = delivery_id(&path.delivery_id).ok_or_else(|| ApiError::not_found("dead letter"))?;
    Ok(HttpResponse::Accepted().json(replay_one_of(&pool, &reach, n).await?))
}

/// Replays dead letter `n` if the caller reaches it.
pub async fn replay_one_of(pool: &PgPool, reach: &Reach, n: i64) -> ApiResult<ReplayedOut> {
    let selection = Selection {
        app_id: reach.app_id().map(String::from),
        delivery_ids: Some(vec![n]),
        ..Default::default()
    };
    let replayed = replay::replay(pool, &selection).await?;
    if replayed == 0 {
        return Err(ApiError::not_found("dead letter"));
    }
    Ok(ReplayedOut {
        replayed,
        task_id: None,
    })
}

/// Which dead letters to replay; every filter given must match.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayIn {
    app_id: Option<String>,
    endpoint_id: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

/// Herald: replay dead letters in bulk, as a background task.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "herald.dead-letter.replay-bulk", tag = "Dead letters", request_body = ReplayIn,
    responses(
        (status = 202, description = "Queued", body = ReplayedOut),
        (status = 404, description = "No application has the `appId` given", body = super::error::HttpErrorOut),
    )
)]
#[post("/dead-letter/replay")]
async fn replay_bulk(
    pool: web::Data<PgPool>,
    reach: Reach,
    Json(input): Json<ReplayIn>,
) -> ApiResult<HttpResponse> {
    let filter = DeadLetterFilter {
        app_id: input.app_id,
        endpoint_id: input.endpoint_id,
        since: input.since,
        until: input.until,
    };
    let selection = filter.selection(&pool, &reach).await?;
    Ok(HttpResponse::Accepted().json(replay_bulk_of(&pool, &selection).await?))
}

/// Replays what `selection` names as a bulk-replay task.
pub async fn replay_bulk_of(pool: &PgPool, selection: &Selection) -> ApiResult<ReplayedOut> {
    let task = replay::replay_as_task(
        pool,
        TaskKind::EndpointBulkReplay,
        selection.app_id.as_deref(),
        selection,
    )
    .await?;
    tracing::info!(replayed = task.messages_sent(), task = %task.id, ?selection, "dead letters replayed");
    Ok(ReplayedOut {
        replayed: task.messages_sent(),
        task_id: Some(task.id),
    })
}
