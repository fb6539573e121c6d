//! API: endpoints and their operations (secret, headers, stats, send-example, recover,
//! enable).

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

async fn app_with_event_types(api: &Api) {
    api.create_app("acme", "Acme").await;
    for name in ["payment.confirmed", "order.created"] {
        api.expect(
            201,
            "POST",
            "/api/v1/event-type",
            Some(json!({"name": name, "description": name})),
        )
        .await;
    }
}

#[actix_rt::test]
async fn endpoints_crud_and_validation() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    app_with_event_types(&api).await;
    let base = "/api/v1/app/acme/endpoint";

    let ep = api.expect(201, "POST", base, Some(json!({
        "url": "https://example.com/hooks", "uid": "main", "eventTypes": ["payment.confirmed"],
        "description": "Main", "throttleRate": 20, "metadata": {"team": "billing"},
    }))).await;
    let id = ep["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("ep_"));
    assert_eq!(
        (ep["disabled"].as_bool(), ep["throttleRate"].as_i64()),
        (Some(false), Some(20))
    );

    for (body, field) in [
        (json!({"url": "ftp://example.com"}), "body.url"),
        (json!({"url": "not a url"}), "body.url"),
        (
            json!({"url": "https://example.com", "eventTypes": ["no.such.type"]}),
            "body.eventTypes",
        ),
        (
            json!({"url": "https://example.com", "eventTypes": []}),
            "body.eventTypes",
        ),
        (
            json!({"url": "https://example.com", "secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
            "body.secret",
        ),
        (
            json!({"url": "https://example.com", "secret": "whsec_dG9vc2hvcnQ="}),
            "body.secret",
        ),
        (
            json!({"url": "https://example.com", "secret": "whsec_!!notbase64!!"}),
            "body.secret",
        ),
        (
            json!({"url": "https://example.com", "throttleRate": 0}),
            "body.throttleRate",
        ),
        (
            json!({"url": "https://example.com", "headers": {"webhook-id": "x"}}),
            "body.headers.webhook-id",
        ),
        (
            json!({"url": "https://example.com", "uid": "bad uid"}),
            "body.uid",
        ),
    ] {
        let (s, err) = api.post(base, body.clone()).await;
        assert_eq!(
            (s, invalid_fields(&err)),
            (422, vec![field.to_string()]),
            "{body}"
        );
    }
    let (s, _) = api
        .post(base, json!({"url": "https://example.com", "uid": "main"}))
        .await;
    assert_eq!(s, 409, "uid is unique per application");
    api.expect(
        404,
        "POST",
        "/api/v1/app/nobody/endpoint",
        Some(json!({"url": "https://example.com"})),
    )
    .await;

    assert_eq!(
        api.expect(200, "GET", &format!("{base}/{id}"), None).await["uid"],
        "main"
    );
    assert_eq!(
        api.expect(200, "GET", &format!("{base}/main"), None).await["id"],
        id.as_str()
    );
    api.expect(404, "GET", &format!("{base}/ep_missing"), None)
        .await;

    let put = api
        .expect(
            200,
            "PUT",
            &format!("{base}/main"),
            Some(json!({"url": "https://example.com/v2", "uid": "main"})),
        )
        .await;
    assert_eq!(
        (put["url"].as_str(), put["eventTypes"].is_null()),
        (Some("https://example.com/v2"), true)
    );
    api.expect(
        201,
        "PUT",
        &format!("{base}/second"),
        Some(json!({"url": "https://example.org"})),
    )
    .await;
    let patched = api
        .expect(
            200,
            "PATCH",
            &format!("{base}/main"),
            Some(json!({"eventTypes": ["order.created"], "disabled": true})),
        )
        .await;
    assert_eq!(patched["eventTypes"], json!(["order.created"]));
    assert_eq!(
        (
            patched["disabled"].as_bool(),
            patched["disabledReason"].as_str()
        ),
        (Some(true), Some("disabled through the API"))
    );
    let (s, err) = api
        .patch(&format!("{base}/main"), json!({"eventTypes": ["nope"]}))
        .await;
    assert_eq!(
        (s, invalid_fields(&err)),
        (422, vec!["body.eventTypes".to_string()])
    );
    let enabled = api
        .expect(200, "POST", &format!("{base}/main/enable"), None)
        .await;
    assert_eq!(
        (
            enabled["disabled"].as_bool(),
            enabled["disabledReason"].is_null()
        ),
        (Some(false), true)
    );

    let list = api
        .expect(200, "GET", &format!("{base}?limit=1"), None)
        .await;
    assert_eq!((data_len(&list), list["done"].as_bool()), (1, Some(false)));
    api.expect(204, "DELETE", &format!("{base}/second"), None)
        .await;
    api.expect(404, "GET", &format!("{base}/second"), None)
        .await;
    t.finish().await;
}

#[actix_rt::test]
async fn secrets_headers_and_stats() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    app_with_event_types(&api).await;
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let ep = api.expect(201, "POST", "/api/v1/app/acme/endpoint", Some(json!({"url": "https://example.com", "secret": given, "headers": {"X-Tenant": "acme"}}))).await;
    let path = format!("/api/v1/app/acme/endpoint/{}", ep["id"].as_str().unwrap());

    assert_eq!(
        api.expect(200, "GET", &format!("{path}/secret"), None)
            .await["key"],
        given
    );
    let rotated = api
        .expect(
            200,
            "POST",
            &format!("{path}/secret/rotate"),
            Some(json!({})),
        )
        .await;
    let new_key = rotated["key"].as_str().unwrap().to_string();
    assert!(new_key.starts_with("whsec_") && new_key != given);
    assert_eq!(
        api.expect(200, "GET", &format!("{path}/secret"), None)
            .await["key"],
        new_key.as_str()
    );
    let chosen = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    assert_eq!(
        api.expect(
            200,
            "POST",
            &format!("{path}/secret/rotate"),
            Some(json!({"key": chosen}))
        )
        .await["key"],
        chosen
    );
    let (s, err) = api
        .post(&format!("{path}/secret/rotate"), json!({"key": "short"}))
        .await;
    assert_eq!(
        (s, invalid_fields(&err)),
        (422, vec!["body.key".to_string()])
    );
    // Both rotated-out secrets are still within their grace period, the first one is not.
    let valid: i64 = sqlx::query_scalar("SELECT count(*) FROM herald.endpoint_secret WHERE expires_at IS NULL OR expires_at > now()")
        .fetch_one(&t.pool).await.unwrap();
    assert_eq!(valid, 3);

    let headers = api
        .expect(200, "GET", &format!("{path}/headers"), None)
        .await;
    assert_eq!(
        (headers["headers"].clone(), headers["sensitive"].clone()),
        (json!({"X-Tenant": "acme"}), json!([]))
    );
    api.expect(
        204,
        "PUT",
        &format!("{path}/headers"),
        Some(json!({"headers": {"X-A": "1", "X-B": "2"}})),
    )
    .await;
    api.expect(
        204,
        "PATCH",
        &format!("{path}/headers"),
        Some(json!({"headers": {"X-A": null, "X-C": "3"}})),
    )
    .await;
    assert_eq!(
        api.expect(200, "GET", &format!("{path}/headers"), None)
            .await["headers"],
        json!({"X-B": "2", "X-C": "3"})
    );
    let (s, err) = api
        .put(
            &format!("{path}/headers"),
            json!({"headers": {"Content-Type": "text/plain"}}),
        )
        .await;
    assert_eq!(
        (s, invalid_fields(&err)),
        (422, vec!["body.headers.Content-Type".to_string()])
    );

    let stats = api.expect(200, "GET", &format!("{path}/stats"), None).await;
    assert_eq!(
        stats,
        json!({"success": 0, "pending": 0, "sending": 0, "fail": 0, "canceled": 0})
    );
    t.finish().await;
}

#[actix_rt::test]
async fn send_example_recover_and_stats_against_a_receiver() {
    let t = spawn_app().await;
    let api = t.api();
    let receiver = mock_receiver(&[(500, Some(3)), (200, None)]).await;
    api.create_app("acme", "Acme").await;
    api.expect(201, "POST", "/api/v1/event-type", Some(json!({"name": "order.created", "description": "", "schemas": {"1": {"examples": [{"order": 7}]}}}))).await;
    let ep = api
        .expect(
            201,
            "POST",
            "/api/v1/app/acme/endpoint",
            Some(json!({"url": receiver.uri()})),
        )
        .await;
    let path = format!("/api/v1/app/acme/endpoint/{}", ep["id"].as_str().unwrap());

    // The example fails three times (the test schedule allows three attempts): dead.
    let example = api
        .expect(
            200,
            "POST",
            &format!("{path}/send-example"),
            Some(json!({"eventType": "order.created"})),
        )
        .await;
    assert_eq!(example["payload"], json!({"order": 7}));
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'dead'",
        1,
        WAIT,
    )
    .await;
    assert_eq!(
        api.expect(200, "GET", &format!("{path}/stats"), None).await["fail"],
        1
    );
    let (s, err) = api
        .post(
            &format!("{path}/send-example"),
            json!({"eventType": "no.such"}),
        )
        .await;
    assert_eq!(
        (s, invalid_fields(&err)),
        (422, vec!["body.eventType".to_string()])
    );

    // Recover sends it again with a fresh schedule; the receiver now answers 200.
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let task = api
        .expect(
            202,
            "POST",
            &format!("{path}/recover"),
            Some(json!({"since": since})),
        )
        .await;
    assert_eq!(task["task"], "endpoint.recover");
    assert!(task["id"].as_str().unwrap().starts_with("qtask_"));
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        1,
        WAIT,
    )
    .await;
    let stats = api.expect(200, "GET", &format!("{path}/stats"), None).await;
    assert_eq!(
        (stats["success"].as_i64(), stats["fail"].as_i64()),
        (Some(1), Some(0))
    );
    let manual: i64 =
        sqlx::query_scalar("SELECT count(*) FROM herald.attempt WHERE trigger_type = 1")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(manual, 1, "the recovered attempt is marked manual");
    let (s, _) = api
        .post(&format!("{path}/recover"), json!({"since": "yesterday"}))
        .await;
    assert_eq!(s, 422);
    t.finish().await;
}
