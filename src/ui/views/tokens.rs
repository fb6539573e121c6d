//! `/ui/tokens`: tokens made at run time: list, make (shown once), revoke.

use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

use crate::{
    access::token::{self, TokenRow},
    api::{
        error::ApiError,
        pagination::PageQuery,
        token::{create_token, list_page, ApiTokenIn, TokenFilter},
    },
    ui::{
        assets::Assets,
        format::{when, Pager, When},
        page::{html, see_other, Button, Chrome, ListQuery, Notice, Section, UiError},
        viewer::{Posted, Viewer},
    },
};

pub struct TokenLine {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub app_id: String,
    pub state: &'static str,
    pub created: When,
    pub expires: Option<When>,
    pub last_used: Option<When>,
    pub live: bool,
}

impl From<TokenRow> for TokenLine {
    fn from(t: TokenRow) -> Self {
        let live = t.is_live(chrono::Utc::now());
        TokenLine {
            state: if t.revoked_at.is_some() {
                "revoked"
            } else if live {
                "live"
            } else {
                "expired"
            },
            live,
            id: t.id,
            name: t.name,
            kind: t.kind.as_str(),
            app_id: t.app_id.unwrap_or_default(),
            created: when(t.created_at),
            expires: t.expires_at.map(when),
            last_used: t.last_used_at.map(when),
        }
    }
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    chrome: Chrome,
    tokens: Vec<TokenLine>,
    pager: Pager,
    /// A token just made: shown this once.
    made: Option<String>,
}

async fn page(
    viewer: &Viewer,
    pool: &PgPool,
    assets: &Assets,
    iterator: Option<String>,
    made: Option<String>,
    notice: Option<Notice>,
) -> Result<HttpResponse, UiError> {
    let first = iterator.is_none();
    let q = PageQuery {
        iterator,
        ..Default::default()
    };
    let list = list_page(pool, &q, &TokenFilter::default()).await?;
    html(&TokensPage {
        chrome: Chrome::new(viewer, assets, "Tokens", Section::Tokens).with_notice(notice),
        pager: Pager::of("/ui/tokens", &[], &list, first),
        tokens: list.data.into_iter().map(TokenLine::from).collect(),
        made,
    })
}

pub async fn list(
    viewer: Viewer,
    pool: web::Data<PgPool>,
    assets: web::Data<Assets>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, UiError> {
    page(&viewer, &pool, &assets, q.iterator.clone(), None, q.notice).await
}

#[derive(Deserialize)]
pub struct NewToken {
    name: String,
    #[serde(default)]
    app_id: String,
    /// Days; empty: until revoked.
    #[serde(default)]
    expires_days: String,
    #[serde(default)]
    read_only: Option<String>,
}

impl NewToken {
    fn to_api(&self) -> Result<ApiTokenIn, ApiError> {
        let expiry =
            match self.expires_days.trim() {
                "" => None,
                d => Some(
                    d.parse::<u64>().ok().filter(|d| *d > 0).ok_or_else(|| {
                        ApiError::invalid("expiry", "must be a whole number of days")
                    })? * 86_400,
                ),
            };
        let app = self.app_id.trim();
        Ok(ApiTokenIn {
            name: self.name.clone(),
            app_id: (!app.is_empty()).then(|| app.to_string()),
            expiry,
            read_only: self.read_only.is_some(),
            feature_flags: None,
        })
    }
}

/// The new token is shown in this answer (never in a URL), once.
pub async fn create(
    pool: web::Data<PgPool>,
    assets: web::Data<Assets>,
    posted: Posted<NewToken>,
) -> Result<HttpResponse, UiError> {
    let made = create_token(&pool, &posted.form.to_api()?).await?;
    page(&posted.viewer, &pool, &assets, None, Some(made.token), None).await
}

#[derive(Debug, Deserialize)]
pub struct TokenKey {
    token_id: String,
}

pub async fn revoke(
    pool: web::Data<PgPool>,
    path: web::Path<TokenKey>,
    _: Posted<Button>,
) -> Result<HttpResponse, UiError> {
    token::revoke(&pool, &path.token_id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::not_found("token"))?;
    Ok(see_other(&Notice::TokenRevoked.on("/ui/tokens")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_the_api_request() {
        let t = NewToken {
            name: "shop backend".into(),
            app_id: " shop ".into(),
            expires_days: "30".into(),
            read_only: Some("1".into()),
        };
        let api = t.to_api().unwrap();
        assert_eq!(api.app_id.as_deref(), Some("shop"));
        assert_eq!(api.expiry, Some(30 * 86_400));
        assert!(api.read_only);
        let never = NewToken {
            expires_days: String::new(),
            app_id: String::new(),
            read_only: None,
            ..t
        };
        assert_eq!(never.to_api().unwrap().expiry, None);
        assert!(NewToken {
            expires_days: "soon".into(),
            ..never
        }
        .to_api()
        .is_err());
    }
}
