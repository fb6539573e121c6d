//! `/ui/sources`: inbound webhook sources (each with its URL and when it last accepted an
//! event), and one source's recent requests with what became of each (verified, duplicate,
//! refused and why). Sources are made and changed through `/ingest/api/v1`.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

use crate::{
    api::{
        ingest::{
            events::{self, EventFilter, IngestEventOut, IngestOutcome},
            source::{self, IngestSourceOut},
        },
        portal_access::public_base,
    },
    config::groups::Access,
    keyring::Keyring,
    ui::{
        assets::Assets,
        format::{ingest_badge, short, short_id, when, Badge, Pager, When},
        page::{html, Chrome, ListQuery, Section, UiError},
        viewer::Viewer,
    },
};

pub struct SourceRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub app_id: String,
    pub last_event: Option<When>,
}

impl From<IngestSourceOut> for SourceRow {
    fn from(s: IngestSourceOut) -> Self {
        SourceRow {
            kind: s.r#type.as_str().to_string(),
            url: s.ingest_url,
            last_event: s.last_event_at.map(when),
            id: s.id,
            name: s.name,
            app_id: s.app_id,
        }
    }
}

#[derive(Template)]
#[template(path = "sources.html")]
struct SourcesPage {
    chrome: Chrome,
    sources: Vec<SourceRow>,
    pager: Pager,
}

pub async fn list(
    req: HttpRequest,
    viewer: Viewer,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    access: web::Data<Access>,
    assets: web::Data<Assets>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, UiError> {
    let list = source::list_page(&pool, &q.page(None)).await?;
    let pager = Pager::of("/ui/sources", &[], &list, q.iterator.is_none());
    let base = public_base(&req, &access);
    let sources = list
        .data
        .into_iter()
        .map(|s| Ok(SourceRow::from(s.out(&ring, &base)?)))
        .collect::<Result<_, crate::api::error::ApiError>>()?;
    html(&SourcesPage {
        chrome: Chrome::new(&viewer, &assets, "Sources", Section::Sources).with_notice(q.notice),
        sources,
        pager,
    })
}

pub struct EventRow {
    pub id: String,
    pub at: When,
    pub badge: Badge,
    pub event_type: String,
    pub event_key: String,
    pub reason: String,
    pub msg_id: String,
    pub msg_short: String,
    pub body: String,
}

impl From<IngestEventOut> for EventRow {
    fn from(e: IngestEventOut) -> Self {
        let msg_id = e.message_id.unwrap_or_default();
        EventRow {
            id: e.id,
            at: when(e.received_at),
            badge: ingest_badge(e.outcome, e.verified),
            event_type: e.event_type,
            event_key: e.event_key.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            msg_short: short_id(&msg_id),
            msg_id,
            body: short(&e.body, 2000),
        }
    }
}

/// A filter link: its label, its href, and whether it is the one shown.
pub struct OutcomeLink {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "source.html")]
struct SourcePage {
    chrome: Chrome,
    source: SourceRow,
    config: String,
    outcomes: Vec<OutcomeLink>,
    events: Vec<EventRow>,
    pager: Pager,
}

#[derive(Debug, Deserialize)]
pub struct EventQuery {
    iterator: Option<String>,
    outcome: Option<IngestOutcome>,
}

#[allow(clippy::too_many_arguments)] // the state the page needs, each from the app
pub async fn show(
    req: HttpRequest,
    viewer: Viewer,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    access: web::Data<Access>,
    assets: web::Data<Assets>,
    path: web::Path<String>,
    q: web::Query<EventQuery>,
) -> Result<HttpResponse, UiError> {
    let found = source::find(&pool, &path).await?;
    let out = found.out(&ring, &public_base(&req, &access))?;
    let config = serde_json::to_string_pretty(&out.config).unwrap_or_default();
    let here = format!("/ui/sources/{}", out.id);
    let page = ListQuery {
        iterator: q.iterator.clone(),
        notice: None,
    }
    .page(Some(50));
    let filter = EventFilter { outcome: q.outcome };
    let list = events::list_page(&pool, &out.id, &page, &filter).await?;
    let query: Vec<(String, String)> = q
        .outcome
        .map(|o| vec![("outcome".to_string(), o.as_str().to_string())])
        .unwrap_or_default();
    html(&SourcePage {
        chrome: Chrome::new(&viewer, &assets, out.name.clone(), Section::Sources),
        pager: Pager::of(&here, &query, &list, q.iterator.is_none()),
        outcomes: outcome_links(&here, q.outcome),
        events: list.data.into_iter().map(EventRow::from).collect(),
        source: out.into(),
        config,
    })
}

/// "All", then one link per outcome.
fn outcome_links(here: &str, shown: Option<IngestOutcome>) -> Vec<OutcomeLink> {
    let all = OutcomeLink {
        label: "all",
        href: here.to_string(),
        current: shown.is_none(),
    };
    let each = [
        IngestOutcome::Accepted,
        IngestOutcome::Duplicate,
        IngestOutcome::Rejected,
    ]
    .into_iter()
    .map(|o| OutcomeLink {
        label: o.as_str(),
        href: format!("{here}?outcome={}", o.as_str()),
        current: shown == Some(o),
    });
    std::iter::once(all).chain(each).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_links_mark_the_one_shown() {
        let links = outcome_links("/ui/sources/src_1", Some(IngestOutcome::Rejected));
        let labels: Vec<_> = links.iter().map(|l| l.label).collect();
        assert_eq!(labels, ["all", "accepted", "duplicate", "rejected"]);
        let current: Vec<_> = links.iter().filter(|l| l.current).collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].href, "/ui/sources/src_1?outcome=rejected");
        assert!(outcome_links("/x", None)[0].current);
    }
}
