//! API: authentication, errors, applications, event types, pagination.

use serde_json::json;

use crate::support::*;

#[actix_rt::test]
async fn authentication_is_required_except_for_health() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    let (s, body) = api.send("GET", "/api/v1/app", None, &[]).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (401, Some("authentication_failed"))
    );
    for header in [
        "Bearer wrong-token-123456",
        "Basic ZGV2OnRva2Vu",
        "dev-token-change-me",
        "Bearer ",
    ] {
        let (s, body) = api
            .send("GET", "/api/v1/app", None, &[("authorization", header)])
            .await;
        assert_eq!(s, 401, "{header}: {body}");
    }
    assert_eq!(api.send("GET", "/api/v1/health", None, &[]).await.0, 200);
    assert_eq!(
        api.send("GET", "/api/v1/health/ping", None, &[]).await.0,
        204
    );
    assert_eq!(
        api.send("GET", "/api/v1/openapi.json", None, &[]).await.0,
        200
    );
    // Unknown routes answer JSON too, after authentication.
    assert_eq!(api.send("GET", "/api/v1/nope", None, &[]).await.0, 401);
    let (s, body) = api.get("/api/v1/nope").await;
    assert_eq!((s, body["code"].as_str()), (404, Some("not_found")));
    t.finish().await;
}

#[actix_rt::test]
async fn bad_bodies_get_400_413_and_422() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api"), ("HERALD_MAX_PAYLOAD_BYTES", "1000")]).await;
    let api = t.api();
    let auth = format!("Bearer {TOKEN}");
    let headers = [("authorization", auth.as_str())];
    for malformed in [
        &b"{\"name\": "[..],
        b"not json",
        b"",
        b"{\"name\": \"a\"} trailing",
    ] {
        let (s, body) = api
            .send("POST", "/api/v1/app", Some(malformed.to_vec()), &headers)
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (400, Some("bad_request")),
            "{body}"
        );
    }
    let (s, body) = api.post("/api/v1/app", json!({"name": 5})).await;
    assert_eq!(s, 422);
    assert_eq!(invalid_fields(&body), vec!["body.name"]);
    let (s, body) = api.post("/api/v1/app", json!({"uid": "x"})).await;
    assert_eq!(s, 422, "{body}");
    let big = json!({"name": "x".repeat(2000)});
    let (s, body) = api.post("/api/v1/app", big).await;
    assert_eq!((s, body["code"].as_str()), (413, Some("payload_too_large")));
    let (s, body) = api.get("/api/v1/app?limit=abc").await;
    assert_eq!(s, 422, "{body}");
    // Valid JSON that PostgreSQL cannot store is the caller's problem, not a 500.
    let (s, body) = api.post("/api/v1/app", json!({"name": "a\u{0}b"})).await;
    assert_eq!(s, 422, "{body}");
    let (s, body) = api
        .post(
            "/api/v1/app",
            json!({"name": "ok", "metadata": {"k": "v\u{0}"}}),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    t.finish().await;
}

#[actix_rt::test]
async fn applications_crud() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    let app = api
        .expect(
            201,
            "POST",
            "/api/v1/app",
            Some(json!({"name": "Acme", "uid": "acme", "metadata": {"tier": "gold"}})),
        )
        .await;
    let id = app["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("app_"));
    assert_eq!(app["metadata"], json!({"tier": "gold"}));
    for field in ["createdAt", "updatedAt"] {
        assert!(app[field].as_str().unwrap().ends_with('Z'), "{app}");
    }

    let (s, body) = api
        .post("/api/v1/app", json!({"name": "Again", "uid": "acme"}))
        .await;
    assert_eq!((s, body["code"].as_str()), (409, Some("conflict")));
    let same = api
        .expect(
            200,
            "POST",
            "/api/v1/app?get_if_exists=true",
            Some(json!({"name": "Again", "uid": "acme"})),
        )
        .await;
    assert_eq!(same["id"], app["id"]);

    assert_eq!(
        api.expect(200, "GET", &format!("/api/v1/app/{id}"), None)
            .await["uid"],
        "acme"
    );
    assert_eq!(
        api.expect(200, "GET", "/api/v1/app/acme", None).await["id"],
        app["id"]
    );
    api.expect(404, "GET", "/api/v1/app/app_missing", None)
        .await;

    // An application-wide rate is not something Herald does (it limits each endpoint):
    // refused, not stored and ignored.
    let (s, err) = api
        .put(
            "/api/v1/app/acme",
            json!({"name": "Acme Inc", "uid": "acme", "throttleRate": 10}),
        )
        .await;
    assert_eq!(
        (s, invalid_fields(&err)),
        (422, vec!["body.throttleRate".to_string()])
    );
    let updated = api
        .expect(
            200,
            "PUT",
            "/api/v1/app/acme",
            Some(json!({"name": "Acme Inc", "uid": "acme", "metadata": {"tier": "gold"}})),
        )
        .await;
    assert_eq!(
        (
            updated["name"].as_str(),
            updated["metadata"]["tier"].as_str()
        ),
        (Some("Acme Inc"), Some("gold"))
    );
    let created = api
        .expect(
            201,
            "PUT",
            "/api/v1/app/globex",
            Some(json!({"name": "Globex"})),
        )
        .await;
    assert_eq!(created["uid"], "globex");
    api.expect(
        404,
        "PUT",
        "/api/v1/app/app_missing",
        Some(json!({"name": "x"})),
    )
    .await;

    let patched = api
        .expect(
            200,
            "PATCH",
            "/api/v1/app/acme",
            Some(json!({"name": "Acme 2"})),
        )
        .await;
    assert_eq!(
        (
            patched["name"].as_str(),
            patched["metadata"]["tier"].as_str()
        ),
        (Some("Acme 2"), Some("gold"))
    );
    // A field Herald does not have, sent as null, asks for nothing: accepted.
    let unchanged = api
        .expect(
            200,
            "PATCH",
            "/api/v1/app/acme",
            Some(json!({"throttleRate": null})),
        )
        .await;
    assert_eq!(unchanged["name"], "Acme 2");

    for (body, field) in [
        (json!({"name": ""}), "body.name"),
        (json!({"name": "a", "uid": "has space"}), "body.uid"),
        (json!({"name": "a", "throttleRate": 0}), "body.throttleRate"),
    ] {
        let (s, err) = api.post("/api/v1/app", body).await;
        assert_eq!((s, invalid_fields(&err)), (422, vec![field.to_string()]));
    }

    api.expect(204, "DELETE", "/api/v1/app/globex", None).await;
    api.expect(404, "GET", "/api/v1/app/globex", None).await;
    api.expect(404, "DELETE", "/api/v1/app/globex", None).await;
    t.finish().await;
}

#[actix_rt::test]
async fn pagination_walks_forward_and_back() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            api.expect(
                201,
                "POST",
                "/api/v1/app",
                Some(json!({"name": format!("app {i}")})),
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut seen = Vec::new();
    let mut iterator: Option<String> = None;
    loop {
        let path = match &iterator {
            Some(it) => format!("/api/v1/app?limit=2&iterator={it}"),
            None => "/api/v1/app?limit=2".to_string(),
        };
        let page = api.expect(200, "GET", &path, None).await;
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_string()),
        );
        if page["done"].as_bool().unwrap() {
            break;
        }
        iterator = page["iterator"].as_str().map(String::from);
    }
    assert_eq!(seen, ids, "every application once, in creation order");

    let second = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app?limit=2&iterator={}", ids[1]),
            None,
        )
        .await;
    let prev = second["prevIterator"].as_str().unwrap();
    let back = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app?limit=2&iterator={prev}"),
            None,
        )
        .await;
    let back_ids: Vec<&str> = back["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(back_ids, vec![ids[0].as_str(), ids[1].as_str()]);

    let desc = api
        .expect(200, "GET", "/api/v1/app?limit=5&order=descending", None)
        .await;
    assert_eq!(desc["data"][0]["id"].as_str(), Some(ids[4].as_str()));
    let exact = api.expect(200, "GET", "/api/v1/app?limit=5", None).await;
    assert!(
        exact["done"].as_bool().unwrap(),
        "a page that holds the rest is the last"
    );
    let empty = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app?iterator={}", ids[4]),
            None,
        )
        .await;
    assert_eq!((data_len(&empty), empty["done"].as_bool()), (0, Some(true)));
    assert!(
        empty.as_object().unwrap().contains_key("iterator"),
        "iterator is always present"
    );
    for bad in ["limit=0", "limit=251", "order=sideways"] {
        api.expect(422, "GET", &format!("/api/v1/app?{bad}"), None)
            .await;
    }
    t.finish().await;
}

#[actix_rt::test]
async fn event_types_crud() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    let et = api
        .expect(
            201,
            "POST",
            "/api/v1/event-type",
            Some(json!({"name": "payment.confirmed", "description": "Paid"})),
        )
        .await;
    assert_eq!(
        (et["archived"].as_bool(), et["deprecated"].as_bool()),
        (Some(false), Some(false))
    );
    let (s, _) = api
        .post(
            "/api/v1/event-type",
            json!({"name": "payment.confirmed", "description": "again"}),
        )
        .await;
    assert_eq!(s, 409);
    let (s, body) = api
        .post(
            "/api/v1/event-type",
            json!({"name": "bad name!", "description": ""}),
        )
        .await;
    assert_eq!(
        (s, invalid_fields(&body)),
        (422, vec!["body.name".to_string()])
    );

    api.expect(
        201,
        "PUT",
        "/api/v1/event-type/order.created",
        Some(json!({"description": "New order", "schemas": {"1": {"examples": [{"order": 1}]}}})),
    )
    .await;
    let updated = api
        .expect(
            200,
            "PUT",
            "/api/v1/event-type/order.created",
            Some(json!({"description": "Order created"})),
        )
        .await;
    assert_eq!(updated["description"], "Order created");
    let patched = api
        .expect(
            200,
            "PATCH",
            "/api/v1/event-type/payment.confirmed",
            Some(json!({"deprecated": true})),
        )
        .await;
    assert_eq!(
        (
            patched["deprecated"].as_bool(),
            patched["description"].as_str()
        ),
        (Some(true), Some("Paid"))
    );
    api.expect(
        404,
        "PATCH",
        "/api/v1/event-type/missing",
        Some(json!({"deprecated": true})),
    )
    .await;

    api.expect(204, "DELETE", "/api/v1/event-type/order.created", None)
        .await;
    let listed = api.expect(200, "GET", "/api/v1/event-type", None).await;
    assert_eq!(data_len(&listed), 1, "archived types are hidden");
    let all = api
        .expect(
            200,
            "GET",
            "/api/v1/event-type?include_archived=true&with_content=true",
            None,
        )
        .await;
    assert_eq!(data_len(&all), 2);
    assert_eq!(
        api.expect(200, "GET", "/api/v1/event-type/order.created", None)
            .await["archived"],
        true
    );
    api.expect(
        204,
        "DELETE",
        "/api/v1/event-type/order.created?expunge=true",
        None,
    )
    .await;
    api.expect(404, "GET", "/api/v1/event-type/order.created", None)
        .await;
    t.finish().await;
}
