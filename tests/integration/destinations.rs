//! Destination safety end to end: creation refuses forbidden URLs, sending refuses them too
//! (with the reason in the attempt log), redirects are not followed.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

#[actix_rt::test]
async fn endpoint_creation_refuses_private_destinations() {
    // Only IPv6 loopback allowed: the IPv4 loopback and every private range stay refused.
    let t = spawn_app_with(&[("HERALD_ROLE", "api"), ("HERALD_ALLOWED_CIDRS", "::1/128")]).await;
    let api = t.api();
    api.create_app("acme", "Acme").await;
    for url in [
        "http://127.0.0.1:8080/",
        "http://localhost/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/",
        "http://0.0.0.0/",
    ] {
        let (s, err) = api
            .post("/api/v1/app/acme/endpoint", json!({"url": url}))
            .await;
        assert_eq!(
            (s, invalid_fields(&err)),
            (422, vec!["body.url".to_string()]),
            "{url}"
        );
        assert!(
            err["detail"][0]["msg"].as_str().unwrap().contains("public"),
            "{err}"
        );
    }
    api.expect(
        201,
        "POST",
        "/api/v1/app/acme/endpoint",
        Some(json!({"url": "http://[::1]:9/"})),
    )
    .await;
    api.expect(
        201,
        "POST",
        "/api/v1/app/acme/endpoint",
        Some(json!({"url": "https://example.com/hooks"})),
    )
    .await;
    t.finish().await;
}

#[actix_rt::test]
async fn allowlist_and_https_requirement() {
    let t = spawn_app_with(&[
        ("HERALD_ROLE", "api"),
        (
            "HERALD_DESTINATION_ALLOWLIST",
            "hooks.example.com,*.merchant.io",
        ),
        ("HERALD_REQUIRE_HTTPS", "true"),
    ])
    .await;
    let api = t.api();
    api.acme_endpoint(json!({"url": "https://hooks.example.com/a"}))
        .await;
    api.expect(
        201,
        "POST",
        "/api/v1/app/acme/endpoint",
        Some(json!({"url": "https://eu.merchant.io/a"})),
    )
    .await;
    for url in [
        "https://evil.example.net/",
        "https://merchant.io/",
        "http://hooks.example.com/a",
    ] {
        let (s, err) = api
            .post("/api/v1/app/acme/endpoint", json!({"url": url}))
            .await;
        assert_eq!(s, 422, "{url}: {err}");
    }
    t.finish().await;
}

#[actix_rt::test]
async fn forbidden_destinations_fail_at_send_time_with_the_reason_logged() {
    // The receiver is on 127.0.0.1, which this instance does not allow; the endpoints were
    // written before the policy (straight into the database), as after a policy change.
    let t = spawn_app_with(&[
        ("HERALD_ALLOWED_CIDRS", "::1/128"),
        ("HERALD_RETRY_SCHEDULE", "1h"),
    ])
    .await;
    let receiver = mock_receiver(&[(200, None)]).await;
    let app = t.create_app("m").await;
    let port = receiver.address().port();
    t.create_endpoint(&app, &format!("http://127.0.0.1:{port}/"), None)
        .await;
    t.create_endpoint(&app, &format!("http://localhost:{port}/"), None)
        .await;
    t.create_endpoint(&app, &format!("http://2130706433:{port}/"), None)
        .await;
    t.send(&app, "a", "{}").await;

    t.wait_for_count("SELECT count(*) FROM herald.attempt", 3, WAIT)
        .await;
    let errors: Vec<(Option<i16>, String)> =
        sqlx::query_as("SELECT status_code, error FROM herald.attempt")
            .fetch_all(&t.pool)
            .await
            .unwrap();
    for (code, error) in &errors {
        assert_eq!(*code, None);
        assert!(
            error.contains("destination refused") && error.contains("loopback"),
            "{error}"
        );
    }
    assert!(
        receiver.received_requests().await.unwrap().is_empty(),
        "nothing reached the receiver"
    );
    t.finish().await;
}
