//! One endpoint: its settings and state (circuit, success ratio, last failure), its secret,
//! its latest messages, and what can be done to it (disable, enable, rotate the secret,
//! send a test event).

use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{Duration, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use super::endpoints::{catalogue, Choice, EndpointKey, EndpointRow, Tabs};
use crate::{
    api::{
        attempt::{self, AttemptQuery, AttemptsOf},
        delivery_status,
        endpoint::{self, EndpointFields},
        endpoint_circuit, endpoint_ops,
        endpoint_secret::{self, DEFAULT_GRACE_SECONDS},
        pagination::PageQuery,
        query::MessageFilter,
    },
    keyring::Keyring,
    signing::Secret,
    ui::{
        assets::Assets,
        format::{attempt_badge, delivery_badge, percent, short, when, Badge, When},
        page::{html, see_other, Button, Chrome, Notice, Section, UiError},
        viewer::{AppScope, Posted},
    },
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/endpoints/{endpoint_id}", web::get().to(show))
        .route("/endpoints/{endpoint_id}/disable", web::post().to(disable))
        .route("/endpoints/{endpoint_id}/enable", web::post().to(enable))
        .route("/endpoints/{endpoint_id}/rotate", web::post().to(rotate))
        .route("/endpoints/{endpoint_id}/test", web::post().to(test));
}

/// The last failed attempt, as the page shows it.
pub struct Failure {
    pub at: When,
    pub outcome: String,
    pub detail: String,
    pub msg_id: String,
}

/// A recent message to the endpoint.
pub struct Recent {
    pub id: String,
    pub event_type: String,
    pub at: When,
    pub badge: Badge,
}

#[derive(Template)]
#[template(path = "endpoint.html")]
struct EndpointPage {
    chrome: Chrome,
    tabs: Tabs,
    e: EndpointRow,
    channels: String,
    rate_limit: String,
    headers: Vec<(String, String)>,
    circuit: &'static str,
    ratio: String,
    delivered: i64,
    failed: i64,
    waiting: i64,
    failure: Option<Failure>,
    secret: Option<String>,
    recent: Vec<Recent>,
    choices: Vec<Choice>,
    can_write: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    /// `show`: reveal the signing secret.
    secret: Option<String>,
    notice: Option<Notice>,
}

pub async fn show(
    scope: AppScope,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    assets: web::Data<Assets>,
    path: web::Path<EndpointKey>,
    q: web::Query<ShowQuery>,
) -> Result<HttpResponse, UiError> {
    let e = endpoint::find(&pool, &scope.app.id, &path.endpoint_id).await?;
    let day_ago = Utc::now() - Duration::hours(24);
    let stats = endpoint_ops::endpoint_stats(&pool, &e.id, Some(day_ago), None).await?;
    let circuit = endpoint_circuit::circuit_of(&pool, &e.id).await?;
    let failed_query = AttemptQuery {
        status: Some(2),
        ..Default::default()
    };
    let one = PageQuery {
        limit: Some(1),
        ..Default::default()
    };
    let failure = attempt::list_page(
        &pool,
        &scope.app.id,
        AttemptsOf::Endpoint(&e.id),
        &one,
        &failed_query,
        &MessageFilter::default(),
        false,
    )
    .await?
    .data
    .into_iter()
    .next()
    .map(|a| {
        let code = (a.response_status_code != 0).then_some(a.response_status_code);
        Failure {
            at: when(a.timestamp),
            outcome: attempt_badge(false, code).0,
            detail: short(a.error.as_deref().unwrap_or(&a.response), 300),
            msg_id: a.msg_id,
        }
    });
    let ten = PageQuery {
        limit: Some(10),
        ..Default::default()
    };
    let recent = delivery_status::endpoint_messages_page(
        &pool,
        &e.id,
        &ten,
        None,
        &MessageFilter::default(),
        false,
    )
    .await?
    .data
    .into_iter()
    .map(|m| Recent {
        id: m.message.id,
        event_type: m.message.event_type,
        at: when(m.message.timestamp),
        badge: delivery_badge(m.status),
    })
    .collect();
    let secret = match q.secret.as_deref() {
        Some("show") => Some(
            endpoint_secret::current(&pool, &ring, &e.id)
                .await?
                .expose(),
        ),
        _ => None,
    };
    let headers = endpoint_secret::load_headers(&pool, &ring, &e.id).await?;
    let choices = catalogue(&pool, &scope.viewer.reach(), &[]).await?;
    html(&EndpointPage {
        chrome: Chrome::new(&scope.viewer, &assets, e.url.clone(), Section::Endpoints)
            .with_notice(q.notice),
        tabs: Tabs::new(&scope, Section::Endpoints),
        channels: e
            .channels
            .as_ref()
            .map(|c| c.join(", "))
            .unwrap_or_else(|| "every message".into()),
        rate_limit: e
            .throttle_rate
            .map(|r| format!("{r} per second"))
            .unwrap_or_else(|| "the service default".into()),
        headers: headers
            .into_iter()
            .map(
                |(name, value)| match crate::keyring::is_sensitive_header(&name) {
                    true => (name, "(sensitive)".to_string()),
                    false => (name, value),
                },
            )
            .collect(),
        circuit: circuit.state,
        ratio: percent(stats.success, stats.success + stats.fail),
        delivered: stats.success,
        failed: stats.fail,
        waiting: stats.pending + stats.sending,
        e: EndpointRow::from(&e),
        failure,
        secret,
        recent,
        choices,
        can_write: scope.viewer.can_write(),
    })
}

fn back(scope: &AppScope, endpoint_id: &str, notice: Notice) -> HttpResponse {
    see_other(&notice.on(&format!("{}/endpoints/{endpoint_id}", scope.base)))
}

pub async fn disable(
    scope: AppScope,
    pool: web::Data<PgPool>,
    path: web::Path<EndpointKey>,
    _: Posted<Button>,
) -> Result<HttpResponse, UiError> {
    let e = endpoint::find(&pool, &scope.app.id, &path.endpoint_id).await?;
    let id = e.id.clone();
    let mut fields = EndpointFields::of(e);
    fields.disabled = true;
    endpoint::save(&pool, &id, &fields).await?;
    Ok(back(&scope, &id, Notice::EndpointDisabled))
}

pub async fn enable(
    scope: AppScope,
    pool: web::Data<PgPool>,
    path: web::Path<EndpointKey>,
    _: Posted<Button>,
) -> Result<HttpResponse, UiError> {
    let e = endpoint::find(&pool, &scope.app.id, &path.endpoint_id).await?;
    endpoint_ops::enable_endpoint(&pool, &e).await?;
    Ok(back(&scope, &e.id, Notice::EndpointEnabled))
}

pub async fn rotate(
    scope: AppScope,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<EndpointKey>,
    _: Posted<Button>,
) -> Result<HttpResponse, UiError> {
    let e = endpoint::find(&pool, &scope.app.id, &path.endpoint_id).await?;
    endpoint_secret::rotate(
        &pool,
        &ring,
        &e.id,
        &Secret::generate(),
        DEFAULT_GRACE_SECONDS,
    )
    .await?;
    let page = format!("{}/endpoints/{}?secret=show", scope.base, e.id);
    Ok(see_other(&Notice::SecretRotated.on(&page)))
}

#[derive(Deserialize)]
pub struct TestForm {
    event_type: String,
}

pub async fn test(
    scope: AppScope,
    pool: web::Data<PgPool>,
    path: web::Path<EndpointKey>,
    posted: Posted<TestForm>,
) -> Result<HttpResponse, UiError> {
    let e = endpoint::find(&pool, &scope.app.id, &path.endpoint_id).await?;
    let example = endpoint_ops::ExampleIn::of(&posted.form.event_type);
    let reach = scope.viewer.reach();
    let msg = endpoint_ops::send_example_to(&pool, &reach, &scope.app.id, &e.id, example).await?;
    let page = format!("{}/messages/{}", scope.base, msg.id);
    Ok(see_other(&Notice::TestSent.on(&page)))
}
