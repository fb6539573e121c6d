//! Delivery semantics: retries, dead letters, 410, Retry-After, timeouts, redirects, leases.

use std::time::Duration;

use herald::{
    delivery::{Disposition, Outcome},
    store::Store,
};
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, sqlx::FromRow)]
struct Attempt {
    attempt_no: i32,
    status_code: Option<i16>,
    succeeded: bool,
    response: Option<String>,
    error: Option<String>,
    started_at: chrono::DateTime<chrono::Utc>,
}

async fn attempts(t: &TestApp, msg: &str) -> Vec<Attempt> {
    sqlx::query_as(
        "SELECT attempt_no, status_code, succeeded, response, error, started_at \
                    FROM herald.attempt WHERE message_id = $1 ORDER BY attempt_no",
    )
    .bind(msg)
    .fetch_all(&t.pool)
    .await
    .unwrap()
}

#[actix_rt::test]
async fn fail_fail_succeed_records_three_attempts_with_same_body_and_new_signatures() {
    // Retries more than a second apart, so each attempt has its own unix timestamp.
    let t = spawn_app_with(&[("HERALD_RETRY_SCHEDULE", "1100ms,1100ms,1100ms")]).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("try later"))
        .up_to_n_times(2)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let app = t.create_app("m").await;
    let (endpoint, secret) = t.create_endpoint(&app, &receiver.uri(), None).await;
    let msg = t
        .send(&app, "payment.detected", r#"{"amount": "10.00"}"#)
        .await;

    let requests = wait_for_requests(&receiver, 3, WAIT).await;
    t.wait_for_count("SELECT count(*) FROM herald.attempt", 3, WAIT)
        .await;
    assert_eq!(t.delivery_status(&msg, &endpoint).await, "succeeded");

    assert!(
        requests.iter().all(|r| r.body == requests[0].body),
        "same bytes every time"
    );
    let ids: Vec<String> = requests.iter().map(|r| header(r, "webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == msg),
        "same webhook-id every time: {ids:?}"
    );
    let mut stamps: Vec<String> = requests
        .iter()
        .map(|r| header(r, "webhook-timestamp"))
        .collect();
    stamps.dedup();
    assert_eq!(stamps.len(), 3, "a new timestamp per attempt");
    for r in &requests {
        verify(&secret.expose(), r).expect("every attempt is signed for its own timestamp");
    }

    let log = attempts(&t, &msg).await;
    let summary: Vec<(i32, Option<i16>, bool)> = log
        .iter()
        .map(|a| (a.attempt_no, a.status_code, a.succeeded))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, Some(500), false),
            (2, Some(500), false),
            (3, Some(200), true)
        ]
    );
    assert_eq!(log[0].response.as_deref(), Some("try later"));
    let gap = log[1].started_at - log[0].started_at;
    assert!(
        gap.num_milliseconds() >= 1000,
        "retried after the schedule's delay, not before: {gap}"
    );
    t.finish().await;
}

#[actix_rt::test]
async fn receiver_that_always_fails_ends_dead_after_the_schedule() {
    let t = spawn_app().await; // schedule: 100ms, 100ms → 3 attempts
    let receiver = mock_receiver(&[(502, None)]).await;
    let app = t.create_app("m").await;
    let (endpoint, _) = t.create_endpoint(&app, &receiver.uri(), None).await;
    let msg = t.send(&app, "order.created", "{}").await;

    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'dead'",
        1,
        WAIT,
    )
    .await;
    let log = attempts(&t, &msg).await;
    assert_eq!(log.len(), 3);
    assert!(log
        .iter()
        .all(|a| a.status_code == Some(502) && !a.succeeded));
    let (attempts_used, reason): (i32, String) =
        sqlx::query_as("SELECT attempts, dead_reason FROM herald.delivery WHERE message_id = $1 AND endpoint_id = $2")
            .bind(&msg).bind(&endpoint).fetch_one(&t.pool).await.unwrap();
    assert_eq!(attempts_used, 3);
    assert!(reason.contains("3 attempts"), "{reason}");
    assert_eq!(
        receiver.received_requests().await.unwrap().len(),
        3,
        "nothing after death"
    );
    t.finish().await;
}

#[actix_rt::test]
async fn gone_disables_the_endpoint_and_stops_its_deliveries() {
    let t = spawn_app_with(&[("HERALD_RETRY_SCHEDULE", "30s")]).await;
    let receiver = MockServer::start().await;
    Mock::given(path("/gone"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&receiver)
        .await;
    let app = t.create_app("m").await;
    let (endpoint, _) = t
        .create_endpoint(&app, &format!("{}/gone", receiver.uri()), None)
        .await;
    // A delivery waiting for its retry when the 410 arrives (scheduled in the same
    // transaction, so the dispatcher never sees it due).
    let mut tx = t.pool.begin().await.unwrap();
    let waiting: String = sqlx::query_scalar("SELECT herald.send_message($1, 'a', '{}')")
        .bind(&app)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE herald.delivery SET next_attempt_at = now() + interval '1 hour' WHERE message_id = $1")
        .bind(&waiting).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let msg = t.send(&app, "a", "{}").await;

    t.wait_for_count(
        "SELECT count(*) FROM herald.endpoint WHERE disabled",
        1,
        WAIT,
    )
    .await;
    let (reason,): (String,) =
        sqlx::query_as("SELECT disabled_reason FROM herald.endpoint WHERE id = $1")
            .bind(&endpoint)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert!(reason.contains("410"), "{reason}");
    assert_eq!(t.delivery_status(&msg, &endpoint).await, "dead");
    assert_eq!(
        t.delivery_status(&waiting, &endpoint).await,
        "dead",
        "waiting deliveries stop too"
    );
    let why: String =
        sqlx::query_scalar("SELECT dead_reason FROM herald.delivery WHERE message_id = $1")
            .bind(&waiting)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert!(why.contains("endpoint disabled"), "{why}");
    // A new message no longer fans out to it.
    t.send(&app, "a", "{}").await;
    assert_eq!(t.count("SELECT count(*) FROM herald.delivery").await, 2);
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);
    t.finish().await;
}

#[actix_rt::test]
async fn throttled_receiver_is_retried_after_its_retry_after() {
    let t = spawn_app_with(&[("HERALD_RETRY_SCHEDULE", "100ms,100ms")]).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "2"))
        .up_to_n_times(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let app = t.create_app("m").await;
    t.create_endpoint(&app, &receiver.uri(), None).await;
    let msg = t.send(&app, "a", "{}").await;

    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        1,
        WAIT,
    )
    .await;
    let log = attempts(&t, &msg).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].status_code, Some(429));
    let gap = log[1].started_at - log[0].started_at;
    assert!(
        gap.num_milliseconds() >= 1900,
        "Retry-After: 2 honoured, not the 100ms schedule: {gap}"
    );
    t.finish().await;
}

#[actix_rt::test]
async fn timeouts_redirects_and_long_bodies_are_recorded_as_failures() {
    let t = spawn_app_with(&[
        ("HERALD_REQUEST_TIMEOUT", "500ms"),
        ("HERALD_RETRY_SCHEDULE", "1h"),
        ("HERALD_RESPONSE_BODY_LIMIT", "100"),
    ])
    .await;
    let receiver = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&receiver)
        .await;
    let target = format!("{}/target", receiver.uri());
    Mock::given(path("/redirect"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", target.as_str()))
        .mount(&receiver)
        .await;
    Mock::given(path("/target"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    Mock::given(path("/chatty"))
        .respond_with(ResponseTemplate::new(500).set_body_string("x".repeat(10_000)))
        .mount(&receiver)
        .await;
    let app = t.create_app("m").await;
    for p in ["slow", "redirect", "chatty"] {
        t.create_endpoint(&app, &format!("{}/{p}", receiver.uri()), None)
            .await;
    }
    let msg = t.send(&app, "a", "{}").await;
    t.wait_for_count("SELECT count(*) FROM herald.attempt", 3, WAIT)
        .await;

    let by_path = |p: &'static str| {
        let (pool, msg) = (t.pool.clone(), msg.clone());
        async move {
            sqlx::query_as::<_, Attempt>(
                "SELECT attempt_no, status_code, succeeded, response, error, started_at \
                FROM herald.attempt WHERE message_id = $1 AND url LIKE '%/' || $2",
            )
            .bind(msg)
            .bind(p)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let slow = by_path("slow").await;
    assert_eq!(slow.status_code, None);
    assert!(
        slow.error.as_deref().unwrap_or("").contains("timeout"),
        "{slow:?}"
    );
    let redirect = by_path("redirect").await;
    assert_eq!(
        (redirect.status_code, redirect.succeeded),
        (Some(302), false)
    );
    let paths: Vec<String> = receiver
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert!(
        !paths.contains(&"/target".to_string()),
        "redirect not followed: {paths:?}"
    );
    let chatty = by_path("chatty").await;
    assert_eq!(
        chatty.response.as_deref().map(str::len),
        Some(100),
        "response kept truncated"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM herald.delivery WHERE status = 'pending'")
            .await,
        3,
        "all retried later"
    );
    t.finish().await;
}

#[actix_rt::test]
async fn abandoned_lease_is_delivered_again_after_it_expires() {
    // An API-only instance migrates the database but dispatches nothing.
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let receiver = mock_receiver(&[(200, None)]).await;
    let app = t.create_app("m").await;
    t.create_endpoint(&app, &receiver.uri(), None).await;
    let msg = t.send(&app, "a", "{}").await;
    // A dispatcher that leased it and then died (kill -9): the lease runs for 2 more seconds.
    let expires: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "UPDATE herald.delivery SET status = 'sending', lease_owner = 'crashed', lease_token = gen_random_uuid(), \
         lease_expires_at = now() + interval '2 seconds' RETURNING lease_expires_at")
        .fetch_one(&t.pool).await.unwrap();

    let worker = spawn_app_on(&t.database_url, &[("HERALD_ROLE", "worker")]).await;
    let requests = wait_for_requests(&receiver, 1, WAIT).await;
    assert_eq!(header(&requests[0], "webhook-id"), msg);
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        1,
        WAIT,
    )
    .await;
    let log = attempts(&t, &msg).await;
    assert_eq!(log.len(), 1);
    assert!(
        log[0].started_at >= expires,
        "not taken while the lease was still valid"
    );
    worker.app.shutdown().await;
    t.finish().await;
}

#[actix_rt::test]
async fn outcome_with_a_stale_lease_token_changes_nothing() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let app = t.create_app("m").await;
    t.create_endpoint(&app, "http://127.0.0.1:9/", None).await;
    t.send(&app, "a", "{}").await;
    let store = Store::from_pool(t.pool.clone());

    let (_, first) = store
        .claim("instance-a", 10, Duration::from_secs(60), &[])
        .await
        .unwrap();
    let first = first.jobs;
    assert_eq!(first.len(), 1);
    // Instance A stalls past its lease; the reaper returns the row and B takes it.
    sqlx::query("UPDATE herald.delivery SET lease_expires_at = now() - interval '1 second'")
        .execute(&t.pool)
        .await
        .unwrap();
    assert_eq!(store.reap_expired(100).await.unwrap(), 1);
    let (_, second) = store
        .claim("instance-b", 10, Duration::from_secs(60), &[])
        .await
        .unwrap();
    let second = second.jobs;
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].lease_token, second[0].lease_token);

    // A's late outcome: ignored entirely, not even an attempt row.
    let late = Outcome::without_attempt(&first[0], Disposition::Succeeded);
    let recorded = store.record_outcomes(&[late], 4).await.unwrap();
    assert_eq!((recorded.applied.len(), recorded.stale), (0, 1));
    let (status, owner): (String, String) =
        sqlx::query_as("SELECT status::text, lease_owner FROM herald.delivery")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), owner.as_str()), ("sending", "instance-b"));

    // B's outcome applies.
    let current = Outcome::without_attempt(&second[0], Disposition::Succeeded);
    let recorded = store.record_outcomes(&[current], 4).await.unwrap();
    assert_eq!(recorded.applied, vec![second[0].delivery_id]);
    assert_eq!(t.count("SELECT count(*) FROM herald.delivery WHERE status = 'succeeded' AND lease_token IS NULL").await, 1);
    t.finish().await;
}

/// Rows of one transaction share `next_attempt_at`; the claim's oldest and newest halves
/// must still be disjoint (ties broken by id), and it says whether due rows were left.
#[actix_rt::test]
async fn a_claim_of_rows_with_equal_due_times_leases_a_full_batch_and_reports_what_is_left() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let app = t.create_app("m").await;
    t.create_endpoint(&app, "http://127.0.0.1:9/", None).await;
    sqlx::query("SELECT herald.send_message($1, 'a', '{}') FROM generate_series(1, 1000)")
        .bind(&app)
        .execute(&t.pool)
        .await
        .unwrap();
    let store = Store::from_pool(t.pool.clone());
    let lease = Duration::from_secs(60);
    let mut seen = std::collections::HashSet::new();
    for round in 0..2 {
        let (_, claimed) = store.claim("i", 400, lease, &[]).await.unwrap();
        assert_eq!(claimed.jobs.len(), 400, "round {round}: a full batch");
        assert!(claimed.more_due, "round {round}: rows are left");
        assert!(claimed.jobs.iter().all(|j| seen.insert(j.delivery_id)));
    }
    let (_, last) = store.claim("i", 400, lease, &[]).await.unwrap();
    assert_eq!(last.jobs.len(), 200);
    assert!(!last.more_due, "nothing is left");
    t.finish().await;
}
