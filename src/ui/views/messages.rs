//! An application's messages: search (event type, `eventId`, delivery status at an
//! endpoint, time range) and one message with its payload and, per endpoint, every attempt.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use super::endpoints::{catalogue, Choice, Tabs};
use crate::{
    api::{
        attempt::{self, AttemptOut, AttemptQuery, AttemptsOf},
        delivery_status,
        endpoint::{self, EndpointOut},
        error::{ApiError, ApiResult},
        message::{self, MessageOut},
        pagination::{ListResponse, PageQuery},
        query::{parse_datetime, MessageFilter},
    },
    ui::{
        assets::Assets,
        format::{attempt_badge, delivery_badge, pretty_json, when, Badge, Pager, When},
        page::{html, see_other, Button, Chrome, Notice, NoticeQuery, Section, UiError},
        viewer::{AppScope, Posted},
    },
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/messages", web::get().to(search))
        .route("/messages/{msg_id}", web::get().to(show))
        .route(
            "/messages/{msg_id}/resend/{endpoint_id}",
            web::post().to(resend),
        );
}

/// The search form, as the query string carries it.
#[derive(Debug, Default, Deserialize)]
pub struct Search {
    #[serde(default)]
    pub event_type: String,
    #[serde(default)]
    pub event_id: String,
    /// Svix's codes: 0 delivered, 1 pending, 2 dead, 3 sending; empty: any.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub endpoint: String,
    /// `2026-11-29T10:00` (UTC), as a datetime-local input sends it.
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    pub iterator: Option<String>,
}

/// What a search runs.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// One message by its `eventId`.
    ByEventId(String),
    /// An endpoint's messages, with their delivery status there.
    AtEndpoint {
        endpoint: String,
        status: Option<i16>,
    },
    /// The application's messages.
    All,
}

impl Search {
    /// What to run, and the filters on it; a delivery status needs an endpoint (a message
    /// has one status per endpoint).
    pub fn plan(&self) -> Result<(Plan, MessageFilter), ApiError> {
        let time = |name: &str, raw: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
            match raw.trim() {
                "" => Ok(None),
                t => parse_datetime(t)
                    .map(Some)
                    .map_err(|e| ApiError::invalid(name, e)),
            }
        };
        let status = match self.status.trim() {
            "" => None,
            s => Some(
                s.parse::<i16>()
                    .ok()
                    .filter(|s| (0..=3).contains(s))
                    .ok_or_else(|| ApiError::invalid("status", "must be 0 to 3"))?,
            ),
        };
        let filter = MessageFilter {
            event_types: (!self.event_type.trim().is_empty())
                .then(|| vec![self.event_type.trim().to_string()]),
            after: time("since", &self.since)?,
            before: time("until", &self.until)?,
            ..Default::default()
        };
        let plan = match (self.event_id.trim(), self.endpoint.trim(), status) {
            (id, _, _) if !id.is_empty() => Plan::ByEventId(id.to_string()),
            ("", "", Some(_)) => {
                return Err(ApiError::invalid(
                    "status",
                    "choose an endpoint too: a message has a delivery status at each endpoint",
                ))
            }
            (_, "", None) => Plan::All,
            (_, endpoint, status) => Plan::AtEndpoint {
                endpoint: endpoint.to_string(),
                status,
            },
        };
        Ok((plan, filter))
    }

    fn pairs(&self) -> Vec<(String, String)> {
        [
            ("event_type", &self.event_type),
            ("event_id", &self.event_id),
            ("status", &self.status),
            ("endpoint", &self.endpoint),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }
}

pub struct MessageRow {
    pub id: String,
    pub event_type: String,
    pub event_id: String,
    pub at: When,
    pub badge: Option<Badge>,
}

impl MessageRow {
    fn of(m: MessageOut, badge: Option<Badge>) -> MessageRow {
        MessageRow {
            id: m.id,
            event_type: m.event_type,
            event_id: m.event_id.unwrap_or_default(),
            at: when(m.timestamp),
            badge,
        }
    }
}

#[derive(Template)]
#[template(path = "messages.html")]
struct SearchPage {
    chrome: Chrome,
    tabs: Tabs,
    search: Search,
    problem: Option<String>,
    choices: Vec<Choice>,
    endpoints: Vec<EndpointOut>,
    rows: Vec<MessageRow>,
    pager: Pager,
}

async fn run(
    pool: &PgPool,
    app_id: &str,
    plan: Plan,
    filter: &MessageFilter,
    page: &PageQuery,
) -> ApiResult<ListResponse<MessageRow>> {
    Ok(match plan {
        Plan::ByEventId(key) => {
            let found = match message::find(pool, app_id, &key, false).await {
                Ok(m) => vec![MessageRow::of(m, None)],
                Err(ApiError::NotFound(_)) => vec![],
                Err(e) => return Err(e),
            };
            ListResponse {
                data: found,
                iterator: None,
                prev_iterator: None,
                done: true,
            }
        }
        Plan::AtEndpoint { endpoint, status } => {
            let e = endpoint::find(pool, app_id, &endpoint).await?;
            let list =
                delivery_status::endpoint_messages_page(pool, &e.id, page, status, filter, false)
                    .await?;
            list.map(|m| MessageRow::of(m.message, Some(delivery_badge(m.status))))
        }
        Plan::All => {
            let list = message::list_page(pool, app_id, page, filter, false).await?;
            list.map(|m| MessageRow::of(m, None))
        }
    })
}

pub async fn search(
    scope: AppScope,
    pool: web::Data<PgPool>,
    assets: web::Data<Assets>,
    q: web::Query<Search>,
) -> Result<HttpResponse, UiError> {
    let page = PageQuery {
        iterator: q.iterator.clone(),
        ..Default::default()
    };
    let (rows, problem) = match q.plan() {
        Ok((plan, filter)) => match run(&pool, &scope.app.id, plan, &filter, &page).await {
            Ok(rows) => (rows, None),
            Err(ApiError::NotFound(d)) => (empty(), Some(format!("{d}: pick another"))),
            Err(e) => return Err(e.into()),
        },
        Err(ApiError::Validation(items)) => (
            empty(),
            Some(
                items
                    .into_iter()
                    .map(|i| format!("{}: {}", i.loc.last().cloned().unwrap_or_default(), i.msg))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ),
        Err(e) => return Err(e.into()),
    };
    let choices = catalogue(&pool, &scope.viewer.reach(), &[]).await?;
    let all = PageQuery {
        limit: Some(250),
        ..Default::default()
    };
    let endpoints = endpoint::list_page(&pool, &scope.app.id, &all, true)
        .await?
        .data;
    let path = format!("{}/messages", scope.base);
    html(&SearchPage {
        chrome: Chrome::new(&scope.viewer, &assets, "Messages", Section::Messages),
        tabs: Tabs::new(&scope, Section::Messages),
        pager: Pager::of(&path, &q.pairs(), &rows, q.iterator.is_none()),
        rows: rows.data,
        search: q.into_inner(),
        problem,
        choices,
        endpoints,
    })
}

fn empty<T>() -> ListResponse<T> {
    ListResponse {
        data: vec![],
        iterator: None,
        prev_iterator: None,
        done: true,
    }
}

/// One attempt, as the message page shows it.
pub struct AttemptLine {
    pub at: When,
    pub duration_ms: i64,
    pub outcome: String,
    pub class: &'static str,
    pub response: String,
    pub error: String,
    pub manual: bool,
}

impl From<AttemptOut> for AttemptLine {
    fn from(a: AttemptOut) -> Self {
        let code = (a.response_status_code != 0).then_some(a.response_status_code);
        let (outcome, class) = attempt_badge(a.status == 0, code);
        AttemptLine {
            at: when(a.timestamp),
            duration_ms: a.response_duration_ms,
            outcome,
            class,
            response: a.response,
            error: a.error.unwrap_or_default(),
            manual: a.trigger_type == 1,
        }
    }
}

/// A message's delivery to one endpoint.
pub struct Destination {
    pub endpoint_id: String,
    pub url: String,
    pub badge: Badge,
    pub next_attempt: Option<When>,
    pub attempts: Vec<AttemptLine>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    chrome: Chrome,
    tabs: Tabs,
    msg_id: String,
    event_type: String,
    event_id: String,
    at: When,
    payload: String,
    destinations: Vec<Destination>,
    /// Something is about to happen: the page reloads itself.
    refresh: bool,
    can_write: bool,
}

#[derive(Debug, Deserialize)]
pub struct MsgKey {
    msg_id: String,
}

pub async fn show(
    req: HttpRequest,
    scope: AppScope,
    pool: web::Data<PgPool>,
    assets: web::Data<Assets>,
    path: web::Path<MsgKey>,
) -> Result<HttpResponse, UiError> {
    let notice = web::Query::<NoticeQuery>::from_query(req.query_string())
        .map(|q| q.into_inner().notice)
        .unwrap_or_default();
    let msg = message::find(&pool, &scope.app.id, &path.msg_id, true).await?;
    let all = PageQuery {
        limit: Some(250),
        ..Default::default()
    };
    let destinations = delivery_status::destinations_page(&pool, &msg.id, &all).await?;
    let attempts = attempt::list_page(
        &pool,
        &scope.app.id,
        AttemptsOf::Message(&msg.id, None),
        &all,
        &AttemptQuery::default(),
        &MessageFilter::default(),
        false,
    )
    .await?
    .data;
    let soon = Utc::now() + Duration::seconds(60);
    let refresh = destinations
        .data
        .iter()
        .any(|d| d.status == 3 || (d.status == 1 && d.next_attempt.is_some_and(|t| t <= soon)));
    let mut by_endpoint: Vec<Destination> = destinations
        .data
        .into_iter()
        .map(|d| Destination {
            badge: delivery_badge(d.status),
            next_attempt: d.next_attempt.map(when),
            endpoint_id: d.endpoint.id,
            url: d.endpoint.url,
            attempts: vec![],
        })
        .collect();
    for a in attempts {
        if let Some(d) = by_endpoint
            .iter_mut()
            .find(|d| d.endpoint_id == a.endpoint_id)
        {
            d.attempts.push(a.into());
        }
    }
    html(&MessagePage {
        chrome: Chrome::new(
            &scope.viewer,
            &assets,
            format!("Message {}", msg.id),
            Section::Messages,
        )
        .with_notice(notice),
        tabs: Tabs::new(&scope, Section::Messages),
        payload: pretty_json(msg.payload.get()),
        event_type: msg.event_type,
        event_id: msg.event_id.unwrap_or_default(),
        at: when(msg.timestamp),
        msg_id: msg.id,
        destinations: by_endpoint,
        refresh,
        can_write: scope.viewer.can_write(),
    })
}

#[derive(Debug, Deserialize)]
pub struct ResendKey {
    msg_id: String,
    endpoint_id: String,
}

pub async fn resend(
    scope: AppScope,
    pool: web::Data<PgPool>,
    path: web::Path<ResendKey>,
    _: Posted<Button>,
) -> Result<HttpResponse, UiError> {
    delivery_status::resend_to(&pool, &scope.app.id, &path.msg_id, &path.endpoint_id).await?;
    let page = format!("{}/messages/{}", scope.base, path.msg_id);
    Ok(see_other(&Notice::ResendQueued.on(&page)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(q: &str) -> Search {
        serde_html_form::from_str(q).unwrap()
    }

    #[test]
    fn a_search_picks_its_query() {
        let (plan, f) = search("event_type=order.paid&status=&endpoint=")
            .plan()
            .unwrap();
        assert_eq!(plan, Plan::All);
        assert_eq!(f.event_types, Some(vec!["order.paid".to_string()]));
        let (plan, _) = search("event_id=ord-7&endpoint=ep_1&status=2")
            .plan()
            .unwrap();
        assert_eq!(plan, Plan::ByEventId("ord-7".into()));
        let (plan, f) = search("endpoint=ep_1&status=2&since=2026-11-29T10:00")
            .plan()
            .unwrap();
        assert_eq!(
            plan,
            Plan::AtEndpoint {
                endpoint: "ep_1".into(),
                status: Some(2)
            }
        );
        assert_eq!(f.after.unwrap().to_rfc3339(), "2026-11-29T10:00:00+00:00");
    }

    #[test]
    fn a_status_needs_an_endpoint_and_bad_values_are_named() {
        assert!(search("status=2").plan().is_err());
        assert!(search("endpoint=ep_1&status=9").plan().is_err());
        assert!(search("since=yesterday").plan().is_err());
    }
}
