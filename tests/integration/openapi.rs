//! `openapi.json` describes exactly the routes Herald serves.

use std::collections::BTreeSet;

use crate::support::*;

/// `/api/v1/app/{app_id}` → `/api/v1/app/{}`: parameter names do not matter.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

fn documented() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_uppercase(), shape(path)));
        }
    }
    routes
}

/// The routes the source registers: `.route("/app/{app_id}", web::get()...` in src/api.
fn registered() -> BTreeSet<(String, String)> {
    let sources = [
        include_str!("../../src/api/application.rs"),
        include_str!("../../src/api/event_type.rs"),
        include_str!("../../src/api/endpoint.rs"),
        include_str!("../../src/api/endpoint_ops.rs"),
        include_str!("../../src/api/message.rs"),
        include_str!("../../src/api/attempt.rs"),
        include_str!("../../src/api/dead_letter.rs"),
        include_str!("../../src/api/health.rs"),
        include_str!("../../src/api/mod.rs"),
    ];
    let mut routes = BTreeSet::new();
    for src in sources {
        for part in src.split(".route(").skip(1) {
            // endpoint_ops builds its paths from a prefix: `&format!("{ep}/secret")`.
            let part = part.trim_start().trim_start_matches("&format!(");
            let part = part.replacen("\"{ep}", "\"/app/{app_id}/endpoint/{endpoint_id}", 1);
            let Some(path) = part.strip_prefix('"').and_then(|p| p.split('"').next()) else {
                continue;
            };
            let method = part
                .split("web::")
                .nth(1)
                .and_then(|m| m.split("()").next())
                .unwrap_or("");
            // `/metrics` is served at the root; everything else under `/api/v1`.
            let full = if path == "/metrics" {
                path.to_string()
            } else {
                format!("/api/v1{path}")
            };
            routes.insert((method.to_uppercase(), shape(&full)));
        }
    }
    routes
}

#[actix_rt::test]
async fn the_document_matches_the_router() {
    let (documented, registered) = (documented(), registered());
    assert!(
        registered.len() > 30,
        "found the route registrations: {registered:?}"
    );
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not registered: {unserved:?}"
    );

    // And a running Herald routes every documented (method, path) to a handler.
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    // Every answer is JSON except the metrics text (checked in `operate`).
    for (method, path) in documented.iter().filter(|(_, p)| p != "/metrics") {
        let path = path.replace("{}", "x");
        let body =
            matches!(method.as_str(), "POST" | "PUT" | "PATCH").then(|| serde_json::json!({}));
        let (status, answer) = api.call(method, &path, body).await;
        let unrouted = status == 404
            && answer["detail"]
                .as_str()
                .unwrap_or("")
                .starts_with("no route");
        assert!(!unrouted, "{method} {path} is documented but not routed");
    }
    let (status, served) = api.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        served,
        serde_json::from_str::<serde_json::Value>(include_str!("../../openapi.json")).unwrap()
    );
    t.finish().await;
}
