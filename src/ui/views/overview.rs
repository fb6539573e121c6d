//! `/ui/`: the last hour in charts, what waits, what needs an operator, and the actors.

use actix_web::{web, HttpResponse};
use askama::Template;
use sqlx::PgPool;

use crate::{
    api::{
        endpoint_circuit::{self, Troubled},
        error::ApiError,
        health::{self, Readiness},
        stats::{delivery_stats, MinuteOut, StatsQuery},
    },
    store::stats::queue_depth,
    ui::{
        assets::Assets,
        chart::{line, Chart, Unit},
        format::{when, When},
        page::{html, Chrome, Section, UiError},
        viewer::Viewer,
    },
};

/// An endpoint that needs attention, as the page lists it.
pub struct Attention {
    pub href: String,
    pub app_name: String,
    pub url: String,
    pub what: String,
    pub since: Option<When>,
}

/// One actor's line.
pub struct ActorLine {
    pub name: String,
    pub ok: bool,
    pub heartbeat_ms: u64,
    pub restarts: u32,
    pub in_flight: usize,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    charts: Vec<Chart>,
    since: When,
    until: When,
    dead: i64,
    waiting: i64,
    attention: Vec<Attention>,
    database_ok: bool,
    actors: Vec<ActorLine>,
    runs_dispatcher: bool,
}

/// The four charts of a range's minutes.
pub fn charts(minutes: &[MinuteOut]) -> Vec<Chart> {
    let rate: Vec<Option<f64>> = minutes.iter().map(|m| Some(m.attempts as f64)).collect();
    let ratio: Vec<Option<f64>> = minutes
        .iter()
        .map(|m| (m.attempts > 0).then(|| m.succeeded as f64 * 100.0 / m.attempts as f64))
        .collect();
    let p95: Vec<Option<f64>> = minutes.iter().map(|m| m.p95_latency_ms).collect();
    let depth: Vec<Option<f64>> = minutes
        .iter()
        .map(|m| m.queue_depth.map(|d| d as f64))
        .collect();
    vec![
        line("Delivery rate", Unit::PerMinute, &rate, None),
        line("Success ratio", Unit::Percent, &ratio, Some(100.0)),
        line("p95 attempt latency", Unit::Milliseconds, &p95, None),
        line("Queue depth", Unit::Deliveries, &depth, None),
    ]
}

fn attention(t: Troubled) -> Attention {
    let what = match (&t.disabled_reason, t.open_until) {
        (Some(reason), _) => format!("disabled: {reason}"),
        (None, Some(_)) => "circuit open".to_string(),
        (None, None) => "disabled".to_string(),
    };
    Attention {
        href: format!("/ui/app/{}/endpoints/{}", t.app_id, t.endpoint_id),
        app_name: t.app_name,
        url: t.url,
        what,
        since: t.disabled_at.or(t.open_until).map(when),
    }
}

pub async fn page(
    viewer: Viewer,
    pool: web::Data<PgPool>,
    readiness: web::Data<Readiness>,
    assets: web::Data<Assets>,
) -> Result<HttpResponse, UiError> {
    let stats = delivery_stats(&pool, &StatsQuery::default()).await?;
    let depth = queue_depth(&pool).await.map_err(ApiError::from)?;
    let troubled = endpoint_circuit::troubled(&pool, 20).await?;
    let (_, health) = health::report(&pool, &readiness).await;
    let actors = health
        .actors
        .as_ref()
        .map(|a| {
            a.iter()
                .map(|(name, actor)| ActorLine {
                    name: name.clone(),
                    ok: actor.status == health::Status::Ok,
                    heartbeat_ms: actor.heartbeat_age_ms,
                    restarts: actor.restarts,
                    in_flight: actor.in_flight,
                })
                .collect()
        })
        .unwrap_or_default();
    html(&OverviewPage {
        chrome: Chrome::new(&viewer, &assets, "Overview", Section::Overview),
        charts: charts(&stats.minutes),
        since: when(stats.since),
        until: when(stats.until),
        dead: depth.dead,
        waiting: depth.due + depth.scheduled + depth.leased,
        attention: troubled.into_iter().map(attention).collect(),
        database_ok: health.database.status == health::Status::Ok,
        runs_dispatcher: health.actors.is_some(),
        actors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn minutes_become_four_charts() {
        let m = |attempts, succeeded, p95: Option<f64>, depth: Option<i64>| MinuteOut {
            minute: Utc::now(),
            attempts,
            succeeded,
            failed: attempts - succeeded,
            p95_latency_ms: p95,
            queue_depth: depth,
        };
        let c = charts(&[m(10, 5, Some(20.0), Some(4)), m(0, 0, None, None)]);
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].latest, "0/min");
        assert_eq!(c[1].latest, "50%", "a minute without attempts has no ratio");
        assert_eq!(c[1].path, "M0.0 60.0");
        assert_eq!(c[2].latest, "20 ms");
        assert_eq!(c[3].latest, "4");
    }
}
