//! `kill -9` while message creates with idempotency keys are in flight (what the Svix SDKs
//! send, and retry with the same key after a timeout or a 5xx): after a restart, retrying
//! every key with the same body ends, for every key, in a 2xx and exactly one message.

use std::{collections::HashMap, sync::Arc, time::Duration};

use crate::{
    herald::TOKEN,
    scene::Scene,
    serial,
    support::{bounded, wait_until},
};

const KEYS: usize = 600;

fn body(i: usize) -> serde_json::Value {
    serde_json::json!({"eventType": "fault.0", "payload": {"i": i}})
}

/// POSTs message `i` with key `key-{i}`: the status and the message id, or `None` when the
/// request got no answer.
async fn create(client: &reqwest::Client, base: &str, i: usize) -> Option<(u16, Option<String>)> {
    let res = client
        .post(format!("{base}/api/v1/app/faults/msg"))
        .bearer_auth(TOKEN)
        .header("idempotency-key", format!("key-{i}"))
        .json(&body(i))
        .send()
        .await
        .ok()?;
    let status = res.status().as_u16();
    let json: serde_json::Value = res.json().await.ok()?;
    Some((status, json["id"].as_str().map(String::from)))
}

#[actix_rt::test]
async fn keyed_creates_cut_by_a_kill_end_in_exactly_one_message_each() {
    let _serial = serial().await;
    bounded(Duration::from_secs(180), async {
        let scene = Scene::new(1).await;
        let mut herald = scene.herald("herald-1", &[]);
        herald.wait_ready(Duration::from_secs(30)).await;
        let base = herald.base_url();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();

        // All keys at once; the kill comes when the first answers are back, so that the
        // rest are anywhere between sent and answered.
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut in_flight = Vec::new();
        for i in 0..KEYS {
            let (client, base, answered) = (client.clone(), base.clone(), answered.clone());
            in_flight.push(actix_rt::spawn(async move {
                let r = create(&client, &base, i).await;
                if r.is_some() {
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                r
            }));
        }
        let some = wait_until(
            Duration::from_secs(30),
            || {
                let answered = answered.clone();
                async move { answered.load(std::sync::atomic::Ordering::SeqCst) }
            },
            |n| *n >= 50,
        )
        .await;
        assert!(some, "no answers before the kill");
        herald.kill();
        let mut first: HashMap<usize, String> = HashMap::new();
        for (i, task) in in_flight.into_iter().enumerate() {
            if let Some((202, Some(id))) = task.await.unwrap() {
                first.insert(i, id);
            }
        }
        let stored_at_kill = scene.count("SELECT count(*) FROM herald.message").await;
        assert!(
            first.len() < KEYS,
            "every request was answered before the kill: the test proves nothing"
        );

        herald.start_again();
        herald.wait_ready(Duration::from_secs(30)).await;
        // Every key, retried with the same body until it gets a 2xx.
        let mut ids: HashMap<usize, String> = HashMap::new();
        for i in 0..KEYS {
            let mut last = None;
            let done = wait_until(
                Duration::from_secs(20),
                || create(&client, &base, i),
                |r| {
                    last = r.clone();
                    matches!(r, Some((s, Some(_))) if (200..300).contains(s))
                },
            )
            .await;
            assert!(done, "key-{i} never got a 2xx; last answer {last:?}");
            let id = last.and_then(|(_, id)| id).unwrap();
            if let Some(earlier) = first.get(&i) {
                assert_eq!(&id, earlier, "key-{i}: the retry answers the first message");
            }
            ids.insert(i, id);
        }
        let (messages, distinct): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT payload::jsonb->>'i') FROM herald.message",
        )
        .fetch_one(&scene.db)
        .await
        .unwrap();
        eprintln!(
            "{} of {KEYS} answered before the kill, {stored_at_kill} stored at the kill; \
             {messages} messages after every retry",
            first.len()
        );
        assert_eq!(
            (messages, distinct),
            (KEYS as i64, KEYS as i64),
            "exactly one message per key"
        );
        let unique: std::collections::HashSet<&String> = ids.values().collect();
        assert_eq!(unique.len(), KEYS);
    })
    .await;
}
