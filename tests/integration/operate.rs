//! What an operator looks at: `/metrics` and the health routes.

use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use crate::support::{mock_receiver, spawn_app, spawn_app_with};

/// Scrapes `/metrics` and parses it with an independent Prometheus text parser.
async fn scrape(base: &str) -> Scrape {
    let res = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    let kind = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = res.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition")
}

/// The value of the sample `metric` whose labels include all of `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("{metric} is not expected to be a summary"),
        })
}

#[actix_rt::test]
async fn metrics_count_deliveries_by_outcome_and_show_queue_and_actors() {
    let t = spawn_app().await;
    let base = t.api().base;
    let ok = mock_receiver(&[(200, None)]).await;
    let failing = mock_receiver(&[(500, None)]).await;
    let app = t.create_app("shop").await;
    let (good, _) = t
        .create_endpoint(&app, &ok.uri(), Some(&["order.created"]))
        .await;
    let (bad, _) = t
        .create_endpoint(&app, &failing.uri(), Some(&["order.failed"]))
        .await;

    let before = scrape(&base).await;
    let delivered = |s: &Scrape, outcome: &str, ep: &str| {
        value(
            s,
            "herald_deliveries_total",
            &[("outcome", outcome), ("endpoint", ep)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(delivered(&before, "success", &good), 0.0);
    assert_eq!(value(&before, "herald_database_up", &[]), Some(1.0));

    for i in 0..5 {
        t.send(&app, "order.created", &format!(r#"{{"n":{i}}}"#))
            .await;
    }
    for i in 0..3 {
        t.send(&app, "order.failed", &format!(r#"{{"n":{i}}}"#))
            .await;
    }
    let timeout = Duration::from_secs(20);
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        5,
        timeout,
    )
    .await;
    // Test schedule "100ms,100ms": three attempts, then dead.
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'dead'",
        3,
        timeout,
    )
    .await;

    let after = scrape(&base).await;
    assert_eq!(delivered(&after, "success", &good), 5.0);
    assert_eq!(delivered(&after, "failure", &bad), 6.0);
    assert_eq!(delivered(&after, "dead", &bad), 3.0);
    assert_eq!(delivered(&after, "success", &bad), 0.0);
    let attempts = t.count("SELECT count(*) FROM herald.attempt").await;
    assert_eq!(attempts, 14);
    assert_eq!(
        value(&after, "herald_attempt_duration_seconds", &[]),
        Some(attempts as f64),
        "every attempt is in the latency histogram"
    );
    assert_eq!(
        value(&after, "herald_queue_depth", &[("state", "dead")]),
        Some(3.0)
    );
    assert_eq!(
        value(&after, "herald_queue_depth", &[("state", "due")]),
        Some(0.0)
    );
    assert_eq!(
        value(&after, "herald_queue_depth", &[("state", "leased")]),
        Some(0.0)
    );
    assert_eq!(
        value(&after, "herald_oldest_due_delivery_age_seconds", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &after,
            "herald_db_pool_connections",
            &[("pool", "api"), ("state", "max")]
        ),
        Some(16.0)
    );
    let now = chrono::Utc::now().timestamp() as f64;
    for actor in [
        "claimer",
        "recorder",
        "reaper",
        "retention",
        "sender-0",
        "sender-1",
    ] {
        let beat = value(
            &after,
            "herald_actor_last_heartbeat_timestamp_seconds",
            &[("actor", actor)],
        )
        .unwrap_or_else(|| panic!("no heartbeat for {actor}"));
        assert!(
            now - beat < 5.0,
            "{actor}'s heartbeat is {}s old",
            now - beat
        );
        assert_eq!(
            value(&after, "herald_actor_restarts_total", &[("actor", actor)]),
            Some(0.0)
        );
    }
    t.finish().await;
}

#[actix_rt::test]
async fn metrics_count_actor_restarts_and_queue_waiting_deliveries() {
    // A long poll interval and no endpoint that answers: messages wait in the queue.
    let t = spawn_app_with(&[("HERALD_RETRY_SCHEDULE", "1h")]).await;
    let base = t.api().base;
    let down = mock_receiver(&[(503, None)]).await;
    let app = t.create_app("shop").await;
    t.create_endpoint(&app, &down.uri(), None).await;
    t.send(&app, "a", "{}").await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'pending' AND attempts = 1",
        1,
        Duration::from_secs(10),
    )
    .await;
    let s = scrape(&base).await;
    assert_eq!(
        value(&s, "herald_queue_depth", &[("state", "scheduled")]),
        Some(1.0)
    );

    let dispatcher = t.app.dispatcher().unwrap();
    assert!(dispatcher.restart_actor("sender-1").await);
    let restarted = crate::support::wait_until(
        Duration::from_secs(10),
        || scrape(&base),
        |s| value(s, "herald_actor_restarts_total", &[("actor", "sender-1")]) == Some(1.0),
    )
    .await;
    assert!(
        restarted,
        "sender-1's restart shows in herald_actor_restarts_total"
    );
    t.finish().await;
}

/// `/api/v1/health` once it answers 200, or its last answer after 10 s.
async fn ready(api: &crate::support::Api) -> (u16, serde_json::Value) {
    let mut last = (0, serde_json::Value::Null);
    crate::support::wait_until(
        Duration::from_secs(10),
        || api.send("GET", "/api/v1/health", None, &[]),
        |answer| {
            last = answer.clone();
            answer.0 == 200
        },
    )
    .await;
    last
}

#[actix_rt::test]
async fn health_reports_every_actor_and_liveness_answers_without_the_database() {
    let t = spawn_app().await;
    let api = t.api();
    let (status, body) = ready(&api).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"]["status"], "OK");
    assert_eq!(body["queue"]["status"], "OK");
    let actors = body["actors"].as_object().unwrap();
    let mut names: Vec<&str> = actors.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "claimer",
            "reaper",
            "recorder",
            "retention",
            "sender-0",
            "sender-1"
        ]
    );
    assert!(actors.values().all(|a| a["status"] == "OK"), "{body}");

    let (status, body) = api.send("GET", "/api/v1/health/ping", None, &[]).await;
    assert_eq!((status, body), (204, serde_json::Value::Null));

    // An API-only instance is ready when its database is: it has no actors to report.
    let api_only = crate::support::spawn_app_on(&t.database_url, &[("HERALD_ROLE", "api")]).await;
    let (status, body) = api_only
        .api()
        .send("GET", "/api/v1/health", None, &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("actors").is_none(), "{body}");
    api_only.app.shutdown().await;

    // A worker-only instance serves health and metrics, and nothing of the API.
    let worker = crate::support::spawn_app_on(&t.database_url, &[("HERALD_ROLE", "worker")]).await;
    let w = worker.api();
    // Ready once each of its actors has answered a heartbeat (every 100 ms here; on a
    // loaded machine a first answer took 345 ms, past the 300 ms a heartbeat may age).
    let (status, body) = ready(&w).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["actors"].as_object().map(|a| a.len()),
        Some(6),
        "{body}"
    );
    assert!(!scrape(&w.base).await.samples.is_empty());
    let (status, body) = w.get("/api/v1/app").await;
    assert_eq!(status, 404, "{body}");
    worker.app.shutdown().await;
    t.finish().await;
}

#[actix_rt::test]
async fn metrics_on_their_own_port_open_there_and_for_operators_only_on_the_api_port() {
    let t = spawn_app_with(&[("HERALD_METRICS_LISTEN", "127.0.0.1:0")]).await;
    let own = format!(
        "http://127.0.0.1:{}",
        t.app.metrics_port().expect("a listener")
    );
    let s = scrape(&own).await;
    assert_eq!(value(&s, "herald_database_up", &[]), Some(1.0));
    assert!(value(&s, "herald_queue_depth", &[("state", "due")]).is_some());
    let api = t.api();
    let on_api = format!("{}/metrics", api.base);
    let client = reqwest::Client::new();
    let anonymous = client.get(&on_api).send().await.unwrap();
    assert_eq!(
        anonymous.status(),
        401,
        "no token, no metrics on the API's port"
    );
    let operator = client
        .get(&on_api)
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(operator.status(), 200);
    let app = api.create_app("acme", "Acme").await;
    let scoped = api
        .expect(
            201,
            "POST",
            "/api/v1/token",
            Some(serde_json::json!({"name": "acme", "appId": app["id"]})),
        )
        .await;
    let scoped = client
        .get(&on_api)
        .bearer_auth(scoped["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        scoped.status(),
        403,
        "an application's token sees no operator's metrics"
    );
    t.finish().await;
}

#[actix_rt::test]
async fn scrapes_share_one_count_of_the_queue_for_the_cache_interval() {
    // No dispatcher: what is enqueued stays due.
    let overrides = [("HERALD_ROLE", "api"), ("HERALD_METRICS_CACHE", "5m")];
    let t = spawn_app_with(&overrides).await;
    let base = t.api().base;
    let app = t.create_app("shop").await;
    t.create_endpoint(&app, "https://receiver.example/hook", None)
        .await;
    let due = |s: &Scrape| value(s, "herald_queue_depth", &[("state", "due")]);
    assert_eq!(due(&scrape(&base).await), Some(0.0));
    for _ in 0..3 {
        t.send(&app, "order.created", "{}").await;
    }
    assert_eq!(
        t.count("SELECT count(*) FROM herald.delivery WHERE status = 'pending'")
            .await,
        3
    );
    assert_eq!(
        due(&scrape(&base).await),
        Some(0.0),
        "the count of the first scrape, cached"
    );
    // Another instance without the cache sees them.
    let other = crate::support::spawn_app_on(&t.database_url, &[("HERALD_ROLE", "api")]).await;
    assert_eq!(due(&scrape(&other.api().base).await), Some(3.0));
    other.app.shutdown().await;
    t.finish().await;
}

/// Herald's sessions never JIT-compile: on a server with PostgreSQL's default `jit = on`
/// (as the test server has), a statement planned with `enable_seqscan = off` that scans a
/// small table would otherwise be compiled by LLVM on every execution.
#[actix_rt::test]
async fn herald_sessions_run_without_jit_on_a_server_that_has_it() {
    let t = spawn_app().await;
    let server: String = sqlx::query_scalar("SELECT current_setting('jit')")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    let herald: String = sqlx::query_scalar("SELECT current_setting('jit')")
        .fetch_one(t.app.pool())
        .await
        .unwrap();
    assert_eq!(
        (server.as_str(), herald.as_str()),
        ("on", "off"),
        "the test's own session has the server's default, Herald's has jit off"
    );
    t.finish().await;
}
