//! What every page shares: the layout's context ([`Chrome`]), rendering, redirects after a
//! form, and errors as pages that say what to do next.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use askama::Template;

use super::{assets::Assets, viewer::Area, viewer::Viewer};
use crate::api::error::ApiError;

/// One entry of the navigation.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

/// The layout's context: title, navigation, the CSRF token the sign-out form carries, the
/// notice a redirect asked for.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub title: String,
    pub root: &'static str,
    pub css: String,
    pub js: String,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub notice: Option<&'static str>,
    /// "Operator" or "Portal of <app>".
    pub who: String,
    pub read_only: bool,
}

/// The sections of each area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Applications,
    DeadLetters,
    EventTypes,
    Sources,
    Tokens,
    Endpoints,
    Messages,
}

impl Chrome {
    pub fn new(viewer: &Viewer, assets: &Assets, title: impl Into<String>, at: Section) -> Chrome {
        let root = viewer.area.root();
        let item = |label, path: &str, s: Section| NavItem {
            label,
            href: format!("{root}{path}"),
            current: s == at,
        };
        let (nav, who) = match viewer.area {
            Area::Dashboard => (
                vec![
                    item("Overview", "/", Section::Overview),
                    item("Applications", "/apps", Section::Applications),
                    item("Dead letters", "/dead-letters", Section::DeadLetters),
                    item("Event types", "/event-types", Section::EventTypes),
                    item("Sources", "/sources", Section::Sources),
                    item("Tokens", "/tokens", Section::Tokens),
                ],
                "Operator".to_string(),
            ),
            Area::Portal => (
                vec![
                    item("Endpoints", "/endpoints", Section::Endpoints),
                    item("Messages", "/messages", Section::Messages),
                    item("Dead letters", "/dead-letters", Section::DeadLetters),
                ],
                "Webhook portal".to_string(),
            ),
        };
        Chrome {
            title: title.into(),
            root,
            css: assets.css_url(),
            js: assets.js_url(),
            csrf: viewer.csrf.clone(),
            nav,
            notice: None,
            who,
            read_only: !viewer.can_write(),
        }
    }

    pub fn with_notice(mut self, notice: Option<Notice>) -> Chrome {
        self.notice = notice.map(Notice::text);
        self
    }
}

/// What a redirect after a form says on the page it lands on (`?notice=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Notice {
    AppCreated,
    EndpointCreated,
    EndpointSaved,
    EndpointDisabled,
    EndpointEnabled,
    SecretRotated,
    TestSent,
    ResendQueued,
    Replayed,
    EventTypeArchived,
    EventTypeRestored,
    TokenRevoked,
}

impl Notice {
    pub fn text(self) -> &'static str {
        match self {
            Notice::AppCreated => "Application created.",
            Notice::EndpointCreated => "Endpoint created. Its signing secret is below.",
            Notice::EndpointSaved => "Endpoint saved.",
            Notice::EndpointDisabled => "Endpoint disabled: nothing is sent to it until it is enabled.",
            Notice::EndpointEnabled => "Endpoint enabled.",
            Notice::SecretRotated => {
                "Secret rotated. The previous secret keeps signing for 24 hours, beside the new one."
            }
            Notice::TestSent => "Test event sent: its attempt appears below within seconds.",
            Notice::ResendQueued => "Queued: the attempt appears below within seconds.",
            Notice::Replayed => "Replayed: the delivery is queued again, with a fresh schedule.",
            Notice::EventTypeArchived => "Event type archived.",
            Notice::EventTypeRestored => "Event type restored.",
            Notice::TokenRevoked => "Token revoked: it is refused from now on.",
        }
    }

    /// `path` with this notice.
    pub fn on(self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        let name = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        format!("{path}{sep}notice={name}")
    }
}

/// `?notice=…` on a page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<Notice>,
}

/// The query of a list page: which page, and the notice a redirect left.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    pub iterator: Option<String>,
    pub notice: Option<Notice>,
}

impl ListQuery {
    /// The API's page request for it (`limit`: the API's default when `None`).
    pub fn page(&self, limit: Option<i64>) -> crate::api::pagination::PageQuery {
        crate::api::pagination::PageQuery {
            iterator: self.iterator.clone(),
            limit,
            order: None,
        }
    }
}

/// The body of a form that carries nothing but its CSRF token (a button).
#[derive(Debug, serde::Deserialize)]
pub struct Button {}

/// A rendered page.
pub fn html(t: &impl Template) -> Result<HttpResponse, UiError> {
    let body = t.render().map_err(UiError::Render)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body))
}

/// After a form: see the page that shows the result (303, so a reload does not post again).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("location", location))
        .finish()
}

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No session, or it ended: sign in again.
    #[error("sign in to continue")]
    SignIn(Area),
    #[error("this form has expired: reload the page and try again")]
    Csrf,
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("rendering failed: {0}")]
    Render(askama::Error),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    /// Where the page moves on to by itself.
    refresh: Option<&'a str>,
    status: u16,
    reason: &'a str,
    detail: String,
    next: &'a str,
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            // (The dashboard answers with a redirect to its sign-in page; the status here is
            // what the request log classifies it by.)
            UiError::SignIn(_) => StatusCode::UNAUTHORIZED,
            UiError::Csrf => StatusCode::FORBIDDEN,
            UiError::Api(e) => e.status_code(),
            UiError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (detail, next) = match self {
            UiError::SignIn(Area::Dashboard) => (
                "Sign in to continue.".to_string(),
                "Sign in with an operator token (the sign-in page opens by itself).",
            ),
            UiError::SignIn(Area::Portal) => (
                "Your portal session has ended.".to_string(),
                "Ask for a new portal link: each link signs in once.",
            ),
            UiError::Csrf => (
                self.to_string(),
                "Go back, reload the page, and submit again.",
            ),
            UiError::Api(ApiError::Validation(items)) => (
                items
                    .iter()
                    .map(|i| format!("{}: {}", i.loc.last().cloned().unwrap_or_default(), i.msg))
                    .collect::<Vec<_>>()
                    .join("; "),
                "Go back and correct the form.",
            ),
            UiError::Api(ApiError::NotFound(d)) => (
                format!("{d}."),
                "It may have been deleted, or the link is wrong: start again from the list.",
            ),
            UiError::Api(ApiError::Unavailable(..)) => (
                "The database is unavailable or too busy.".into(),
                "Wait a few seconds and reload.",
            ),
            UiError::Api(ApiError::Internal(e)) => {
                tracing::error!(error = %format!("{e:#}"), "page failed");
                (
                    "Something went wrong on Herald's side (it is in Herald's log).".into(),
                    "Reload; if it persists, report it with the time it happened.",
                )
            }
            UiError::Api(e) => (e.to_string(), "Go back and try again."),
            UiError::Render(e) => {
                tracing::error!(error = %e, "page failed to render");
                (
                    "The page could not be drawn (it is in Herald's log).".into(),
                    "Reload; if it persists, report it with the time it happened.",
                )
            }
        };
        let page = ErrorPage {
            // Not a redirect: a 4xx is what the request log files a signed-out visit under.
            refresh: matches!(self, UiError::SignIn(Area::Dashboard)).then_some("/ui/login"),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            detail,
            next,
        };
        HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(page.render().unwrap_or_else(|_| "error".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_ride_on_redirects() {
        assert_eq!(
            Notice::EndpointCreated.on("/portal/endpoints/ep_1"),
            "/portal/endpoints/ep_1?notice=endpoint-created"
        );
        assert_eq!(
            Notice::Replayed.on("/ui/dead-letters?app=a"),
            "/ui/dead-letters?app=a&notice=replayed"
        );
        let q: NoticeQuery = serde_html_form::from_str("notice=secret-rotated").unwrap();
        assert_eq!(q.notice, Some(Notice::SecretRotated));
        assert!(serde_html_form::from_str::<NoticeQuery>("notice=<script>").is_err());
    }
}
