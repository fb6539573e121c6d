//! Message creates under concurrency: the group commit writes concurrent requests together
//! and still answers each one as if it had been alone.

use std::collections::{BTreeSet, HashMap};

use futures_util::future::join_all;
use serde_json::json;

use crate::support::*;

const MSG: &str = "/api/v1/app/acme/msg";

#[actix_rt::test]
async fn concurrent_creates_share_commits_and_each_gets_its_own_answer() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    api.acme_endpoint(json!({"url": "https://example.com/a"}))
        .await;

    // 200 at once; every fifth shares its eventId with the one before it.
    let bodies: Vec<serde_json::Value> = (0..200)
        .map(|i| {
            let event_id = format!("ev-{}", i - (i % 5 == 1) as i32);
            json!({"eventType": "payment.confirmed", "eventId": event_id,
                   "payload": {"i": i}, "tags": ["t1"], "channels": [format!("c{}", i % 3)]})
        })
        .collect();
    let answers = join_all(bodies.iter().map(|b| api.post(MSG, b.clone()))).await;

    let mut ids_by_event: HashMap<String, Vec<(u16, String)>> = HashMap::new();
    for (body, (status, answer)) in bodies.iter().zip(&answers) {
        let event_id = body["eventId"].as_str().unwrap().to_string();
        match status {
            202 => {
                // The answer describes this request's message, as stored.
                assert_eq!(answer["payload"], body["payload"], "{answer}");
                assert_eq!(answer["eventId"], body["eventId"]);
                assert_eq!(answer["channels"], body["channels"]);
                assert_eq!(answer["tags"], json!(["t1"]));
                let id = answer["id"].as_str().unwrap().to_string();
                let stored = api.expect(200, "GET", &format!("{MSG}/{id}"), None).await;
                assert_eq!(stored, *answer, "the answer is what GET returns");
                ids_by_event.entry(event_id).or_default().push((202, id));
            }
            409 => {
                let detail = answer["detail"].as_str().unwrap();
                let id = detail.rsplit(' ').next().unwrap().to_string();
                ids_by_event.entry(event_id).or_default().push((409, id));
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    // Each eventId: exactly one message, created once; a second request got 409 naming it.
    assert_eq!(ids_by_event.len(), 160);
    for (event_id, answers) in &ids_by_event {
        let created: Vec<_> = answers.iter().filter(|(s, _)| *s == 202).collect();
        assert_eq!(created.len(), 1, "{event_id}: {answers:?}");
        assert!(
            answers.iter().all(|(_, id)| *id == created[0].1),
            "{answers:?}"
        );
    }
    assert_eq!(t.count("SELECT count(*) FROM herald.message").await, 160);
    assert_eq!(t.count("SELECT count(*) FROM herald.delivery").await, 160);
    // Group commit: concurrent requests shared transactions.
    let transactions = t
        .count("SELECT count(DISTINCT xmin::text) FROM herald.message")
        .await;
    assert!(
        transactions < 160,
        "{transactions} transactions for 160 messages"
    );
    t.finish().await;
}

#[actix_rt::test]
async fn a_message_the_database_refuses_fails_alone() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    api.acme_endpoint(json!({"url": "https://example.com/a"}))
        .await;
    // Stands in for a value PostgreSQL refuses although the API accepted it.
    sqlx::raw_sql(
        r#"CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF NEW.payload LIKE '%poison%' THEN
                   RAISE EXCEPTION 'poisoned payload' USING ERRCODE = 'invalid_parameter_value';
               END IF;
               RETURN NEW;
           END $$;
           CREATE TRIGGER refuse_poison BEFORE INSERT ON herald.message
               FOR EACH ROW EXECUTE FUNCTION refuse_poison();"#,
    )
    .execute(&t.pool)
    .await
    .unwrap();

    let bodies: Vec<serde_json::Value> = (0..60)
        .map(|i| {
            let payload = if i % 20 == 7 {
                json!({"poison": i})
            } else {
                json!({"i": i})
            };
            json!({"eventType": "a", "payload": payload})
        })
        .collect();
    let answers = join_all(bodies.iter().map(|b| api.post(MSG, b.clone()))).await;
    for (body, (status, answer)) in bodies.iter().zip(&answers) {
        if body["payload"].get("poison").is_some() {
            assert_eq!(status, &422, "{answer}");
            assert_eq!(invalid_fields(answer), vec!["body.payload".to_string()]);
        } else {
            assert_eq!(status, &202, "{answer}");
        }
    }
    assert_eq!(t.count("SELECT count(*) FROM herald.message").await, 57);
    t.finish().await;
}

#[actix_rt::test]
async fn http_and_sql_fan_out_alike() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    let app = t.create_app("acme").await;
    let url = "https://example.com/hook";
    let (orders, _) = t.create_endpoint(&app, url, Some(&["order.created"])).await;
    let (eu, _) = t.create_endpoint(&app, url, None).await;
    let (everything, _) = t.create_endpoint(&app, url, None).await;
    let (off, _) = t.create_endpoint(&app, url, None).await;
    let (x_eu, _) = t.create_endpoint(&app, url, Some(&["x"])).await;
    sqlx::query("UPDATE herald.endpoint SET channels = '{eu}' WHERE id = ANY($1)")
        .bind(vec![eu.clone(), x_eu.clone()])
        .execute(&t.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE herald.endpoint SET disabled = true WHERE id = $1")
        .bind(&off)
        .execute(&t.pool)
        .await
        .unwrap();
    let names: HashMap<&str, &str> = [
        (orders.as_str(), "orders"),
        (eu.as_str(), "eu"),
        (everything.as_str(), "everything"),
        (x_eu.as_str(), "x_eu"),
    ]
    .into();

    let fan_out = |id: String| {
        let pool = t.pool.clone();
        let names = names.clone();
        async move {
            let eps: Vec<String> =
                sqlx::query_scalar("SELECT endpoint_id FROM herald.delivery WHERE message_id = $1")
                    .bind(id)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            eps.iter()
                .map(|e| names[e.as_str()])
                .collect::<BTreeSet<_>>()
        }
    };
    for (event_type, channels) in [
        ("order.created", None),
        ("payment.confirmed", Some(vec!["eu"])),
        ("x", Some(vec!["eu", "us"])),
        ("x", Some(vec!["us"])),
        ("x", None),
    ] {
        let via_http = api
            .expect(
                202,
                "POST",
                MSG,
                Some(json!({"eventType": event_type, "payload": {}, "channels": channels})),
            )
            .await;
        let via_sql: String =
            sqlx::query_scalar("SELECT herald.send_message($1, $2, '{}', NULL, $3)")
                .bind(&app)
                .bind(event_type)
                .bind(&channels)
                .fetch_one(&t.pool)
                .await
                .unwrap();
        let http = fan_out(via_http["id"].as_str().unwrap().to_string()).await;
        let sql = fan_out(via_sql).await;
        assert_eq!(http, sql, "{event_type} {channels:?}");
        assert!(
            http.contains("everything"),
            "{event_type} {channels:?}: {http:?}"
        );
    }
    t.finish().await;
}

#[actix_rt::test]
async fn concurrent_requests_with_idempotency_keys_create_once_per_key() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    api.acme_endpoint(json!({"url": "https://example.com/a"}))
        .await;
    let auth = format!("Bearer {TOKEN}");
    // 60 requests at once; the last 10 repeat the keys of the first 10 (an SDK retrying
    // while the first attempt is still being answered).
    let keys: Vec<String> = (0..60).map(|i| format!("key-{}", i % 50)).collect();
    let send = |key: &str| {
        let body = serde_json::to_vec(&json!({"eventType": "a", "payload": {"key": key}}));
        let headers = [
            ("authorization", auth.clone()),
            ("idempotency-key", key.to_string()),
        ];
        let api = &api;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            api.send("POST", MSG, Some(body.unwrap()), &headers).await
        }
    };
    let answers = join_all(keys.iter().map(|k| send(k))).await;
    let mut first: HashMap<&str, String> = HashMap::new();
    for (key, (status, answer)) in keys.iter().zip(&answers) {
        match status {
            202 => {
                let id = answer["id"].as_str().unwrap().to_string();
                // A repeat that came after the first answer replays it.
                if let Some(earlier) = first.insert(key, id.clone()) {
                    assert_eq!(earlier, id, "{key}");
                }
            }
            // A repeat that came while the first was running.
            409 => assert!(answer["detail"]
                .as_str()
                .unwrap()
                .contains("still being processed")),
            other => panic!("{key}: {other} {answer}"),
        }
    }
    assert_eq!(t.count("SELECT count(*) FROM herald.message").await, 50);
    // Every key now replays its first answer.
    for key in &keys[..50] {
        let (status, answer) = send(key).await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["id"].as_str().unwrap();
        assert_eq!(
            first.get(key.as_str()).map(String::as_str),
            Some(id),
            "{key}"
        );
    }
    assert_eq!(t.count("SELECT count(*) FROM herald.message").await, 50);
    t.finish().await;
}
