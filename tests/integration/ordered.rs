//! Issue 14, part 2: strictly ordered endpoints, across instances.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;
use wiremock::{matchers::method, Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(120);

/// What the receiver saw: every request's sequence number, in arrival order, and the
/// sequence numbers it accepted.
#[derive(Default)]
struct Seen {
    requests: Vec<u64>,
    accepted: Vec<u64>,
    /// Requests for a message other than the head: the one after the last accepted.
    out_of_turn: Vec<(u64, usize)>,
}

/// Fails `fail_percent` of requests at random; answers 2xx otherwise; and checks, as each
/// request arrives, that it is for the head of the queue (with one delivery in flight at a
/// time, no other request can arrive).
struct Flaky {
    seen: Arc<Mutex<Seen>>,
    fail_percent: u32,
}

fn seq(request: &Request) -> u64 {
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    body["seq"].as_u64().unwrap()
}

impl Respond for Flaky {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = seq(request);
        let mut seen = self.seen.lock().unwrap();
        seen.requests.push(n);
        let head = seen.accepted.len() as u64;
        if n != head {
            let at = seen.requests.len();
            seen.out_of_turn.push((n, at));
        }
        if rand::random::<u32>() % 100 < self.fail_percent {
            return ResponseTemplate::new(500);
        }
        if n == head {
            seen.accepted.push(n);
        }
        ResponseTemplate::new(200)
    }
}

#[actix_rt::test]
async fn an_ordered_endpoint_gets_every_message_in_order_from_three_instances() {
    let overrides = [
        (
            "HERALD_RETRY_SCHEDULE",
            "1ms,1ms,1ms,1ms,1ms,1ms,1ms,1ms,1ms,1ms,1ms,1ms",
        ),
        ("HERALD_POLL_INTERVAL", "50ms"),
    ];
    let first = spawn_app_with(&overrides).await;
    let others = [
        spawn_app_on(&first.database_url, &overrides).await,
        spawn_app_on(&first.database_url, &overrides).await,
    ];
    let api = first.api();
    api.create_app("shop", "Shop").await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ordered = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Flaky {
            seen: seen.clone(),
            fail_percent: 30,
        })
        .mount(&ordered)
        .await;
    let unordered = mock_receiver(&[(200, None)]).await;
    let ep = api
        .expect(
            201,
            "POST",
            "/api/v1/app/shop/endpoint",
            Some(json!({"url": format!("{}/ordered", ordered.uri()), "ordered": true})),
        )
        .await;
    assert_eq!(
        (&ep["ordered"], &ep["orderedOnDead"]),
        (&json!(true), &json!("skip"))
    );
    api.expect(
        201,
        "POST",
        "/api/v1/app/shop/endpoint",
        Some(json!({"url": format!("{}/unordered", unordered.uri())})),
    )
    .await;
    // 1,000 messages, written in order by a producer in batches of 100.
    let n = 1000u64;
    for batch in 0..10 {
        let mut tx = first.pool.begin().await.unwrap();
        for i in batch * 100..(batch + 1) * 100 {
            sqlx::query("SELECT herald.send_message('shop', 'payment.updated', $1)")
                .bind(json!({"seq": i}).to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    // The unordered endpoint beside it gets everything, meanwhile, at its own pace.
    wait_for_requests(&unordered, n as usize, WAIT).await;
    let done = wait_until(
        WAIT,
        || async { seen.lock().unwrap().accepted.len() as u64 },
        |accepted| *accepted >= n,
    )
    .await;
    {
        let seen = seen.lock().unwrap();
        assert!(done, "{} of {n} accepted", seen.accepted.len());
        assert_eq!(
            seen.accepted,
            (0..n).collect::<Vec<_>>(),
            "in enqueue order"
        );
        assert!(
            seen.out_of_turn.is_empty(),
            "requests for other than the head (seq, at request #): {:?}",
            &seen.out_of_turn[..seen.out_of_turn.len().min(10)]
        );
        let failed = seen.requests.len() as u64 - n;
        assert!(
            failed > n / 10,
            "the receiver failed {failed} times: too few to test"
        );
    }
    // The unordered endpoint got each message once.
    let requests = unordered.received_requests().await.unwrap();
    let ids: std::collections::HashSet<String> =
        requests.iter().map(|r| header(r, "webhook-id")).collect();
    assert_eq!((requests.len(), ids.len()), (n as usize, n as usize));
    for t in others {
        t.app.shutdown().await;
    }
    first.finish().await;
}

/// A receiver that fails the messages whose `fail` is true, and accepts the others.
async fn failing_some(server: &MockServer) {
    server.reset().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_partial_json(json!({"fail": true})))
        .respond_with(ResponseTemplate::new(500))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(server)
        .await;
}

fn seqs(requests: &[Request], path: &str) -> Vec<u64> {
    requests
        .iter()
        .filter(|r| r.url.path() == path && r.method.as_str() == "POST")
        .map(seq)
        .collect()
}

#[actix_rt::test]
async fn a_dead_head_is_skipped_or_blocks_until_replayed() {
    let t = spawn_app_with(&[("HERALD_RETRY_SCHEDULE", "10ms")]).await;
    let api = t.api();
    api.create_app("shop", "Shop").await;
    let receiver = MockServer::start().await;
    failing_some(&receiver).await;
    for (path, on_dead) in [("/skip", "skip"), ("/block", "block")] {
        api.expect(
            201,
            "POST",
            "/api/v1/app/shop/endpoint",
            Some(
                json!({"url": format!("{}{path}", receiver.uri()), "ordered": true,
                        "orderedOnDead": on_dead, "eventTypes": null}),
            ),
        )
        .await;
    }
    for (i, fail) in [(0, true), (1, false), (2, false)] {
        api.expect(
            202,
            "POST",
            "/api/v1/app/shop/msg",
            Some(json!({"eventType": "payment.updated", "payload": {"seq": i, "fail": fail}})),
        )
        .await;
    }
    // Skip: the head dies after its two attempts, and the rest follow in order.
    let ok = wait_until(
        WAIT,
        || async { receiver.received_requests().await.unwrap_or_default() },
        |r| seqs(r, "/skip").len() >= 4,
    )
    .await;
    assert!(ok);
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(seqs(&requests, "/skip"), [0, 0, 1, 2]);
    // Block: the head died too, and nothing behind it has been tried.
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery d JOIN herald.endpoint e ON e.id = d.endpoint_id \
         WHERE e.url LIKE '%/block' AND d.status = 'dead'",
        1,
        WAIT,
    )
    .await;
    // A later message has gone all the way through the skipping endpoint since: claims ran.
    api.expect(
        202,
        "POST",
        "/api/v1/app/shop/msg",
        Some(json!({"eventType": "payment.updated", "payload": {"seq": 3, "fail": false}})),
    )
    .await;
    let ok = wait_until(
        WAIT,
        || async { receiver.received_requests().await.unwrap_or_default() },
        |r| seqs(r, "/skip").len() >= 5,
    )
    .await;
    assert!(ok);
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(
        seqs(&requests, "/block"),
        [0, 0],
        "blocked behind its dead head"
    );
    // Replayed (and now accepted), the head goes, then the rest in order.
    receiver.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let dead: i64 = sqlx::query_scalar(
        "SELECT d.id FROM herald.delivery d JOIN herald.endpoint e ON e.id = d.endpoint_id \
         WHERE e.url LIKE '%/block' AND d.status = 'dead'",
    )
    .fetch_one(&t.pool)
    .await
    .unwrap();
    api.expect(
        202,
        "POST",
        &format!("/api/v1/dead-letter/dlv_{dead}/replay"),
        None,
    )
    .await;
    let ok = wait_until(
        WAIT,
        || async { receiver.received_requests().await.unwrap_or_default() },
        |r| seqs(r, "/block").len() >= 4,
    )
    .await;
    assert!(ok);
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(seqs(&requests, "/block"), [0, 1, 2, 3]);
    t.finish().await;
}
