//! `kill -9` while a provider's webhooks pour into a source: every event Herald answered 2xx
//! is in its log and reaches the source's endpoint after a restart; the provider's retries
//! of the unanswered ones end in exactly one forward per event.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::json;

use crate::{
    herald::TOKEN,
    scene::Scene,
    serial,
    support::{bounded, wait_until},
};

const EVENTS: usize = 400;
const SECRET: &str = "whsec_fault_stripe_secret";

fn body(i: usize) -> String {
    format!(r#"{{"id":"evt_{i}","type":"charge.succeeded","data":{{"i":{i}}}}}"#)
}

/// `Stripe-Signature` for `body` now, computed with OpenSSL's HMAC (not Herald's code).
fn stripe_signature(body: &str) -> String {
    let t = chrono::Utc::now().timestamp();
    let key = openssl::pkey::PKey::hmac(SECRET.as_bytes()).unwrap();
    let mut signer =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
    signer.update(format!("{t}.{body}").as_bytes()).unwrap();
    let hex: String = signer
        .sign_to_vec()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// Posts event `i` as Stripe would: the status and the message id, or `None` when the
/// request got no answer.
async fn deliver(client: &reqwest::Client, url: &str, i: usize) -> Option<(u16, Option<String>)> {
    let body = body(i);
    let res = client
        .post(url)
        .header("stripe-signature", stripe_signature(&body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .ok()?;
    let status = res.status().as_u16();
    let json: serde_json::Value = res.json().await.ok()?;
    Some((status, json["messageId"].as_str().map(String::from)))
}

#[actix_rt::test]
async fn events_answered_before_a_kill_are_all_forwarded_and_none_twice() {
    let _serial = serial().await;
    bounded(Duration::from_secs(180), async {
        let scene = Scene::new(0).await;
        let mut herald = scene.herald("herald-1", &[]);
        herald.wait_ready(Duration::from_secs(30)).await;
        let base = herald.base_url();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let api = |path: &str, body: serde_json::Value| {
            client
                .post(format!("{base}{path}"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
        };
        let source: serde_json::Value = api(
            "/ingest/api/v1/source",
            json!({"name": "Stripe", "uid": "stripe", "type": "stripe", "config": {"secret": SECRET}}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let url = source["ingestUrl"].as_str().unwrap().to_string();
        // The endpoint signs with the receiver's key, so the receiver verifies every forward.
        let secret = format!("whsec_{}", STANDARD.encode(scene.receiver.secret_key()));
        let created = api(
            "/ingest/api/v1/source/stripe/endpoint",
            json!({"url": scene.receiver.url("ingest"), "secret": secret}),
        )
        .await
        .unwrap();
        assert_eq!(created.status(), 201);

        let answered = Arc::new(AtomicUsize::new(0));
        let mut in_flight = Vec::new();
        for i in 0..EVENTS {
            let (client, url, answered) = (client.clone(), url.clone(), answered.clone());
            in_flight.push(actix_rt::spawn(async move {
                let r = deliver(&client, &url, i).await;
                if r.is_some() {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                r
            }));
        }
        let some = wait_until(
            Duration::from_secs(30),
            || {
                let answered = answered.clone();
                async move { answered.load(Ordering::SeqCst) }
            },
            |n| *n >= 50,
        )
        .await;
        assert!(some, "no answers before the kill");
        herald.kill();
        let mut acknowledged: HashMap<usize, String> = HashMap::new();
        for (i, task) in in_flight.into_iter().enumerate() {
            if let Some((200, Some(id))) = task.await.unwrap() {
                acknowledged.insert(i, id);
            }
        }
        assert!(
            acknowledged.len() < EVENTS,
            "every request was answered before the kill: the test proves nothing"
        );
        // What was answered 2xx is written: nothing acknowledged is missing from the log.
        let logged: HashSet<String> = sqlx::query_scalar(
            "SELECT event_key FROM herald.ingest_event WHERE outcome = 'accepted'",
        )
        .fetch_all(&scene.db)
        .await
        .unwrap()
        .into_iter()
        .collect();
        for i in acknowledged.keys() {
            assert!(logged.contains(&format!("evt_{i}")), "evt_{i} was answered 2xx but not written");
        }

        herald.start_again();
        herald.wait_ready(Duration::from_secs(30)).await;
        // The provider retries what it got no 2xx for (Stripe does, for days).
        for i in (0..EVENTS).filter(|i| !acknowledged.contains_key(i)) {
            let mut last = None;
            let done = wait_until(
                Duration::from_secs(20),
                || deliver(&client, &url, i),
                |r| {
                    last = r.clone();
                    matches!(r, Some((200, Some(_))))
                },
            )
            .await;
            assert!(done, "evt_{i} never got a 2xx; last answer {last:?}");
        }
        // Every event is forwarded, once.
        scene.wait_arrivals(EVENTS, Duration::from_secs(60)).await;
        let messages = scene
            .count("SELECT count(*) FROM herald.message WHERE forward_headers IS NOT NULL")
            .await;
        let (duplicates, bad) = scene
            .receiver
            .tally(|t| (t.duplicates(), t.bad.len()));
        eprintln!(
            "{} of {EVENTS} answered before the kill; {messages} forwarded messages; \
             {duplicates} duplicate arrivals",
            acknowledged.len()
        );
        assert_eq!(messages, EVENTS as i64, "one message per event");
        assert_eq!(bad, 0, "every forward verifies");
        // A delivery leased at the kill may arrive twice (at least once); no event is
        // forwarded as two messages.
        let per_event: i64 = scene
            .count(
                "SELECT count(*) FROM (SELECT event_key FROM herald.ingest_event \
                 WHERE outcome = 'accepted' GROUP BY event_key HAVING count(*) > 1) twice",
            )
            .await;
        assert_eq!(per_event, 0);
    })
    .await;
}
