//! The OpenAPI document: derived from the handlers as they are registered, served as is,
//! checked in as `openapi.json`, and every path in it routed, with 405 for other methods.

use herald::api::{document, Serving};

use crate::support::*;

fn generated() -> serde_json::Value {
    serde_json::to_value(document(Serving::Api)).unwrap()
}

#[test]
fn the_checked_in_document_is_the_generated_one() {
    let checked_in: serde_json::Value =
        serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    assert!(
        checked_in == generated(),
        "openapi.json is out of date: run `cargo run -- openapi > openapi.json`"
    );
}

/// `(METHOD, path)` of every documented operation.
fn operations(doc: &serde_json::Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.push((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[actix_rt::test]
async fn every_documented_operation_is_routed_and_other_methods_get_405() {
    let doc = generated();
    let ops = operations(&doc);
    assert!(ops.len() > 40, "{ops:?}");
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    for (method, path) in &ops {
        if path == "/metrics" || method == "HEAD" {
            continue; // text, and no body to read
        }
        // Every path parameter is filled with a value naming nothing.
        let concrete: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let body =
            matches!(method.as_str(), "POST" | "PUT" | "PATCH").then(|| serde_json::json!({}));
        let (status, answer) = api.call(method, &concrete, body).await;
        let unrouted = status == 405
            || (status == 404
                && answer["detail"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("no route"));
        assert!(
            !unrouted,
            "{method} {path} is documented but not routed: {status} {answer}"
        );
    }

    // A known path with a method it does not take: 405 naming those it does.
    let (status, answer) = api.call("DELETE", "/api/v1/app", None).await;
    assert_eq!(status, 405, "{answer}");
    let res = reqwest::Client::new()
        .delete(format!("{}/api/v1/event-type", api.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, POST");
    // An unknown path: 404.
    let (status, _) = api.get("/api/v1/nothing-here").await;
    assert_eq!(status, 404);

    let (status, served) = api.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(served, doc);
    t.finish().await;
}
