//! Herald: `/api/v1/stats/delivery`, deliveries by minute (what the dashboard's overview
//! charts).

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::{
    application,
    error::{ApiError, ApiResult},
    query,
};
use crate::store::stats::{self, Minute};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(delivery);
}

/// The longest range one answer covers.
const MAX_RANGE: Duration = Duration::hours(24);

/// Which minutes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// From this time (default: an hour before `until`).
    #[serde(default, deserialize_with = "query::datetime")]
    #[param(value_type = Option<DateTime<Utc>>)]
    pub since: Option<DateTime<Utc>>,
    /// Up to this time (default: now).
    #[serde(default, deserialize_with = "query::datetime")]
    #[param(value_type = Option<DateTime<Utc>>)]
    pub until: Option<DateTime<Utc>>,
    /// Only this application's attempts (id or uid); the queue is always the whole queue.
    #[param(max_length = 256)]
    pub app_id: Option<String>,
}

/// One minute.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MinuteOut {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Attempts made (each try of a delivery).
    pub attempts: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// The 95th percentile of the attempts' durations, when there were attempts.
    pub p95_latency_ms: Option<f64>,
    /// Deliveries waiting (due, scheduled or being sent), as sampled in that minute.
    pub queue_depth: Option<i64>,
}

impl From<Minute> for MinuteOut {
    fn from(m: Minute) -> Self {
        MinuteOut {
            minute: m.minute,
            attempts: m.attempts,
            succeeded: m.succeeded,
            failed: m.attempts - m.succeeded,
            p95_latency_ms: m.p95_ms,
            queue_depth: m.queue_depth,
        }
    }
}

/// Deliveries by minute.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatsOut {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Every minute of the range, oldest first.
    pub minutes: Vec<MinuteOut>,
}

impl StatsQuery {
    /// The range asked for, checked: `until` after `since`, at most a day.
    pub fn range(&self, now: DateTime<Utc>) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
        let until = self.until.unwrap_or(now);
        let since = self.since.unwrap_or(until - Duration::hours(1));
        if until <= since {
            return Err(ApiError::Validation(vec![
                super::error::ValidationErrorItem::query("until", "must be after since"),
            ]));
        }
        if until - since > MAX_RANGE {
            return Err(ApiError::Validation(vec![
                super::error::ValidationErrorItem::query(
                    "since",
                    "the range may be at most 24 hours",
                ),
            ]));
        }
        Ok((since, until))
    }
}

/// The statistics `q` asks for.
pub async fn delivery_stats(pool: &PgPool, q: &StatsQuery) -> ApiResult<DeliveryStatsOut> {
    // Whole minutes: the last one is the one under way.
    let now = Utc::now();
    let (since, until) = q.range(now)?;
    let since = since.duration_trunc(Duration::minutes(1)).unwrap_or(since);
    let app_id = match &q.app_id {
        Some(key) => Some(application::resolve(pool, key).await?),
        None => None,
    };
    let minutes = stats::minutes(pool, since, until, app_id.as_deref()).await?;
    Ok(DeliveryStatsOut {
        since,
        until,
        minutes: minutes.into_iter().map(Into::into).collect(),
    })
}

/// Herald: deliveries by minute: attempts, successes, p95 latency and queue depth.
#[utoipa::path(
    operation_id = "herald.stats.delivery", tag = "Statistics", params(StatsQuery),
    responses(
        (status = 200, description = "Every minute of the range", body = DeliveryStatsOut),
        (status = 404, description = "No application has the `app_id` given", body = super::error::HttpErrorOut),
    )
)]
#[get("/stats/delivery")]
async fn delivery(pool: web::Data<PgPool>, q: web::Query<StatsQuery>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(delivery_stats(&pool, &q).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_default_to_the_last_hour_and_are_bounded() {
        let now = Utc::now();
        let (since, until) = StatsQuery::default().range(now).unwrap();
        assert_eq!((until, until - since), (now, Duration::hours(1)));
        let q = |since: Duration, until: Duration| StatsQuery {
            since: Some(now - since),
            until: Some(now - until),
            app_id: None,
        };
        assert!(q(Duration::hours(2), Duration::hours(3))
            .range(now)
            .is_err());
        assert!(q(Duration::hours(25), Duration::zero()).range(now).is_err());
        assert!(q(Duration::hours(24), Duration::zero()).range(now).is_ok());
    }
}
