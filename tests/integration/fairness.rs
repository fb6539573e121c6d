//! Politeness toward receivers: the circuit breaker and the rate limit, end to end.

use std::time::Duration;

use serde_json::json;
use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(30);

#[actix_rt::test]
async fn breaker_opens_defers_without_using_attempts_probes_and_closes() {
    let t = spawn_app_with(&[
        ("HERALD_BREAKER_FAILURES", "3"),
        ("HERALD_BREAKER_WINDOW", "20"),
        // Long enough that a poller on a loaded machine sees it open.
        ("HERALD_BREAKER_COOLDOWN", "4s"),
        (
            "HERALD_RETRY_SCHEDULE",
            "200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms",
        ),
        ("HERALD_ENDPOINT_CONCURRENCY", "1"),
    ])
    .await;
    let api = t.api();
    let receiver = MockServer::start().await;
    // Down for the first three attempts, then up again.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(3)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let ep = api.acme_endpoint(json!({"url": receiver.uri()})).await;
    let circuit = format!(
        "/api/v1/app/acme/endpoint/{}/circuit",
        ep["id"].as_str().unwrap()
    );
    assert_eq!(
        api.expect(200, "GET", &circuit, None).await["state"],
        "closed"
    );
    api.post_messages("acme", 5).await;

    // Three failures in a row open it, and the API shows it.
    let opened = wait_until(WAIT, || api.get(&circuit), |(_, c)| c["state"] == "open").await;
    assert!(opened, "the breaker opened");
    // While open nothing is sent, and deferred deliveries keep their attempts.
    t.wait_for_count(
        "SELECT count(*) FROM herald.attempt WHERE NOT succeeded",
        3,
        WAIT,
    )
    .await;
    // After the cool-down one probe succeeds, it closes, and everything is delivered.
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        5,
        WAIT,
    )
    .await;
    assert_eq!(
        t.count("SELECT count(*) FROM herald.attempt WHERE NOT succeeded")
            .await,
        3,
        "no attempt wasted while open"
    );
    // Every attempt used is an HTTP attempt in the log: the deferrals used none.
    let attempts_used: i64 = t
        .count("SELECT sum(attempts)::bigint FROM herald.delivery")
        .await;
    assert_eq!(
        attempts_used,
        t.count("SELECT count(*) FROM herald.attempt").await
    );
    assert_eq!(attempts_used, 8, "3 failures and 5 successes");
    // The close is published on its own write, shortly after the deliveries are recorded.
    let closed = wait_until(WAIT, || api.get(&circuit), |(_, c)| c["state"] == "closed").await;
    assert!(closed, "the successful probe closed the breaker");
    t.finish().await;
}

#[actix_rt::test]
async fn rate_limit_holds_at_the_receiver() {
    let t = spawn_app().await;
    let api = t.api();
    let receiver = mock_receiver(&[(204, None)]).await;
    api.acme_endpoint(json!({"url": receiver.uri(), "throttleRate": 5}))
        .await;
    let total = 20;
    api.post_messages("acme", total).await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        total as i64,
        WAIT,
    )
    .await;
    // Arrival times at the receiver: in any one-second window, at most 5 (+1 for the
    // window's edges) arrived, and the whole run took at least (20 - 5) / 5 = 3 seconds.
    let mut times: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT started_at FROM herald.attempt WHERE succeeded ORDER BY started_at",
    )
    .fetch_all(&t.pool)
    .await
    .unwrap();
    times.sort();
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|t| (**t - *start).num_milliseconds() < 1000)
            .count();
        assert!(
            in_window <= 6,
            "{in_window} requests within one second from {start}"
        );
    }
    let span = *times.last().unwrap() - times[0];
    assert!(
        span.num_milliseconds() >= 2800,
        "20 messages at 5/s took only {span}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM herald.attempt WHERE NOT succeeded")
            .await,
        0,
        "deferred, not failed"
    );
    t.finish().await;
}

#[actix_rt::test]
async fn an_endpoint_failing_too_long_is_disabled_and_can_be_re_enabled() {
    let t = spawn_app_with(&[
        ("HERALD_DISABLE_AFTER", "1s"),
        (
            "HERALD_RETRY_SCHEDULE",
            "200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms",
        ),
    ])
    .await;
    let api = t.api();
    let receiver = mock_receiver(&[(500, None)]).await;
    let ep = api.acme_endpoint(json!({"url": receiver.uri()})).await;
    let path = format!("/api/v1/app/acme/endpoint/{}", ep["id"].as_str().unwrap());
    api.expect(
        202,
        "POST",
        "/api/v1/app/acme/msg",
        Some(json!({"eventType": "a", "payload": {}})),
    )
    .await;

    let disabled = wait_until(WAIT, || api.get(&path), |(_, e)| e["disabled"] == true).await;
    assert!(
        disabled,
        "disabled after failing for longer than HERALD_DISABLE_AFTER"
    );
    let e = api.expect(200, "GET", &path, None).await;
    assert!(
        e["disabledReason"]
            .as_str()
            .unwrap()
            .contains("no successful delivery since"),
        "{e}"
    );
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'dead'",
        1,
        WAIT,
    )
    .await;

    let enabled = api
        .expect(200, "POST", &format!("{path}/enable"), None)
        .await;
    assert_eq!(
        (
            enabled["disabled"].as_bool(),
            enabled["disabledReason"].is_null()
        ),
        (Some(false), true)
    );
    let clock: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT first_failure_at FROM herald.endpoint")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(clock, None, "re-enabling restarts the failure clock");
    t.finish().await;
}

#[actix_rt::test]
async fn hanging_requests_open_the_breaker_before_they_time_out() {
    // Requests time out after 12s; open for 4s (a third) they count as hanging, which
    // leaves 8 s to see the breaker open before any attempt is written.
    let t = spawn_app_with(&[
        ("HERALD_REQUEST_TIMEOUT", "12s"),
        ("HERALD_ENDPOINT_CONCURRENCY", "2"),
        ("HERALD_BREAKER_FAILURES", "2"),
        ("HERALD_BREAKER_WINDOW", "20"),
    ])
    .await;
    let api = t.api();
    let receiver = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&receiver)
        .await;
    let ep = api.acme_endpoint(json!({"url": receiver.uri()})).await;
    let circuit = format!(
        "/api/v1/app/acme/endpoint/{}/circuit",
        ep["id"].as_str().unwrap()
    );
    api.post_messages("acme", 10).await;
    let opened = wait_until(WAIT, || api.get(&circuit), |(_, c)| c["state"] == "open").await;
    assert!(opened, "the breaker opened");
    assert_eq!(
        t.count("SELECT count(*) FROM herald.attempt").await,
        0,
        "before any request timed out"
    );
    assert_eq!(
        receiver.received_requests().await.unwrap().len(),
        2,
        "only the capped two were sent"
    );
    t.finish().await;
}
