//! Per-endpoint operations: recover, replay-missing, send-example, stats; and Herald's own
//! re-enable.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::{
    background_task::BackgroundTaskOut,
    endpoint::{self, EndpointOut, COLUMNS},
    error::{ApiError, ApiResult},
    event_type,
    extract::Json,
    message::{self, MessageOut},
    paths::EndpointPath,
    query,
};
use crate::{
    access::principal::Reach,
    store::{replay, task},
};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(recover)
        .service(replay_missing)
        .service(send_example)
        .service(stats)
        .service(enable);
}

/// A time range: from `since`, up to `until` (default: now).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeRangeIn {
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
}

impl TimeRangeIn {
    fn check(&self) -> ApiResult<()> {
        if self.until.is_some_and(|u| u <= self.since) {
            return Err(ApiError::invalid("until", "must be after since"));
        }
        Ok(())
    }
}

/// Recover: send again, with a fresh retry schedule, every delivery to this endpoint that
/// failed (is dead) among the messages created in the range.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.recover", tag = "Endpoint",
    params(EndpointPath), request_body = TimeRangeIn,
    responses((status = 202, description = "Done; `data.messagesSent` says how many", body = BackgroundTaskOut))
)]
#[post("/app/{app_id}/endpoint/{endpoint_id}/recover")]
async fn recover(
    pool: web::Data<PgPool>,
    path: web::Path<EndpointPath>,
    Json(input): Json<TimeRangeIn>,
) -> ApiResult<HttpResponse> {
    input.check()?;
    let (app_id, e) = endpoint::resolve(&pool, &path).await?;
    let selection = replay::Selection {
        endpoint_id: Some(e.id.clone()),
        since: Some(input.since),
        until: input.until,
        ..Default::default()
    };
    let done = replay::replay_as_task(
        &pool,
        task::TaskKind::EndpointRecover,
        Some(&app_id),
        &selection,
    )
    .await?;
    tracing::info!(endpoint_id = %e.id, sent = done.messages_sent(), "recovered failed messages");
    task_answer(&pool, done).await
}

/// Answers with a task (202).
async fn task_answer(pool: &PgPool, done: task::TaskRow) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Accepted().json(BackgroundTaskOut::with_progress(pool, done).await?))
}

/// Replay missing: send this endpoint every message created in the range that it is
/// subscribed to and was never sent (an endpoint added, or re-subscribed, later).
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.replay-missing", tag = "Endpoint",
    params(EndpointPath), request_body = TimeRangeIn,
    responses((status = 202, description = "Done; `data.messagesSent` says how many", body = BackgroundTaskOut))
)]
#[post("/app/{app_id}/endpoint/{endpoint_id}/replay-missing")]
async fn replay_missing(
    pool: web::Data<PgPool>,
    path: web::Path<EndpointPath>,
    Json(input): Json<TimeRangeIn>,
) -> ApiResult<HttpResponse> {
    input.check()?;
    let (app_id, e) = endpoint::resolve(&pool, &path).await?;
    if e.disabled {
        return Err(ApiError::Conflict(
            "the endpoint is disabled: enable it first (POST …/enable)".into(),
        ));
    }
    let done = replay::replay_missing(&pool, &app_id, &e.id, input.since, input.until).await?;
    tracing::info!(endpoint_id = %e.id, sent = done.messages_sent(), "replayed missing messages");
    task_answer(&pool, done).await
}

/// An example message to send.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExampleIn {
    /// An existing event type.
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    pub event_type: String,
    /// Which of the examples in the event type's newest schema (default the first).
    #[serde(default)]
    #[schema(minimum = 0)]
    example_index: usize,
    /// Herald: the payload to send instead of a schema example.
    #[schema(value_type = Option<Object>)]
    payload: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Send one example message of an event type to this endpoint only.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.send-example", tag = "Endpoint",
    params(EndpointPath), request_body = ExampleIn,
    responses((status = 200, description = "The message sent", body = MessageOut))
)]
#[post("/app/{app_id}/endpoint/{endpoint_id}/send-example")]
async fn send_example(
    pool: web::Data<PgPool>,
    reach: Reach,
    path: web::Path<EndpointPath>,
    Json(input): Json<ExampleIn>,
) -> ApiResult<HttpResponse> {
    let (app_id, e) = endpoint::resolve(&pool, &path).await?;
    Ok(HttpResponse::Ok().json(send_example_to(&pool, &reach, &app_id, &e.id, input).await?))
}

impl ExampleIn {
    /// The first example of `event_type`'s newest schema.
    pub fn of(event_type: &str) -> ExampleIn {
        ExampleIn {
            event_type: event_type.to_string(),
            example_index: 0,
            payload: None,
        }
    }
}

/// Sends an example message of `input.event_type` to one endpoint of `app_id`; returns it.
/// An event type `reach` may not see (its feature flags) is as unknown as a missing one.
pub async fn send_example_to(
    pool: &PgPool,
    reach: &Reach,
    app_id: &str,
    endpoint_id: &str,
    input: ExampleIn,
) -> ApiResult<MessageOut> {
    let schemas = match event_type::visible_to(pool, &input.event_type, reach).await? {
        true => event_type::schemas(pool, &input.event_type).await?,
        false => None,
    };
    let Some(schemas) = schemas else {
        return Err(ApiError::invalid(
            "eventType",
            format!("unknown event type '{}'", input.event_type),
        ));
    };
    let payload = match input.payload {
        Some(p) => serde_json::Value::Object(p),
        None => example_from_schemas(schemas, input.example_index)
            .unwrap_or_else(|| json!({ "type": input.event_type, "example": true })),
    };
    let payload = serde_json::to_string(&payload).map_err(|e| ApiError::Internal(e.into()))?;
    let id =
        message::send_to_endpoint(pool, app_id, endpoint_id, &input.event_type, &payload).await?;
    message::find(pool, app_id, &id, true).await
}

/// The n-th example of the newest schema version: `{"1": {"examples": [...]}}`.
fn example_from_schemas(
    schemas: Option<serde_json::Value>,
    index: usize,
) -> Option<serde_json::Value> {
    let schemas = schemas?;
    let versions = schemas.as_object()?;
    let newest = versions
        .keys()
        .max_by_key(|k| k.parse::<u32>().unwrap_or(0))?;
    versions[newest].get("examples")?.get(index).cloned()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StatsQuery {
    /// Count deliveries of messages created at or after this time.
    #[serde(default, deserialize_with = "query::datetime")]
    #[param(value_type = Option<DateTime<Utc>>)]
    since: Option<DateTime<Utc>>,
    /// ...and before this time.
    #[serde(default, deserialize_with = "query::datetime")]
    #[param(value_type = Option<DateTime<Utc>>)]
    until: Option<DateTime<Utc>>,
}

/// Deliveries to an endpoint by state.
#[derive(Serialize, ToSchema)]
pub struct EndpointStats {
    pub success: i64,
    pub pending: i64,
    pub sending: i64,
    pub fail: i64,
    /// Always 0: Herald never cancels a delivery.
    pub canceled: i64,
}

/// Count an endpoint's deliveries by state.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.get-stats", tag = "Endpoint", params(EndpointPath, StatsQuery),
    responses((status = 200, description = "Counts", body = EndpointStats))
)]
#[get("/app/{app_id}/endpoint/{endpoint_id}/stats")]
async fn stats(
    pool: web::Data<PgPool>,
    path: web::Path<EndpointPath>,
    q: web::Query<StatsQuery>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    Ok(HttpResponse::Ok().json(endpoint_stats(&pool, &e.id, q.since, q.until).await?))
}

/// An endpoint's deliveries by state, of messages created in `[since, until)`.
pub async fn endpoint_stats(
    pool: &PgPool,
    endpoint_id: &str,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> ApiResult<EndpointStats> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status::text, count(*) FROM herald.delivery WHERE endpoint_id = $1 \
         AND ($2::timestamptz IS NULL OR created_at >= $2) AND ($3::timestamptz IS NULL OR created_at < $3) \
         GROUP BY status",
    )
    .bind(endpoint_id)
    .bind(since)
    .bind(until)
    .fetch_all(pool)
    .await?;
    let count = |s: &str| {
        rows.iter()
            .find(|(k, _)| k == s)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    Ok(EndpointStats {
        success: count("succeeded"),
        pending: count("pending"),
        sending: count("sending"),
        fail: count("dead"),
        canceled: 0,
    })
}

/// Herald: re-enable an endpoint that was disabled (by a 410, by failing too long, or
/// through the API). Its dead letters stay dead until replayed.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "herald.endpoint.enable", tag = "Endpoint", params(EndpointPath),
    responses((status = 200, description = "The endpoint, enabled", body = EndpointOut))
)]
#[post("/app/{app_id}/endpoint/{endpoint_id}/enable")]
async fn enable(pool: web::Data<PgPool>, path: web::Path<EndpointPath>) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    Ok(HttpResponse::Ok().json(enable_endpoint(&pool, &e).await?))
}

/// Enables `e`, clearing why it was disabled and its failure streak.
pub async fn enable_endpoint(pool: &PgPool, e: &EndpointOut) -> ApiResult<EndpointOut> {
    let sql = format!(
        "UPDATE herald.endpoint SET disabled = false, disabled_reason = NULL, disabled_cause = NULL, \
         disabled_at = NULL, first_failure_at = NULL, updated_at = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let out: EndpointOut = sqlx::query_as(&sql)
        .bind(&e.id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("endpoint"))?;
    if e.disabled {
        tracing::info!(endpoint_id = %e.id, was = e.disabled_reason.as_deref().unwrap_or(""), "endpoint re-enabled");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_come_from_the_newest_schema() {
        let schemas =
            json!({"1": {"examples": [{"v": 1}]}, "2": {"examples": [{"v": 2}, {"v": 3}]}});
        assert_eq!(
            example_from_schemas(Some(schemas.clone()), 0),
            Some(json!({"v": 2}))
        );
        assert_eq!(
            example_from_schemas(Some(schemas.clone()), 1),
            Some(json!({"v": 3}))
        );
        assert_eq!(example_from_schemas(Some(schemas), 5), None);
        assert_eq!(example_from_schemas(None, 0), None);
    }
}
