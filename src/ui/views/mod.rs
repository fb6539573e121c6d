//! The pages, and where each is served. The pages of one application (endpoints,
//! messages) and the dead letters are registered twice: in the dashboard (under
//! `/ui/app/{app_id}` and `/ui`) and in the portal (under `/portal`), with the same
//! handlers; [`AppScope`](super::viewer::AppScope) and the viewer's reach decide what they
//! show.

mod apps;
mod dead_letters;
mod endpoint_form;
mod endpoint_page;
mod endpoints;
mod event_types;
mod login;
mod messages;
mod overview;
mod sources;
mod tokens;

use actix_web::{web, HttpResponse};

async fn to_root() -> HttpResponse {
    super::page::see_other("/ui/")
}

/// `/ui/…`.
pub fn dashboard(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(to_root))
        .route("/", web::get().to(overview::page))
        .route("/login", web::get().to(login::form))
        .route("/login", web::post().to(login::sign_in))
        .route("/logout", web::post().to(login::sign_out))
        .route("/apps", web::get().to(apps::list))
        .route("/apps", web::post().to(apps::create))
        .route("/event-types", web::get().to(event_types::list))
        .route(
            "/event-types/{name}/archive",
            web::post().to(event_types::archive),
        )
        .route(
            "/event-types/{name}/restore",
            web::post().to(event_types::restore),
        )
        .route("/sources", web::get().to(sources::list))
        .route("/sources/{source_id}", web::get().to(sources::show))
        .route("/tokens", web::get().to(tokens::list))
        .route("/tokens", web::post().to(tokens::create))
        .route("/tokens/{token_id}/revoke", web::post().to(tokens::revoke))
        .route("/portal-link/{app_id}", web::post().to(apps::portal_link))
        .configure(dead_letters::routes)
        .service(web::scope("/app/{app_id}").configure(application));
}

/// `/portal/…`.
pub fn portal(cfg: &mut web::ServiceConfig) {
    cfg.route("/start", web::get().to(login::portal_link))
        .route("/start", web::post().to(login::portal_start))
        .route("/signed-out", web::get().to(login::portal_signed_out))
        .route("/logout", web::post().to(login::sign_out))
        .route("", web::get().to(endpoints::to_list))
        .route("/", web::get().to(endpoints::to_list))
        .configure(dead_letters::routes)
        .configure(application);
}

/// One application's pages, relative to its base.
fn application(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(endpoints::to_list))
        .route("/", web::get().to(endpoints::to_list))
        .configure(endpoints::routes)
        .configure(messages::routes);
}
