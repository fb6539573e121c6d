//! `GET /api/v1/openapi.json`: the OpenAPI document of the API Herald serves
//! ([`super::doc`] says how it is derived).

use actix_web::{get, web, HttpResponse};

/// The document, serialized once at start-up.
#[derive(Clone)]
pub struct Document(pub std::sync::Arc<String>);

/// This document.
#[utoipa::path(
    operation_id = "herald.openapi", tag = "Health",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
#[get("/openapi.json")]
pub async fn document(doc: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.as_str().to_owned())
}
