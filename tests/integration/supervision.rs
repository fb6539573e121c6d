//! Supervision and lifecycle: restarts, contained panics, SIGTERM.

use std::{
    collections::HashSet,
    process::{Command, Stdio},
    time::Duration,
};

use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

async fn restarts(t: &TestApp, actor: &str) -> u32 {
    let actors = t.app.dispatcher().unwrap().actors().await;
    actors
        .iter()
        .find(|a| a.name == actor)
        .map(|a| a.restarts)
        .unwrap_or_else(|| panic!("no actor {actor}"))
}

#[actix_rt::test]
async fn stopped_actors_are_restarted_and_delivery_goes_on() {
    let t = spawn_app().await;
    let receiver = mock_receiver(&[(200, None)]).await;
    let app = t.create_app("m").await;
    t.create_endpoint(&app, &receiver.uri(), None).await;
    t.send(&app, "a", "{}").await;
    wait_for_requests(&receiver, 1, WAIT).await;

    let dispatcher = t.app.dispatcher().unwrap();
    for actor in ["sender-0", "sender-1", "claimer", "recorder", "reaper"] {
        assert!(dispatcher.restart_actor(actor).await, "{actor} exists");
    }
    assert!(!dispatcher.restart_actor("sender-99").await);
    for actor in ["sender-0", "sender-1", "claimer", "recorder", "reaper"] {
        let reached = wait_until(WAIT, || restarts(&t, actor), |n| *n >= 1).await;
        assert!(reached, "{actor} was restarted");
    }

    for i in 0..20 {
        t.send(&app, "a", &format!("{{\"n\": {i}}}")).await;
    }
    wait_for_requests(&receiver, 21, WAIT).await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        21,
        WAIT,
    )
    .await;
    t.finish().await;
}

#[actix_rt::test]
async fn a_panic_in_delivery_code_is_contained_and_the_delivery_retried() {
    // Every other delivery panics inside the pipeline.
    let t = spawn_app_with(&[("HERALD_FAULT_PANIC_ONE_IN", "2")]).await;
    let receiver = mock_receiver(&[(200, None)]).await;
    let app = t.create_app("m").await;
    t.create_endpoint(&app, &receiver.uri(), None).await;
    for i in 0..30 {
        t.send(&app, "a", &format!("{{\"n\": {i}}}")).await;
    }
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        30,
        Duration::from_secs(60),
    )
    .await;
    // Panics do not use up attempts, and the senders never died.
    assert_eq!(
        t.count("SELECT count(*) FROM herald.attempt WHERE NOT succeeded")
            .await,
        0
    );
    assert_eq!(
        restarts(&t, "sender-0").await + restarts(&t, "sender-1").await,
        0
    );
    t.finish().await;
}

#[actix_rt::test]
async fn sigterm_with_work_in_flight_loses_nothing() {
    let database_url = fresh_database().await;
    // Migrate and seed through an API-only instance.
    let seed = spawn_app_on(&database_url, &[("HERALD_ROLE", "api")]).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(700)))
        .mount(&receiver)
        .await;
    let app = seed.create_app("m").await;
    seed.create_endpoint(&app, &receiver.uri(), None).await;
    let total = 60;
    let mut ids = HashSet::new();
    for i in 0..total {
        ids.insert(seed.send(&app, "a", &format!("{{\"n\": {i}}}")).await);
    }

    // A real process, stopped with a real SIGTERM while requests are open.
    let settings = [
        (
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        ),
        ("HERALD_DATABASE_URL", database_url.as_str()),
        ("HERALD_ROLE", "worker"),
        ("HERALD_SENDERS", "2"),
        ("HERALD_SENDER_CONCURRENCY", "4"),
        ("HERALD_SHUTDOWN_GRACE", "5s"),
        ("HERALD_LOG_LEVEL", "info"),
        ("HERALD_ALLOWED_CIDRS", "127.0.0.0/8"),
        // Without it, development would generate a key into `.herald/` of the directory
        // it runs in.
        ("HERALD_ENCRYPTION_KEY", TEST_KEY),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .envs(settings)
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_requests(&receiver, 1, WAIT).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = wait_until(
        WAIT,
        || std::future::ready(child.try_wait().unwrap()),
        |s| s.is_some(),
    )
    .await;
    assert!(exited, "herald exits after SIGTERM");
    assert!(child.wait().unwrap().success(), "exit code 0");

    // Nothing stranded: every delivery is either done or back in the queue.
    assert_eq!(
        seed.count("SELECT count(*) FROM herald.delivery WHERE status = 'sending'")
            .await,
        0
    );
    assert_eq!(
        seed.count("SELECT count(*) FROM herald.delivery WHERE status IN ('pending', 'succeeded')")
            .await,
        total
    );
    let delivered_before = seed
        .count("SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'")
        .await;
    assert!(
        delivered_before < total,
        "the test must stop Herald mid-run (all {total} were done)"
    );

    // A new instance finishes the rest; every message reached the receiver.
    let worker = spawn_app_on(&database_url, &[("HERALD_ROLE", "worker")]).await;
    seed.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        total,
        WAIT,
    )
    .await;
    let seen: HashSet<String> = receiver
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| header(r, "webhook-id"))
        .collect();
    assert_eq!(seen, ids, "every message arrived");
    worker.app.shutdown().await;
    seed.finish().await;
}
