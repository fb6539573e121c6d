//! `GET /api/v1/openapi.json`: the OpenAPI document of the API Herald actually serves.

use actix_web::HttpResponse;

/// Kept in the repository and checked against the router by the tests.
const DOCUMENT: &str = include_str!("../../openapi.json");

pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT)
}
