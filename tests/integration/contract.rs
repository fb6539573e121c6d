//! The contract holds everywhere: scheduled messages, payload retention, no field accepted
//! and ignored, tenant-safe identifiers, rows written by hand, and the small operations of
//! the current SDKs.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

fn at(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

#[actix_rt::test]
async fn deliver_at_schedules_a_message_through_the_api_and_in_sql() {
    let t = spawn_app_with(&[("HERALD_MAX_DELIVER_AHEAD", "1h")]).await;
    let receiver = mock_receiver(&[(204, None)]).await;
    let api = t.api();
    let ep = api.acme_endpoint(json!({"url": receiver.uri()})).await;

    // Two seconds ahead: stored now, reported, and not attempted before its time.
    // (PostgreSQL keeps microseconds.)
    let when = (Utc::now() + chrono::Duration::seconds(2)).trunc_subsecs(6);
    let msg = api
        .expect(
            202,
            "POST",
            "/api/v1/app/acme/msg",
            Some(json!({"eventType": "a", "payload": {"n": 1}, "deliverAt": when})),
        )
        .await;
    assert_eq!(at(&msg["deliverAt"]), when);
    let got = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/msg/{}", msg["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(at(&got["deliverAt"]), when);
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        1,
        WAIT,
    )
    .await;
    let started: DateTime<Utc> = sqlx::query_scalar("SELECT min(started_at) FROM herald.attempt")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert!(
        started >= when,
        "attempted at {started}, scheduled for {when}"
    );

    // A time past means now.
    let past = Utc::now() - chrono::Duration::hours(1);
    api.expect(
        202,
        "POST",
        "/api/v1/app/acme/msg",
        Some(json!({"eventType": "a", "payload": {"n": 2}, "deliverAt": past})),
    )
    .await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        2,
        WAIT,
    )
    .await;

    // Beyond HERALD_MAX_DELIVER_AHEAD: refused, naming the field; nothing stored.
    let far = Utc::now() + chrono::Duration::hours(2);
    let (s, err) = api
        .post(
            "/api/v1/app/acme/msg",
            json!({"eventType": "a", "payload": {}, "deliverAt": far}),
        )
        .await;
    assert_eq!(
        (s, invalid_fields(&err)),
        (422, vec!["body.deliverAt".to_string()])
    );

    // The same in SQL, as a named argument; the bound comes from the running Herald.
    let id: String = sqlx::query_scalar(
        "SELECT herald.send_message('acme', 'a', '{}', deliver_at => now() + interval '10 minutes')",
    )
    .fetch_one(&t.pool)
    .await
    .unwrap();
    let (due, scheduled): (DateTime<Utc>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT d.next_attempt_at, m.deliver_at FROM herald.delivery d \
         JOIN herald.message m ON m.id = d.message_id WHERE m.id = $1",
    )
    .bind(&id)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(Some(due), scheduled);
    assert!(due > Utc::now() + chrono::Duration::minutes(9));
    let err = sqlx::query(
        "SELECT herald.send_message('acme', 'a', '{}', deliver_at => now() + interval '2 hours')",
    )
    .execute(&t.pool)
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("HERALD_MAX_DELIVER_AHEAD"),
        "{err}"
    );
    let _ = ep;
    t.finish().await;
}

#[actix_rt::test]
async fn payload_retention_expunges_the_payload_and_keeps_the_message() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    api.create_app("acme", "A").await;
    let msg = api
        .expect(
            202,
            "POST",
            "/api/v1/app/acme/msg",
            Some(json!({"eventType": "a", "payload": {"card": "x"}, "payloadRetentionHours": 1})),
        )
        .await;
    let id = msg["id"].as_str().unwrap();
    let expires: DateTime<Utc> =
        sqlx::query_scalar("SELECT payload_expires_at FROM herald.message WHERE id = $1")
            .bind(id)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    let left = expires - Utc::now();
    assert!((59..=60).contains(&left.num_minutes()), "{left}");
    // An hour later, retention expunges it, once no delivery of it waits any more.
    sqlx::query("UPDATE herald.message SET payload_expires_at = now() - interval '1 second'")
        .execute(&t.pool)
        .await
        .unwrap();
    let ep = api
        .expect(
            201,
            "POST",
            "/api/v1/app/acme/endpoint",
            Some(json!({"url": "https://example.com"})),
        )
        .await;
    sqlx::query("INSERT INTO herald.delivery (message_id, endpoint_id, app_id) SELECT id, $2, app_id FROM herald.message WHERE id = $1")
        .bind(id)
        .bind(ep["id"].as_str().unwrap())
        .execute(&t.pool)
        .await
        .unwrap();
    let far_past = Utc::now() - chrono::Duration::days(3650);
    let prune = || herald::store::retention::prune_batch(&t.pool, far_past, far_past, 100);
    assert_eq!(
        prune().await.unwrap().unwrap().payloads,
        0,
        "its delivery still waits"
    );
    sqlx::query("UPDATE herald.delivery SET status = 'succeeded'")
        .execute(&t.pool)
        .await
        .unwrap();
    assert_eq!(prune().await.unwrap().unwrap().payloads, 1);
    let got = api
        .expect(200, "GET", &format!("/api/v1/app/acme/msg/{id}"), None)
        .await;
    assert_eq!(got["payload"], json!({}), "expunged; the message stays");

    for (body, field) in [
        (
            json!({"payloadRetentionPeriod": 1, "payloadRetentionHours": 1}),
            "body.payloadRetentionHours",
        ),
        (
            json!({"payloadRetentionPeriod": 91}),
            "body.payloadRetentionPeriod",
        ),
        (
            json!({"payloadRetentionHours": 0}),
            "body.payloadRetentionHours",
        ),
    ] {
        let mut body = body;
        body["eventType"] = json!("a");
        body["payload"] = json!({});
        let (s, err) = api.post("/api/v1/app/acme/msg", body).await;
        assert_eq!((s, invalid_fields(&err)), (422, vec![field.to_string()]));
    }
    t.finish().await;
}

#[actix_rt::test]
async fn a_field_herald_would_ignore_is_refused_by_name() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    api.acme_endpoint(json!({"url": "https://example.com/hook"}))
        .await;
    let (s, err) = api
        .post(
            "/api/v1/app/acme/msg",
            json!({"eventType": "a", "payload": {}, "transformationsParams": {"x": 1}}),
        )
        .await;
    assert_eq!(
        (s, invalid_fields(&err)),
        (422, vec!["body.transformationsParams".to_string()])
    );
    // null asks for nothing.
    api.expect(
        202,
        "POST",
        "/api/v1/app/acme/msg",
        Some(json!({"eventType": "a", "payload": {}, "transformationsParams": null})),
    )
    .await;
    // A nested one is named by its path.
    let (s, err) = api
        .post(
            "/api/v1/app/nova/msg",
            json!({"eventType": "a", "payload": {}, "application": {"name": "Nova", "rateLimit": 5}}),
        )
        .await;
    assert_eq!(
        (s, invalid_fields(&err)),
        (422, vec!["body.application.rateLimit".to_string()])
    );
    // PUT replaces the endpoint's fields; its secret and headers have routes of their own.
    let ep = "/api/v1/app/acme/endpoint";
    let list = api.expect(200, "GET", ep, None).await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    for field in ["secret", "headers"] {
        let mut body = json!({"url": "https://example.com/other"});
        body[field] = if field == "secret" {
            json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        } else {
            json!({"X-A": "1"})
        };
        let (s, err) = api.put(&format!("{ep}/{id}"), body).await;
        assert_eq!(
            (s, invalid_fields(&err)),
            (422, vec![format!("body.{field}")])
        );
    }
    t.finish().await;
}

#[actix_rt::test]
async fn status_code_class_zero_means_no_response() {
    let t = spawn_app().await;
    let receiver = mock_receiver(&[(500, None)]).await;
    let app = t.create_app("acme").await;
    // Port 9 (discard) refuses connections: attempts with no answer at all.
    let (dead, _) = t.create_endpoint(&app, "http://127.0.0.1:9/", None).await;
    let (failing, _) = t.create_endpoint(&app, &receiver.uri(), None).await;
    t.send(&app, "a", "{}").await;
    // Both deliveries run out of retries (100 ms apart): then the log stops growing and
    // the API's counts can be compared with it exactly. (Waiting for a count of attempts
    // on the way there raced with the retries: it read 6 where it waited for 4.)
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'dead'",
        2,
        WAIT,
    )
    .await;
    let api = t.api();
    let count = |ep: &str, class: &str| {
        let path =
            format!("/api/v1/app/acme/attempt/endpoint/{ep}?status_code_class={class}&limit=250");
        let api = &api;
        async move {
            api.expect(200, "GET", &path, None).await["data"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    let logged = |ep: &str| {
        let ep = ep.to_string();
        let pool = t.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM herald.attempt WHERE endpoint_id = $1",
            )
            .bind(ep)
            .fetch_one(&pool)
            .await
            .unwrap() as usize
        }
    };
    let refused = logged(&dead).await;
    assert!(refused >= 2, "retried: {refused}");
    assert_eq!(
        count(&dead, "0").await,
        refused,
        "every refused attempt is class 0"
    );
    assert_eq!(count(&dead, "500").await, 0);
    assert_eq!(count(&failing, "0").await, 0);
    assert_eq!(count(&failing, "500").await, logged(&failing).await);
    t.finish().await;
}

#[actix_rt::test]
async fn replay_missing_background_tasks_and_precheck() {
    let t = spawn_app().await;
    let first = mock_receiver(&[(204, None)]).await;
    let later = mock_receiver(&[(204, None)]).await;
    let api = t.api();
    api.acme_endpoint(json!({"url": first.uri()})).await;
    api.post_messages("acme", 3).await;
    wait_for_requests(&first, 3, WAIT).await;
    // An endpoint added afterwards never got them; replay-missing sends them, once.
    let ep = api
        .expect(
            201,
            "POST",
            "/api/v1/app/acme/endpoint",
            Some(json!({"url": later.uri()})),
        )
        .await;
    let path = format!(
        "/api/v1/app/acme/endpoint/{}/replay-missing",
        ep["id"].as_str().unwrap()
    );
    let since = Utc::now() - chrono::Duration::hours(1);
    let task = api
        .expect(202, "POST", &path, Some(json!({"since": since})))
        .await;
    assert_eq!(
        (
            task["status"].as_str(),
            task["task"].as_str(),
            task["data"]["messagesSent"].as_u64()
        ),
        (Some("finished"), Some("endpoint.replay"), Some(3))
    );
    wait_for_requests(&later, 3, WAIT).await;
    let again = api
        .expect(202, "POST", &path, Some(json!({"since": since})))
        .await;
    assert_eq!(again["data"]["messagesSent"], 0, "nothing sent twice");

    let id = task["id"].as_str().unwrap();
    assert!(id.starts_with("qtask_"), "{id}");
    let got = api
        .expect(200, "GET", &format!("/api/v1/background-task/{id}"), None)
        .await;
    // The same task; its data now also says what became of what it queued.
    for field in ["id", "status", "task", "updatedAt"] {
        assert_eq!(got[field], task[field], "{field}");
    }
    assert_eq!(got["data"]["messagesSent"], 3);
    let listed = api
        .expect(
            200,
            "GET",
            "/api/v1/background-task?task=endpoint.replay&status=finished",
            None,
        )
        .await;
    assert_eq!(data_len(&listed), 2);
    api.expect(404, "GET", "/api/v1/background-task/qtask_missing", None)
        .await;

    // Precheck: would anything receive it?
    let filtered = api
        .expect(
            201,
            "POST",
            "/api/v1/event-type",
            Some(json!({"name": "only.this", "description": "d"})),
        )
        .await;
    let _ = filtered;
    let pre = |body: serde_json::Value| {
        let api = &api;
        async move {
            api.expect(
                200,
                "POST",
                "/api/v1/app/acme/msg/precheck/active",
                Some(body),
            )
            .await["active"]
                .clone()
        }
    };
    assert_eq!(pre(json!({"eventType": "a"})).await, json!(true));
    api.create_app("empty", "Empty").await;
    let (s, v) = api
        .post(
            "/api/v1/app/empty/msg/precheck/active",
            json!({"eventType": "a"}),
        )
        .await;
    assert_eq!((s, v["active"].clone()), (200, json!(false)));
    t.finish().await;
}

#[actix_rt::test]
async fn a_uid_never_reaches_another_tenant() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    let a = api
        .expect(201, "POST", "/api/v1/app", Some(json!({"name": "A"})))
        .await;
    let a_id = a["id"].as_str().unwrap().to_string();
    // The API refuses a uid shaped like an id, and so does the schema.
    let (s, err) = api
        .post("/api/v1/app", json!({"name": "B", "uid": a_id}))
        .await;
    assert_eq!(
        (s, invalid_fields(&err)),
        (422, vec!["body.uid".to_string()])
    );
    let refused = sqlx::query("INSERT INTO herald.application (uid, name) VALUES ($1, 'B')")
        .bind(&a_id)
        .execute(&t.pool)
        .await;
    assert!(refused.is_err(), "the CHECK refuses it");
    // A row written before that rule (the rule switched off to write it): the id still
    // wins, everywhere.
    let b_id: String = written_before_the_rules(
        &t,
        "application",
        &format!("INSERT INTO herald.application (uid, name) VALUES ('{a_id}', 'B') RETURNING id"),
    )
    .await;
    for _ in 0..5 {
        sqlx::query("SELECT herald.send_message($1, 'a', '{}')")
            .bind(&a_id)
            .execute(&t.pool)
            .await
            .unwrap();
        api.expect(
            202,
            "POST",
            &format!("/api/v1/app/{a_id}/msg"),
            Some(json!({"eventType": "a", "payload": {}})),
        )
        .await;
    }
    let wrong: i64 = sqlx::query_scalar("SELECT count(*) FROM herald.message WHERE app_id = $1")
        .bind(&b_id)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(wrong, 0, "no message reached the other tenant");
    assert_eq!(
        api.expect(200, "GET", &format!("/api/v1/app/{a_id}"), None)
            .await["name"],
        "A"
    );
    t.finish().await;
}

#[actix_rt::test]
async fn a_row_written_by_hand_that_cannot_be_used_fails_only_its_own_deliveries() {
    let t = spawn_app().await;
    let receiver = mock_receiver(&[(204, None)]).await;
    let app = t.create_app("acme").await;
    t.create_endpoint(&app, &receiver.uri(), None).await;
    // The schema refuses such a row now; one written before the rule is simulated.
    let refused = sqlx::query(
        "INSERT INTO herald.endpoint (app_id, url, headers) VALUES ($1, 'http://127.0.0.1:9/', '{\"X-N\": 1}')",
    )
    .bind(&app)
    .execute(&t.pool)
    .await;
    assert!(refused.is_err());
    let (bad, _) = t.create_endpoint(&app, &receiver.uri(), None).await;
    written_before_the_rules(
        &t,
        "endpoint",
        &format!(
            "UPDATE herald.endpoint SET headers = '{{\"X-N\": 1}}', metadata = '{{\"n\": [1]}}', \
             uid = 'ep_looks_like_an_id' WHERE id = '{bad}' RETURNING id"
        ),
    )
    .await;
    for i in 0..50 {
        t.send(&app, "a", &format!("{{\"i\": {i}}}")).await;
    }
    // The good endpoint gets everything: the claim did not stall on the bad row.
    wait_for_requests(&receiver, 50, WAIT).await;
    t.wait_for_count(
        "SELECT count(DISTINCT delivery_id) FROM herald.attempt \
         WHERE error LIKE '%headers%not a string%'",
        50,
        WAIT,
    )
    .await;
    assert_eq!(
        receiver.received_requests().await.unwrap().len(),
        50,
        "none to the bad one"
    );
    // Reading it answers.
    let api = t.api();
    let got = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/endpoint/{bad}"),
            None,
        )
        .await;
    assert_eq!(got["metadata"]["n"], "[1]");
    let headers = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/endpoint/{bad}/headers"),
            None,
        )
        .await;
    assert_eq!(headers["headers"]["X-N"], "1");
    t.finish().await;
}

/// Runs `sql` (returning one text) with `table`'s contract trigger off, as a row written
/// before the rules existed.
async fn written_before_the_rules(t: &TestApp, table: &str, sql: &str) -> String {
    let mut tx = t.pool.begin().await.unwrap();
    sqlx::query(&format!(
        "ALTER TABLE herald.{table} DISABLE TRIGGER {table}_contract"
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    let id: String = sqlx::query_scalar(sql).fetch_one(&mut *tx).await.unwrap();
    sqlx::query(&format!(
        "ALTER TABLE herald.{table} ENABLE TRIGGER {table}_contract"
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

/// Every JSON value Herald stores is read back as it was sent, or refused at the door; no
/// stored value ever breaks a read (one event type's schema once broke the whole list).
#[actix_rt::test]
async fn extreme_json_values_are_stored_and_read_back_losslessly() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    let mut deep = String::from("1");
    for _ in 0..100 {
        deep = format!("[{deep}]");
    }
    let long = "é".repeat(100_000);
    let extreme = format!(
        r#"{{"max": 1.7976931348623157e308, "min": -1.7976931348623157e308, "tiny": 5e-324, "huge": 123456789012345678901234567890123456789, "exp": 1E+400, "deep": {deep}, "long": "{long}", "esc": "\ud83d\ude00\n\u0001"}}"#
    );
    // Raw bodies both ways: the test's own JSON parser would round these numbers.
    let send = |method: &str, path: &str, body: String| {
        let request = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", api.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body);
        async move {
            let res = request.send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    let schemas = format!(r#"{{"1": {extreme}}}"#);
    let (s, _) = send(
        "POST",
        "/api/v1/event-type",
        format!(r#"{{"name": "x.y", "description": "d", "schemas": {schemas}}}"#),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = send(
        "PUT",
        "/api/v1/event-type/x.z",
        format!(r#"{{"description": "d", "schemas": {schemas}}}"#),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = send(
        "PATCH",
        "/api/v1/event-type/x.z",
        format!(r#"{{"schemas": {schemas}}}"#),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(
        "POST",
        "/api/v1/app",
        format!(r#"{{"name": "{long}", "uid": "acme", "metadata": {{"k": "{long}"}}}}"#),
    )
    .await;
    assert_eq!(s, 201);
    let (s, msg) = send(
        "POST",
        "/api/v1/app/acme/msg",
        format!(r#"{{"eventType": "x.y", "payload": {extreme}}}"#),
    )
    .await;
    assert_eq!(s, 202, "{msg}");
    let (s, _) = send("POST", "/api/v1/app/acme/endpoint", format!(r#"{{"url": "https://example.com", "metadata": {{"k": "{long}"}}, "headers": {{"X-Long": "{}"}}}}"#, "a".repeat(4000))).await;
    assert_eq!(s, 201);
    // Ten thousand levels: kept as text, so read back as sent too.
    let mut very_deep = String::from("1");
    for _ in 0..10_000 {
        very_deep = format!("[{very_deep}]");
    }
    let deep_payload = format!(r#"{{"d": {very_deep}}}"#);
    let (s, deep_msg) = send(
        "POST",
        "/api/v1/app/acme/msg",
        format!(r#"{{"eventType": "a", "payload": {deep_payload}}}"#),
    )
    .await;
    assert_eq!(s, 202, "{deep_msg}");
    let deep_id = deep_msg.split('"').nth(3).unwrap().to_string();

    // Everything lists and reads, and the stored bytes come back exactly.
    let raw = |path: &str| {
        let url = format!("{}{path}", api.base);
        async move {
            let res = reqwest::Client::new()
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    for path in [
        "/api/v1/event-type?with_content=true&include_archived=true",
        "/api/v1/event-type/x.y",
        "/api/v1/event-type/x.z",
        "/api/v1/app",
        "/api/v1/app/acme",
        "/api/v1/app/acme/msg",
        "/api/v1/app/acme/endpoint",
    ] {
        let (s, body) = raw(path).await;
        assert_eq!(s, 200, "{path}");
        if path.contains("event-type") {
            assert!(
                body.contains(&schemas),
                "{path} returns the schemas as given"
            );
        }
        if path.contains("msg") {
            assert!(
                body.contains(&extreme),
                "{path} returns the payload as given"
            );
        }
    }
    let (s, body) = raw(&format!("/api/v1/app/acme/msg/{deep_id}")).await;
    assert_eq!(s, 200);
    assert!(body.contains(&deep_payload));
    t.finish().await;
}

/// Load, a race or an outage never answers 500: a statement cut by `statement_timeout` and
/// a database gone read-only (a failover) are 503 with `Retry-After`.
#[actix_rt::test]
async fn database_conditions_answer_503_with_retry_after() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let name = t.database_url.rsplit('/').next().unwrap().to_string();
    sqlx::query(&format!(
        r#"ALTER DATABASE "{name}" SET statement_timeout = '300ms'"#
    ))
    .execute(&t.pool)
    .await
    .unwrap();
    // A second instance: its sessions start with the new settings.
    let slow = spawn_app_on(
        &t.database_url,
        &[("HERALD_ROLE", "api"), ("HERALD_RUN_MIGRATIONS", "false")],
    )
    .await;
    let mut lock = t.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE herald.application IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/app", slow.api().base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    lock.rollback().await.unwrap();
    slow.app.shutdown().await;

    sqlx::query(&format!(
        r#"ALTER DATABASE "{name}" RESET statement_timeout"#
    ))
    .execute(&t.pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        r#"ALTER DATABASE "{name}" SET default_transaction_read_only = on"#
    ))
    .execute(&t.pool)
    .await
    .unwrap();
    let replica = spawn_app_on(
        &t.database_url,
        &[("HERALD_ROLE", "api"), ("HERALD_RUN_MIGRATIONS", "false")],
    )
    .await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/app", replica.api().base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "{:?}", res.text().await);
    replica.app.shutdown().await;
    sqlx::query(&format!(
        r#"ALTER DATABASE "{name}" RESET default_transaction_read_only"#
    ))
    .execute(&t.pool)
    .await
    .unwrap();
    t.finish().await;
}

#[actix_rt::test]
async fn idempotency_keys_belong_to_their_caller_and_stuck_claims_expire() {
    let other = "another-operator-token-0123";
    let t = spawn_app_with(&[
        ("HERALD_ROLE", "api"),
        ("HERALD_API_TOKENS", &format!("{TOKEN},{other}")),
        ("HERALD_IDEMPOTENCY_LOCK", "1s"),
    ])
    .await;
    let api = t.api();
    let post = |token: &str, key: &str, body: serde_json::Value| {
        let (token, key) = (token.to_string(), key.to_string());
        let api = &api;
        async move {
            api.send(
                "POST",
                "/api/v1/app",
                Some(serde_json::to_vec(&body).unwrap()),
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("idempotency-key", &key),
                ],
            )
            .await
        }
    };
    // Two callers, one key: two requests, two applications.
    let (a, first) = post(TOKEN, "k", json!({"name": "A", "uid": "a"})).await;
    let (b, second) = post(other, "k", json!({"name": "B", "uid": "b"})).await;
    assert_eq!((a, b), (201, 201), "{first} {second}");
    assert_ne!(first["id"], second["id"]);

    // A claim whose request never answered (its process died): 409 while its lock holds,
    // then the request runs again.
    // The first caller's scope: the one whose answer created application `a`.
    let scope: String = sqlx::query_scalar(
        "SELECT scope FROM herald.idempotency WHERE key = 'k' \
         AND convert_from(body, 'UTF8') LIKE '%\"uid\":\"a\"%'",
    )
    .fetch_one(&t.pool)
    .await
    .unwrap();
    let body = json!({"name": "C", "uid": "c"});
    let fingerprint = {
        use sha2::Digest;
        sha2::Sha256::digest(serde_json::to_vec(&body).unwrap()).to_vec()
    };
    sqlx::query(
        "INSERT INTO herald.idempotency (scope, key, request, fingerprint, locked_until) \
         SELECT scope, 'stuck', 'POST /api/v1/app', $1, now() + interval '5 seconds' \
         FROM herald.idempotency WHERE scope = $2 LIMIT 1",
    )
    .bind(&fingerprint)
    .bind(&scope)
    .execute(&t.pool)
    .await
    .unwrap();
    let (s, _) = post(TOKEN, "stuck", body.clone()).await;
    assert_eq!(s, 409, "still in progress");
    let mut last = 0;
    let ran = wait_until(
        Duration::from_secs(10),
        || post(TOKEN, "stuck", body.clone()),
        |(s, _)| {
            last = *s;
            *s == 201
        },
    )
    .await;
    assert!(
        ran,
        "the request ran again after the lock expired; last {last}"
    );
    let (s, replay) = post(TOKEN, "stuck", body.clone()).await;
    assert_eq!(
        (s, replay["uid"].as_str()),
        (201, Some("c")),
        "and is answered once more"
    );
    t.finish().await;
}
