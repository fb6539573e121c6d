//! The transactional outbox: `herald.send_message` inside the producer's transaction.

use std::time::Duration;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

#[actix_rt::test]
async fn committed_message_is_delivered_once_and_rolled_back_one_never() {
    let t = spawn_app().await;
    let receiver = mock_receiver(&[(200, None)]).await;
    let app = t.create_app("merchant-1").await;
    let (endpoint, secret) = t.create_endpoint(&app, &receiver.uri(), None).await;

    // The producer's own transaction: state change plus message, then rolled back.
    let mut tx = t.pool.begin().await.unwrap();
    sqlx::query("CREATE TABLE payment (id int PRIMARY KEY, status text)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT herald.send_message($1, 'payment.confirmed', '{\"id\": 1}')")
        .bind(&app)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    // The same, committed. The uid works as well as the id.
    let payload = "{\"id\":  2,\n \"status\": \"confirmed\"}"; // odd spacing must survive
    let mut tx = t.pool.begin().await.unwrap();
    let msg_id: String =
        sqlx::query_scalar("SELECT herald.send_message('merchant-1', 'payment.confirmed', $1)")
            .bind(payload)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert!(msg_id.starts_with("msg_"), "{msg_id}");

    let requests = wait_for_requests(&receiver, 1, WAIT).await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        1,
        WAIT,
    )
    .await;
    let requests_after = receiver.received_requests().await.unwrap();
    assert_eq!(requests_after.len(), 1, "delivered exactly once");
    assert_eq!(
        t.count("SELECT count(*) FROM herald.message").await,
        1,
        "the rollback left nothing"
    );

    let r = &requests[0];
    assert_eq!(
        r.body,
        payload.as_bytes(),
        "payload bytes are sent unchanged"
    );
    assert_eq!(header(r, "webhook-id"), msg_id);
    assert_eq!(header(r, "content-type"), "application/json");
    verify(&secret.expose(), r).expect("signature verifies independently");
    let ts: i64 = header(r, "webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert_eq!(t.delivery_status(&msg_id, &endpoint).await, "succeeded");
    t.finish().await;
}

#[actix_rt::test]
async fn fan_out_follows_event_type_filters() {
    let t = spawn_app().await;
    let receiver = mock_receiver(&[(204, None)]).await;
    let app = t.create_app("m").await;
    let url = |p: &str| format!("{}/{p}", receiver.uri());
    let (all, _) = t.create_endpoint(&app, &url("all"), None).await;
    let (payments, _) = t
        .create_endpoint(
            &app,
            &url("payments"),
            Some(&["payment.confirmed", "payment.expired"]),
        )
        .await;
    let (orders, _) = t
        .create_endpoint(&app, &url("orders"), Some(&["order.created"]))
        .await;
    let (disabled, _) = t.create_endpoint(&app, &url("disabled"), None).await;
    sqlx::query("UPDATE herald.endpoint SET disabled = true WHERE id = $1")
        .bind(&disabled)
        .execute(&t.pool)
        .await
        .unwrap();
    let other_app = t.create_app("other").await;
    t.create_endpoint(&other_app, &url("other-app"), None).await;

    let confirmed = t.send(&app, "payment.confirmed", "{}").await;
    let created = t.send(&app, "order.created", "{}").await;
    let settled = t.send(&app, "stream.settled", "{}").await;

    let fanout = |msg: &str| {
        let (pool, msg) = (t.pool.clone(), msg.to_string());
        async move {
            let mut v: Vec<String> =
                sqlx::query_scalar("SELECT endpoint_id FROM herald.delivery WHERE message_id = $1")
                    .bind(msg)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            v.sort();
            v
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        fanout(&confirmed).await,
        sorted(vec![all.clone(), payments.clone()])
    );
    assert_eq!(
        fanout(&created).await,
        sorted(vec![all.clone(), orders.clone()])
    );
    assert_eq!(fanout(&settled).await, vec![all.clone()]);

    let requests = wait_for_requests(&receiver, 5, WAIT).await;
    let mut paths: Vec<String> = requests.iter().map(|r| r.url.path().to_string()).collect();
    paths.sort();
    assert_eq!(paths, vec!["/all", "/all", "/all", "/orders", "/payments"]);
    t.finish().await;
}

#[actix_rt::test]
async fn duplicate_event_id_returns_the_first_message_and_creates_nothing() {
    let t = spawn_app().await;
    let app = t.create_app("m").await;
    t.create_endpoint(&app, "http://127.0.0.1:9/never", None)
        .await;
    let send = |payload: &'static str| {
        let (pool, app) = (t.pool.clone(), app.clone());
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT herald.send_message($1, 'order.created', $2, 'order-42')",
            )
            .bind(app)
            .bind(payload)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let first = send("{\"n\": 1}").await;
    let second = send("{\"n\": 2}").await;
    assert_eq!(first, second);
    assert_eq!(t.count("SELECT count(*) FROM herald.message").await, 1);
    assert_eq!(t.count("SELECT count(*) FROM herald.delivery").await, 1);
    let stored: String = sqlx::query_scalar("SELECT payload FROM herald.message")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(stored, "{\"n\": 1}", "the first message wins");
    t.finish().await;
}

#[actix_rt::test]
async fn bad_input_is_refused_with_a_clear_error() {
    let t = spawn_app().await;
    let app = t.create_app("m").await;
    let err = |sql: &'static str| {
        let (pool, app) = (t.pool.clone(), app.clone());
        async move {
            let e = sqlx::query(sql).bind(app).execute(&pool).await.unwrap_err();
            e.as_database_error()
                .expect("a database error")
                .message()
                .to_string()
        }
    };
    let msg = err("SELECT herald.send_message($1, 'a', '{not json')").await;
    assert!(msg.contains("payload is not valid JSON"), "{msg}");
    let msg = err("SELECT herald.send_message($1 || 'nope', 'a', '{}')").await;
    assert!(msg.contains("no application"), "{msg}");
    let msg = err("SELECT herald.send_message($1, '', '{}')").await;
    assert!(msg.contains("event_type"), "{msg}");
    assert_eq!(t.count("SELECT count(*) FROM herald.message").await, 0);
    t.finish().await;
}

/// A batch job enqueues thousands of messages in ONE transaction (they all share
/// `next_attempt_at`). The claimer must keep claiming while such rows are due, not fall back
/// to its poll tick after a short claim: with polling set to a minute, everything arrives
/// long before the first tick.
#[actix_rt::test]
async fn one_big_producer_transaction_drains_without_waiting_for_the_poll_tick() {
    let t = spawn_app_with(&[
        ("HERALD_POLL_INTERVAL", "60s"),
        ("HERALD_CLAIM_BATCH", "100"),
    ])
    .await;
    let receiver = mock_receiver(&[(204, None)]).await;
    let app = t.create_app("batch-job").await;
    t.create_endpoint(&app, &receiver.uri(), None).await;
    let mut tx = t.pool.begin().await.unwrap();
    sqlx::query(
        "SELECT herald.send_message($1, 'order.settled', format('{\"order\": %s}', n)) \
         FROM generate_series(1, 2000) n",
    )
    .bind(&app)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        2000,
        Duration::from_secs(30),
    )
    .await;
    t.finish().await;
}
