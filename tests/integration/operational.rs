//! Issue 14, part 3: operational webhooks. Each of Herald's own events reaches the
//! operator's endpoint once per occurrence, signed with that endpoint's secret (checked with
//! OpenSSL, not Herald's signing code), in Svix's shapes.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

/// An operational endpoint at `receiver` for `types` (None: every event); returns its id
/// and secret.
async fn operational_endpoint(
    api: &Api,
    receiver: &MockServer,
    types: Option<&[&str]>,
) -> (String, String) {
    let mut body = json!({"url": format!("{}/ops", receiver.uri())});
    if let Some(types) = types {
        body["eventTypes"] = json!(types);
    }
    let e = api
        .expect(
            201,
            "POST",
            "/api/v1/operational-webhook/endpoint",
            Some(body),
        )
        .await;
    let id = e["id"].as_str().unwrap().to_string();
    let secret = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/operational-webhook/endpoint/{id}/secret"),
            None,
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    (id, secret)
}

/// The events `receiver` got, each verified with `secret`, once `n` have arrived and every
/// operational delivery has settled (so no further one is on its way); in the order Herald
/// wrote them. Operational endpoints are not ordered, so two events written a millisecond
/// apart (an exhausted delivery, then its endpoint's disable) can arrive either way round:
/// the order that means something is the order of their deliveries' ids.
async fn events(t: &TestApp, receiver: &MockServer, secret: &str, n: usize) -> Vec<Value> {
    wait_for_requests(receiver, n, WAIT).await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery d JOIN herald.application a ON a.id = d.app_id \
         WHERE a.operational AND d.status NOT IN ('succeeded', 'dead')",
        0,
        WAIT,
    )
    .await;
    let mut requests = receiver.received_requests().await.unwrap();
    let written: std::collections::HashMap<String, i64> = sqlx::query_as(
        "SELECT d.message_id, min(d.id) FROM herald.delivery d \
         JOIN herald.application a ON a.id = d.app_id WHERE a.operational GROUP BY 1",
    )
    .fetch_all(&t.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    requests.sort_by_key(|r| written.get(header(r, "webhook-id").as_str()).copied());
    requests
        .iter()
        .map(|r| {
            verify(secret, r).unwrap_or_else(|e| panic!("operational event not verified: {e}"));
            let event: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(header(r, "webhook-id").starts_with("msg_"), "{event}");
            event
        })
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[actix_rt::test]
async fn endpoint_changes_are_reported_once_each() {
    let t = spawn_app().await;
    let api = t.api();
    let ops = mock_receiver(&[(204, None)]).await;
    let (op_id, secret) = operational_endpoint(&api, &ops, None).await;
    // Operational endpoints are not reported (to themselves or to each other).
    let (_, _) = operational_endpoint(
        &api,
        &mock_receiver(&[(204, None)]).await,
        Some(&["circuit.opened"]),
    )
    .await;

    let receiver = mock_receiver(&[(204, None)]).await;
    let e = api
        .acme_endpoint(json!({"url": receiver.uri(), "uid": "primary"}))
        .await;
    let ep = format!("/api/v1/app/acme/endpoint/{}", e["id"].as_str().unwrap());
    api.expect(
        200,
        "PUT",
        &ep,
        Some(json!({"url": receiver.uri(), "uid": "primary", "description": "main"})),
    )
    .await;
    // The same fields again change nothing: no event.
    api.expect(
        200,
        "PUT",
        &ep,
        Some(json!({"url": receiver.uri(), "uid": "primary", "description": "main"})),
    )
    .await;
    api.expect(200, "PATCH", &ep, Some(json!({"disabled": true})))
        .await;
    api.expect(200, "POST", &format!("{ep}/enable"), None).await;
    api.expect(204, "DELETE", &ep, None).await;

    let got = events(&t, &ops, &secret, 5).await;
    assert_eq!(
        types(&got),
        [
            "endpoint.created",
            "endpoint.updated",
            "endpoint.disabled",
            "endpoint.enabled",
            "endpoint.deleted"
        ],
        "{got:#?}"
    );
    let app_id = api.expect(200, "GET", "/api/v1/app/acme", None).await["id"].clone();
    for event in &got {
        assert_eq!(event["data"]["appId"], app_id, "{event}");
        assert_eq!(event["data"]["appUid"], json!("acme"), "{event}");
        assert_eq!(event["data"]["endpointId"], e["id"], "{event}");
        assert_eq!(event["data"]["endpointUid"], json!("primary"), "{event}");
    }
    assert_eq!(got[2]["data"]["trigger"], json!("manual"), "{}", got[2]);
    assert_eq!(got[2]["data"]["cause"], json!("manual"), "{}", got[2]);
    assert_eq!(
        got[2]["data"]["reason"],
        json!("disabled through the API"),
        "{}",
        got[2]
    );

    // SQL written by hand is reported too: the trigger sees every change.
    sqlx::query("INSERT INTO herald.endpoint (app_id, url) VALUES ($1, 'https://example.com/x')")
        .bind(app_id.as_str().unwrap())
        .execute(&t.pool)
        .await
        .unwrap();
    let got = events(&t, &ops, &secret, 6).await;
    assert_eq!(types(&got)[5], "endpoint.created");
    assert_eq!(got.len(), 6, "{got:#?}");
    assert!(!op_id.is_empty());
    t.finish().await;
}

#[actix_rt::test]
async fn a_failing_delivery_is_reported_failing_then_exhausted_then_recovered() {
    let t = spawn_app_with(&[
        ("HERALD_RETRY_SCHEDULE", "50ms,50ms,50ms"),
        ("HERALD_OPERATIONAL_FAILING_AFTER", "2"),
    ])
    .await;
    let api = t.api();
    let ops = mock_receiver(&[(204, None)]).await;
    let (_, secret) = operational_endpoint(
        &api,
        &ops,
        Some(&[
            "message.attempt.failing",
            "message.attempt.exhausted",
            "message.attempt.recovered",
        ]),
    )
    .await;
    let receiver = mock_receiver(&[(500, Some(4)), (204, None)]).await;
    let e = api.acme_endpoint(json!({"url": receiver.uri()})).await;
    let endpoint_id = e["id"].as_str().unwrap().to_string();
    api.create_event_type("a", "A").await;
    let msg = api
        .expect(
            202,
            "POST",
            "/api/v1/app/acme/msg",
            Some(json!({"eventType": "a", "eventId": "pay-1", "payload": {"p": 1}})),
        )
        .await;

    let got = events(&t, &ops, &secret, 2).await;
    assert_eq!(
        types(&got),
        ["message.attempt.failing", "message.attempt.exhausted"],
        "{got:#?}"
    );
    for (event, attempts) in got.iter().zip([2, 4]) {
        let data = &event["data"];
        assert_eq!(data["msgId"], msg["id"], "{event}");
        assert_eq!(data["msgEventId"], json!("pay-1"), "{event}");
        assert_eq!(data["endpointId"], json!(endpoint_id), "{event}");
        assert_eq!(data["eventType"], json!("a"), "{event}");
        assert_eq!(data["attempts"], json!(attempts), "{event}");
        assert_eq!(
            data["lastAttempt"]["responseStatusCode"],
            json!(500),
            "{event}"
        );
        assert!(
            data["lastAttempt"]["id"]
                .as_str()
                .unwrap()
                .starts_with("atmpt_"),
            "{event}"
        );
    }
    assert_eq!(
        got[1]["data"]["deadReason"],
        json!("gave up after 4 attempts")
    );

    // Replayed, it succeeds: recovered, once.
    let dead = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/dead-letter?endpoint_id={endpoint_id}"),
            None,
        )
        .await;
    let dead_id = dead["data"][0]["id"].as_str().unwrap().to_string();
    api.expect(
        202,
        "POST",
        &format!("/api/v1/dead-letter/{dead_id}/replay"),
        None,
    )
    .await;
    let got = events(&t, &ops, &secret, 3).await;
    assert_eq!(types(&got)[2], "message.attempt.recovered", "{got:#?}");
    assert_eq!(
        got[2]["data"]["lastAttempt"]["responseStatusCode"],
        json!(204)
    );
    assert_eq!(got.len(), 3, "{got:#?}");

    // A message delivered at once is not an event.
    api.expect(
        202,
        "POST",
        "/api/v1/app/acme/msg",
        Some(json!({"eventType": "a", "payload": {"p": 2}})),
    )
    .await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded' AND NOT alerted \
         AND app_id = (SELECT id FROM herald.application WHERE uid = 'acme')",
        2,
        WAIT,
    )
    .await;
    assert_eq!(events(&t, &ops, &secret, 3).await.len(), 3);
    t.finish().await;
}

#[actix_rt::test]
async fn a_410_disables_the_endpoint_automatically_and_says_so() {
    let t = spawn_app().await;
    let api = t.api();
    let ops = mock_receiver(&[(204, None)]).await;
    let (_, secret) = operational_endpoint(
        &api,
        &ops,
        Some(&["endpoint.disabled", "message.attempt.exhausted"]),
    )
    .await;
    let gone = mock_receiver(&[(410, None)]).await;
    let e = api.acme_endpoint(json!({"url": gone.uri()})).await;
    api.create_event_type("a", "A").await;
    api.post_messages("acme", 1).await;

    let got = events(&t, &ops, &secret, 2).await;
    assert_eq!(
        types(&got),
        ["message.attempt.exhausted", "endpoint.disabled"],
        "{got:#?}"
    );
    let disabled = &got[1]["data"];
    assert_eq!(disabled["endpointId"], e["id"]);
    assert_eq!(disabled["trigger"], json!("automatic"));
    assert_eq!(disabled["cause"], json!("gone"));
    assert_eq!(disabled["reason"], json!("receiver answered 410 Gone"));
    assert!(
        disabled["failSince"].as_str().unwrap().ends_with('Z'),
        "{disabled}"
    );
    t.finish().await;
}

#[actix_rt::test]
async fn a_circuit_is_reported_opened_and_closed_once_per_outage() {
    let t = spawn_app_with(&[
        ("HERALD_BREAKER_FAILURES", "2"),
        ("HERALD_BREAKER_COOLDOWN", "300ms"),
        ("HERALD_BREAKER_MAX_COOLDOWN", "300ms"),
        (
            "HERALD_RETRY_SCHEDULE",
            "100ms,100ms,100ms,100ms,100ms,100ms",
        ),
    ])
    .await;
    let api = t.api();
    let ops = mock_receiver(&[(204, None)]).await;
    let (_, secret) =
        operational_endpoint(&api, &ops, Some(&["circuit.opened", "circuit.closed"])).await;
    // One message: its two failed attempts open the breaker, its third waits for the
    // cool-down and is the probe that closes it.
    let receiver = mock_receiver(&[(503, Some(2)), (204, None)]).await;
    let e = api.acme_endpoint(json!({"url": receiver.uri()})).await;
    api.create_event_type("a", "A").await;
    api.post_messages("acme", 1).await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded' AND attempts = 3 \
         AND app_id = (SELECT id FROM herald.application WHERE uid = 'acme')",
        1,
        WAIT,
    )
    .await;

    let got = events(&t, &ops, &secret, 2).await;
    assert_eq!(
        types(&got),
        ["circuit.opened", "circuit.closed"],
        "{got:#?}"
    );
    for event in &got {
        assert_eq!(event["data"]["endpointId"], e["id"], "{event}");
        assert!(event["data"]["instance"].as_str().is_some(), "{event}");
    }
    assert_eq!(got[0]["data"]["consecutiveFailures"], json!(2));
    assert!(got[0]["data"]["openUntil"].as_str().is_some());
    t.finish().await;
}

#[actix_rt::test]
async fn an_operational_endpoint_that_fails_reports_nothing_about_itself() {
    let t = spawn_app_with(&[("HERALD_RETRY_SCHEDULE", "50ms")]).await;
    let api = t.api();
    let broken = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&broken)
        .await;
    operational_endpoint(&api, &broken, None).await;
    api.acme_endpoint(json!({"url": "https://example.com/hook"}))
        .await;
    // endpoint.created is tried twice and dies; its death is not an event of its own.
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery d JOIN herald.application a ON a.id = d.app_id \
         WHERE a.operational AND d.status = 'dead'",
        1,
        WAIT,
    )
    .await;
    // It is a dead letter like any other: listed, and replayable.
    let dead = api.expect(200, "GET", "/api/v1/dead-letter", None).await;
    assert_eq!(data_len(&dead), 1, "{dead}");
    assert_eq!(
        t.count(
            "SELECT count(*) FROM herald.message m JOIN herald.application a ON a.id = m.app_id \
             WHERE a.operational"
        )
        .await,
        1
    );
    assert_eq!(broken.received_requests().await.unwrap().len(), 2);
    t.finish().await;
}

#[actix_rt::test]
async fn the_operational_endpoint_api_has_svix_shapes_and_checks() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    let base = "/api/v1/operational-webhook/endpoint";
    let list = api.expect(200, "GET", base, None).await;
    assert_eq!(data_len(&list), 0);
    assert_eq!(list["done"], json!(true));

    let (status, body) = api
        .post(
            base,
            json!({"url": "https://ops.example.com/", "eventTypes": ["endpoint.created", "payment.confirmed"]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        invalid_fields(&body)
            .iter()
            .any(|f| f.starts_with("body.eventTypes")),
        "{body}"
    );
    let (status, body) = api
        .post(
            base,
            json!({"url": "https://ops.example.com/", "channels": ["x"]}),
        )
        .await;
    assert_eq!(
        status, 422,
        "an endpoint field operational endpoints do not have: {body}"
    );

    let created = api
        .expect(
            201,
            "POST",
            base,
            Some(json!({
                "url": "https://ops.example.com/", "uid": "pager", "description": "Pager",
                "eventTypes": ["endpoint.disabled", "message.attempt.exhausted"],
                "metadata": {"team": "payments"}, "headers": {"x-team": "payments"},
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            })),
        )
        .await;
    assert!(created["id"].as_str().unwrap().starts_with("ep_"));
    for field in [
        "id",
        "url",
        "description",
        "throttleRate",
        "uid",
        "disabled",
        "eventTypes",
        "createdAt",
        "updatedAt",
        "metadata",
    ] {
        assert!(created.get(field).is_some(), "{field} in {created}");
    }
    assert_eq!(
        created["eventTypes"],
        json!(["endpoint.disabled", "message.attempt.exhausted"])
    );
    let by_uid = api.expect(200, "GET", &format!("{base}/pager"), None).await;
    assert_eq!(by_uid["id"], created["id"]);
    assert_eq!(
        api.expect(200, "GET", &format!("{base}/pager/secret"), None)
            .await["key"],
        json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    );
    assert_eq!(
        api.expect(200, "GET", &format!("{base}/pager/headers"), None)
            .await,
        json!({"headers": {"x-team": "payments"}, "sensitive": []})
    );
    api.expect(
        204,
        "PUT",
        &format!("{base}/pager/headers"),
        Some(json!({"headers": {"x-team": "core"}})),
    )
    .await;
    api.expect(
        204,
        "POST",
        &format!("{base}/pager/secret/rotate"),
        Some(json!({"gracePeriodSeconds": 0})),
    )
    .await;
    assert_ne!(
        api.expect(200, "GET", &format!("{base}/pager/secret"), None)
            .await["key"],
        json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    );
    let replaced = api
        .expect(
            200,
            "PUT",
            &format!("{base}/pager"),
            Some(json!({"url": "https://ops.example.com/v2", "uid": "pager"})),
        )
        .await;
    assert_eq!(
        replaced["eventTypes"],
        Value::Null,
        "PUT replaces: every event"
    );
    api.expect(
        201,
        "PUT",
        &format!("{base}/second"),
        Some(json!({"url": "https://ops.example.com/2"})),
    )
    .await;
    assert_eq!(data_len(&api.expect(200, "GET", base, None).await), 2);
    // The reserved application is Herald's: not one of the API's applications, and no
    // message can be posted to it (that would forge an operational event).
    let op_app: String = sqlx::query_scalar("SELECT id FROM herald.application WHERE operational")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(
        data_len(&api.expect(200, "GET", "/api/v1/app", None).await),
        0
    );
    api.expect(404, "GET", &format!("/api/v1/app/{op_app}"), None)
        .await;
    api.expect(404, "GET", &format!("/api/v1/app/{op_app}/endpoint"), None)
        .await;
    api.expect(
        404,
        "POST",
        &format!("/api/v1/app/{op_app}/msg"),
        Some(json!({"eventType": "endpoint.disabled", "payload": {"forged": true}})),
    )
    .await;
    api.expect(204, "DELETE", &format!("{base}/pager"), None)
        .await;
    api.expect(404, "GET", &format!("{base}/pager"), None).await;
    // An ordinary endpoint is not an operational one.
    let other = api
        .acme_endpoint(json!({"url": "https://example.com/"}))
        .await;
    api.expect(
        404,
        "GET",
        &format!("{base}/{}", other["id"].as_str().unwrap()),
        None,
    )
    .await;
    // Application tokens do not reach these routes.
    let token = api
        .expect(
            201,
            "POST",
            "/api/v1/token",
            Some(json!({"name": "acme", "appId": "acme"})),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = api.with_token(&token).get(base).await;
    assert_eq!(status, 403, "{body}");
    t.finish().await;
}

#[actix_rt::test]
async fn a_manual_disable_is_one_event_not_one_per_waiting_delivery() {
    let t = spawn_app_with(&[("HERALD_RETRY_SCHEDULE", "50ms")]).await;
    let api = t.api();
    let ops = mock_receiver(&[(204, None)]).await;
    let (_, secret) = operational_endpoint(
        &api,
        &ops,
        Some(&["endpoint.disabled", "message.attempt.exhausted"]),
    )
    .await;
    let e = api
        .acme_endpoint(json!({"url": "https://example.com/hook"}))
        .await;
    let ep = format!("/api/v1/app/acme/endpoint/{}", e["id"].as_str().unwrap());
    api.expect(200, "PATCH", &ep, Some(json!({"disabled": true})))
        .await;
    // Deliveries written by hand to the disabled endpoint: each is claimed and dies unsent.
    let app_id = api.expect(200, "GET", "/api/v1/app/acme", None).await["id"].clone();
    for _ in 0..5 {
        sqlx::query(
            "WITH m AS (INSERT INTO herald.message (app_id, event_type, payload) \
                        VALUES ($1, 'a', '{}') RETURNING id) \
             INSERT INTO herald.delivery (message_id, endpoint_id, app_id) \
             SELECT m.id, $2, $1 FROM m",
        )
        .bind(app_id.as_str().unwrap())
        .bind(e["id"].as_str().unwrap())
        .execute(&t.pool)
        .await
        .unwrap();
    }
    sqlx::query("NOTIFY herald_delivery")
        .execute(&t.pool)
        .await
        .unwrap();
    t.wait_for_count(
        &format!(
            "SELECT count(*) FROM herald.delivery WHERE status = 'dead' AND endpoint_id = '{}'",
            e["id"].as_str().unwrap()
        ),
        5,
        WAIT,
    )
    .await;
    let got = events(&t, &ops, &secret, 1).await;
    assert_eq!(types(&got), ["endpoint.disabled"], "{got:#?}");
    t.finish().await;
}

#[actix_rt::test]
async fn a_recovery_is_reported_only_after_a_failing_or_exhausted_event_went_out() {
    let t = spawn_app_with(&[
        ("HERALD_RETRY_SCHEDULE", "50ms,50ms"),
        ("HERALD_OPERATIONAL_FAILING_AFTER", "1"),
    ])
    .await;
    let api = t.api();
    // Subscribed to recoveries only: the failing event goes nowhere, so the success after
    // it recovers nothing anyone was told about.
    let ops = mock_receiver(&[(204, None)]).await;
    let (_, secret) = operational_endpoint(&api, &ops, Some(&["message.attempt.recovered"])).await;
    let receiver = mock_receiver(&[(500, Some(1)), (204, None)]).await;
    api.acme_endpoint(json!({"url": receiver.uri()})).await;
    api.create_event_type("a", "A").await;
    api.post_messages("acme", 1).await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded' AND attempts = 2 \
         AND NOT alerted",
        1,
        WAIT,
    )
    .await;
    assert!(events(&t, &ops, &secret, 0).await.is_empty());
    t.finish().await;
}
