//! API: messages, attempts, resend, dead letters, idempotency keys.

use std::time::Duration;

use serde_json::json;
use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

#[actix_rt::test]
async fn messages_create_get_list_and_expunge() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    api.create_app("acme", "Acme").await;
    let base = "/api/v1/app/acme/msg";

    // The payload's bytes, spacing included, come back as they were sent.
    let raw = br#"{"eventType": "payment.confirmed", "eventId": "pay-1", "payload": {"b": 1,  "a": [1, 2]}}"#;
    let auth = format!("Bearer {TOKEN}");
    let (s, msg) = api
        .send(
            "POST",
            base,
            Some(raw.to_vec()),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(s, 202, "{msg}");
    let id = msg["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("msg_"));
    let stored: String = sqlx::query_scalar("SELECT payload FROM herald.message")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(stored, r#"{"b": 1,  "a": [1, 2]}"#);

    let (s, err) = api
        .post(
            base,
            json!({"eventType": "payment.confirmed", "eventId": "pay-1", "payload": {}}),
        )
        .await;
    assert_eq!((s, err["code"].as_str()), (409, Some("conflict")));
    assert_eq!(t.count("SELECT count(*) FROM herald.message").await, 1);
    for (body, field) in [
        (json!({"eventType": "a", "payload": [1]}), "body.payload"),
        (
            json!({"eventType": "bad type!", "payload": {}}),
            "body.eventType",
        ),
        (
            json!({"eventType": "a", "payload": {}, "eventId": "has space"}),
            "body.eventId",
        ),
    ] {
        let (s, err) = api.post(base, body.clone()).await;
        assert_eq!(
            (s, invalid_fields(&err)),
            (422, vec![field.to_string()]),
            "{body}"
        );
    }
    let (s, err) = api.post(base, json!({"eventType": "a"})).await;
    assert_eq!(s, 422, "{err}");
    api.expect(
        404,
        "POST",
        "/api/v1/app/nobody/msg",
        Some(json!({"eventType": "a", "payload": {}})),
    )
    .await;
    // `application` creates the application with its first message.
    let created = api
        .expect(
            202,
            "POST",
            "/api/v1/app/newco/msg",
            Some(json!({"eventType": "a", "payload": {"x": 1}, "application": {"name": "NewCo"}})),
        )
        .await;
    assert_eq!(
        api.expect(200, "GET", "/api/v1/app/newco", None).await["name"],
        "NewCo"
    );
    assert_eq!(
        api.expect(
            200,
            "GET",
            &format!("/api/v1/app/newco/msg/{}", created["id"].as_str().unwrap()),
            None
        )
        .await["payload"],
        json!({"x": 1})
    );

    let got = api.expect(200, "GET", &format!("{base}/{id}"), None).await;
    assert_eq!(
        (got["payload"].clone(), got["eventId"].as_str()),
        (json!({"b": 1, "a": [1, 2]}), Some("pay-1"))
    );
    assert_eq!(
        api.expect(200, "GET", &format!("{base}/pay-1"), None).await["id"],
        id.as_str(),
        "by eventId"
    );
    assert_eq!(
        api.expect(200, "GET", &format!("{base}/{id}?with_content=false"), None)
            .await["payload"],
        json!({})
    );
    api.expect(404, "GET", &format!("{base}/msg_missing"), None)
        .await;

    for i in 0..3 {
        api.expect(202, "POST", base, Some(json!({"eventType": if i == 0 { "order.created" } else { "payment.expired" }, "payload": {"i": i}, "channels": ["eu"]}))).await;
    }
    let page = api
        .expect(200, "GET", &format!("{base}?limit=2"), None)
        .await;
    assert_eq!((data_len(&page), page["done"].as_bool()), (2, Some(false)));
    assert_eq!(page["data"][0]["payload"], json!({"i": 2}), "newest first");
    let rest = api
        .expect(
            200,
            "GET",
            &format!(
                "{base}?limit=2&iterator={}",
                page["iterator"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!((data_len(&rest), rest["done"].as_bool()), (2, Some(true)));
    let filtered = api
        .expect(
            200,
            "GET",
            &format!("{base}?event_types=order.created,payment.confirmed"),
            None,
        )
        .await;
    assert_eq!(data_len(&filtered), 2);
    let eu = api
        .expect(
            200,
            "GET",
            &format!("{base}?channel=eu&with_content=false"),
            None,
        )
        .await;
    assert_eq!(data_len(&eu), 3);
    assert!(eu["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["payload"] == json!({})));
    let after = (chrono::Utc::now() + chrono::Duration::hours(1))
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    assert_eq!(
        api.expect(200, "GET", &format!("{base}?after={after}"), None)
            .await["data"],
        json!([]),
        "naive datetimes are UTC"
    );

    api.expect(204, "DELETE", &format!("{base}/{id}/content"), None)
        .await;
    assert_eq!(
        api.expect(200, "GET", &format!("{base}/{id}"), None).await["payload"],
        json!({})
    );
    t.finish().await;
}

#[actix_rt::test]
async fn http_and_sql_messages_are_indistinguishable() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    let app = api
        .expect(
            201,
            "POST",
            "/api/v1/app",
            Some(json!({"name": "Acme", "uid": "acme"})),
        )
        .await;
    api.expect(
        201,
        "POST",
        "/api/v1/app/acme/endpoint",
        Some(json!({"url": "https://example.com"})),
    )
    .await;
    let via_http = api
        .expect(
            202,
            "POST",
            "/api/v1/app/acme/msg",
            Some(json!({"eventType": "a", "payload": {"n": 1}, "eventId": "e1"})),
        )
        .await;
    let via_sql: String =
        sqlx::query_scalar("SELECT herald.send_message($1, 'a', '{\"n\": 1}', 'e2')")
            .bind(app["id"].as_str().unwrap())
            .fetch_one(&t.pool)
            .await
            .unwrap();
    let shape = |v: &serde_json::Value| {
        let mut v = v.clone();
        for k in ["id", "timestamp", "eventId"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    let a = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/msg/{}", via_http["id"].as_str().unwrap()),
            None,
        )
        .await;
    let b = api
        .expect(200, "GET", &format!("/api/v1/app/acme/msg/{via_sql}"), None)
        .await;
    assert_eq!(shape(&a), shape(&b));
    assert_eq!(
        t.count("SELECT count(*) FROM herald.delivery").await,
        2,
        "both fanned out"
    );
    t.finish().await;
}

#[actix_rt::test]
async fn attempts_destinations_and_resend() {
    let t = spawn_app().await;
    let api = t.api();
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .up_to_n_times(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&receiver)
        .await;
    let ep = api.acme_endpoint(json!({"url": receiver.uri()})).await;
    let ep_id = ep["id"].as_str().unwrap();
    let msg = api
        .expect(
            202,
            "POST",
            "/api/v1/app/acme/msg",
            Some(json!({"eventType": "a", "payload": {}})),
        )
        .await;
    let msg_id = msg["id"].as_str().unwrap();
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        1,
        WAIT,
    )
    .await;

    let by_msg = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/attempt/msg/{msg_id}"),
            None,
        )
        .await;
    let attempts = by_msg["data"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    let (last, first) = (&attempts[0], &attempts[1]);
    assert_eq!(
        (
            first["responseStatusCode"].as_i64(),
            first["status"].as_i64(),
            first["statusText"].as_str(),
            first["response"].as_str()
        ),
        (Some(500), Some(2), Some("fail"), Some("boom"))
    );
    assert_eq!(
        (
            last["status"].as_i64(),
            last["statusText"].as_str(),
            last["triggerType"].as_i64()
        ),
        (Some(0), Some("success"), Some(0))
    );
    assert!(first["id"].as_str().unwrap().starts_with("atmpt_"));
    assert!(first["responseDurationMs"].is_i64());
    let ok_only = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/attempt/msg/{msg_id}?status=0&expanded_statuses=true"),
            None,
        )
        .await;
    assert_eq!(data_len(&ok_only), 1);
    let fives = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/attempt/msg/{msg_id}?status_code_class=500"),
            None,
        )
        .await;
    assert_eq!(data_len(&fives), 1);
    let by_ep = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/attempt/endpoint/{ep_id}?with_msg=true"),
            None,
        )
        .await;
    assert_eq!(by_ep["data"][0]["msg"]["id"], msg_id);
    let one = api
        .expect(
            200,
            "GET",
            &format!(
                "/api/v1/app/acme/msg/{msg_id}/attempt/{}",
                first["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(one["id"], first["id"]);
    api.expect(
        404,
        "GET",
        &format!("/api/v1/app/acme/msg/{msg_id}/attempt/atmpt_missing"),
        None,
    )
    .await;

    let dest = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/msg/{msg_id}/endpoint"),
            None,
        )
        .await;
    assert_eq!(
        (
            dest["data"][0]["id"].as_str(),
            dest["data"][0]["status"].as_i64(),
            dest["data"][0]["statusText"].as_str()
        ),
        (Some(ep_id), Some(0), Some("success"))
    );
    let sent = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/endpoint/{ep_id}/msg"),
            None,
        )
        .await;
    assert_eq!(
        (
            sent["data"][0]["id"].as_str(),
            sent["data"][0]["statusText"].as_str()
        ),
        (Some(msg_id), Some("success"))
    );

    let resent = api
        .expect(
            202,
            "POST",
            &format!("/api/v1/app/acme/msg/{msg_id}/endpoint/{ep_id}/resend"),
            None,
        )
        .await;
    assert_eq!(resent, json!({}), "resend answers a JSON object");
    t.wait_for_count(
        "SELECT count(*) FROM herald.attempt WHERE trigger_type = 1 AND succeeded",
        1,
        WAIT,
    )
    .await;
    wait_for_requests(&receiver, 3, WAIT).await;
    api.expect(
        404,
        "POST",
        &format!("/api/v1/app/acme/msg/msg_missing/endpoint/{ep_id}/resend"),
        None,
    )
    .await;
    t.finish().await;
}

#[actix_rt::test]
async fn dead_letters_are_listed_and_replayed() {
    let t = spawn_app().await;
    let api = t.api();
    let receiver = mock_receiver(&[(503, Some(6)), (204, None)]).await;
    let ep = api.acme_endpoint(json!({"url": receiver.uri()})).await;
    api.post_messages("acme", 2).await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'dead'",
        2,
        WAIT,
    )
    .await;

    let dead = api
        .expect(200, "GET", "/api/v1/dead-letter?app_id=acme&limit=1", None)
        .await;
    assert_eq!((data_len(&dead), dead["done"].as_bool()), (1, Some(false)));
    let entry = &dead["data"][0];
    assert_eq!(
        (
            entry["endpointId"].clone(),
            entry["attempts"].as_i64(),
            entry["lastStatusCode"].as_i64()
        ),
        (ep["id"].clone(), Some(3), Some(503))
    );
    assert!(entry["reason"].as_str().unwrap().contains("gave up"));
    let next = api
        .expect(
            200,
            "GET",
            &format!(
                "/api/v1/dead-letter?app_id=acme&limit=1&iterator={}",
                dead["iterator"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!((data_len(&next), next["done"].as_bool()), (1, Some(true)));
    api.expect(404, "GET", "/api/v1/dead-letter?app_id=nobody", None)
        .await;

    let one = entry["id"].as_str().unwrap();
    assert_eq!(
        api.expect(
            202,
            "POST",
            &format!("/api/v1/dead-letter/{one}/replay"),
            None
        )
        .await["replayed"],
        1
    );
    api.expect(404, "POST", "/api/v1/dead-letter/dlv_999999/replay", None)
        .await;
    let bulk = api
        .expect(
            202,
            "POST",
            "/api/v1/dead-letter/replay",
            Some(json!({"endpointId": ep["id"]})),
        )
        .await;
    assert_eq!(bulk["replayed"], 1, "the other one");
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        2,
        WAIT,
    )
    .await;
    assert_eq!(
        api.expect(200, "GET", "/api/v1/dead-letter", None).await["data"],
        json!([])
    );
    let (s, _) = api
        .post(
            "/api/v1/dead-letter/replay",
            json!({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(s, 422);
    t.finish().await;
}

#[actix_rt::test]
async fn idempotency_keys_replay_the_first_answer() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    api.create_app("acme", "Acme").await;
    let auth = format!("Bearer {TOKEN}");
    let body = serde_json::to_vec(&json!({"eventType": "a", "payload": {"n": 1}})).unwrap();
    let headers = [
        ("authorization", auth.as_str()),
        ("idempotency-key", "auto_7d2c1a"),
    ];
    let (s1, first) = api
        .send("POST", "/api/v1/app/acme/msg", Some(body.clone()), &headers)
        .await;
    let (s2, second) = api
        .send("POST", "/api/v1/app/acme/msg", Some(body.clone()), &headers)
        .await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first, second, "the retry gets the first answer");
    assert_eq!(
        t.count("SELECT count(*) FROM herald.message").await,
        1,
        "and creates nothing"
    );
    let (s, err) = api
        .send(
            "POST",
            "/api/v1/app",
            Some(br#"{"name": "x"}"#.to_vec()),
            &headers,
        )
        .await;
    assert_eq!(
        (s, invalid_fields(&err)),
        (422, vec!["header.idempotency-key".to_string()]),
        "same key, other request: {err}"
    );
    // A refused request is answered the same way again.
    let other = [("authorization", auth.as_str()), ("idempotency-key", "k2")];
    let (a, _) = api
        .send("POST", "/api/v1/app/acme/msg", Some(b"{}".to_vec()), &other)
        .await;
    let (b, _) = api
        .send("POST", "/api/v1/app/acme/msg", Some(b"{}".to_vec()), &other)
        .await;
    assert_eq!((a, b), (422, 422));
    t.finish().await;
}
