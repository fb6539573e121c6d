//! The web UI, rendered on the server and embedded in the binary: the operators' dashboard
//! at `/ui/` and the partners' portal at `/portal/` (one application, opened with a link
//! from app-portal-access). Every page works without script; the one small script only
//! shows times in the browser's time zone and asks before destructive forms.
//!
//! * [`views`]: the pages, one module per subject. They call the same functions as the
//!   API handlers (`api::endpoint::list_page`, `api::dead_letter::replay_bulk_of`, …): no
//!   second copy of a query.
//! * [`viewer`]: who is looking (the session behind the cookie, the token behind the
//!   session), which application (`AppScope`), and posted forms with their CSRF check.
//! * [`session`]: sessions, stored hashed.
//! * [`page`]: the layout's context, rendering, redirects, error pages.
//! * [`chart`], [`format`]: what the templates show, computed (and unit-tested) here.
//! * [`assets`]: the stylesheet and script, served under content-hashed names.
//!
//! Templates live in `templates/` (askama: compiled in, checked against these types).

pub mod assets;
pub mod chart;
pub mod format;
pub mod page;
pub mod session;
pub mod viewer;
mod views;

use actix_web::{middleware::DefaultHeaders, web};

use viewer::Area;

/// No script or style but Herald's own files; no framing; forms post only to Herald.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

fn page_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("content-security-policy", CSP))
        .add(("x-content-type-options", "nosniff"))
        .add(("x-frame-options", "DENY"))
        .add(("referrer-policy", "same-origin"))
        .add(("cache-control", "no-store"))
}

/// Registers the dashboard, the portal and their assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(assets::Assets::default()))
        .route("/ui/static/{name}", web::get().to(assets::serve))
        .service(
            web::scope("/ui")
                .app_data(web::Data::new(Area::Dashboard))
                .wrap(page_headers())
                .configure(views::dashboard),
        )
        .service(
            web::scope("/portal")
                .app_data(web::Data::new(Area::Portal))
                .wrap(page_headers())
                .configure(views::portal),
        );
}
