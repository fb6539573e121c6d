//! Retention deletes what is past HERALD_RETENTION and keeps everything else: recent
//! rows, deliveries still waiting, and dead letters that died within the period. (Rows in
//! the time partitions go with their partition: `partitions.rs`. Here, rows in the default
//! partitions, as a partition's drop leaves them, or as written by hand.)

use std::time::Duration;

use crate::support::{mock_receiver, spawn_app_with};

#[actix_rt::test]
async fn retention_removes_old_rows_and_keeps_recent_waiting_and_recently_dead_ones() {
    let t = spawn_app_with(&[
        ("HERALD_RETENTION", "1day"),
        ("HERALD_RETENTION_INTERVAL", "200ms"),
        // Several batches per pass.
        ("HERALD_RETENTION_BATCH", "2"),
    ])
    .await;
    let ok = mock_receiver(&[(200, None)]).await;
    let failing = mock_receiver(&[(500, None)]).await;
    let app = t.create_app("shop").await;
    t.create_endpoint(&app, &ok.uri(), Some(&["ok"])).await;
    t.create_endpoint(&app, &failing.uri(), Some(&["bad"]))
        .await;
    let mut fine = Vec::new();
    for i in 0..6 {
        fine.push(t.send(&app, "ok", &format!(r#"{{"i":{i}}}"#)).await);
    }
    let dead_long_ago = t.send(&app, "bad", r#"{"d":1}"#).await;
    let dead_lately = t.send(&app, "bad", r#"{"d":2}"#).await;
    let timeout = Duration::from_secs(20);
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status IN ('succeeded', 'dead')",
        8,
        timeout,
    )
    .await;
    assert_eq!(
        t.count("SELECT count(*) FROM herald.attempt").await,
        6 + 3 + 3
    );

    // Age the rows in one transaction, so a retention pass sees all of it or none of it.
    let (old_fine, waiting, recent) = (&fine[..4], &fine[4], &fine[5]);
    let mut tx = t.pool.begin().await.unwrap();
    for sql in [
        // Four delivered messages from two days ago: all of them goes.
        "UPDATE herald.message SET created_at = now() - interval '2 days' WHERE id = ANY($1)",
        "UPDATE herald.delivery SET updated_at = now() - interval '2 days' WHERE message_id = ANY($1)",
        "UPDATE herald.attempt SET created_at = now() - interval '2 days' WHERE message_id = ANY($1)",
    ] {
        let mut ids: Vec<String> = old_fine.to_vec();
        if sql.contains("attempt") || sql.contains("message SET") {
            // Both dead letters are old messages whose attempts are old...
            ids.extend([dead_long_ago.clone(), dead_lately.clone()]);
        }
        if sql.contains("message SET") {
            ids.push(waiting.clone());
        }
        sqlx::query(sql).bind(&ids).execute(&mut *tx).await.unwrap();
    }
    // ...but only one of them died two days ago; the other died just now.
    sqlx::query(
        "UPDATE herald.delivery SET updated_at = now() - interval '2 days' WHERE message_id = $1",
    )
    .bind(&dead_long_ago)
    .execute(&mut *tx)
    .await
    .unwrap();
    // An old message whose delivery waits for a retry tomorrow: it must keep its payload.
    sqlx::query(
        "UPDATE herald.delivery SET status = 'pending', next_attempt_at = now() + interval '1 day',
                updated_at = now() - interval '2 days' WHERE message_id = $1",
    )
    .bind(waiting)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO herald.idempotency (key, request, created_at)
         VALUES ('old-key', 'POST /x', now() - interval '2 days'), ('new-key', 'POST /x', now())",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    // The old messages, their deliveries and attempts move to the default partitions (ids
    // that name no time), where retention deletes row by row.
    let aged: Vec<String> = old_fine
        .iter()
        .chain([&dead_long_ago, &dead_lately, waiting])
        .cloned()
        .collect();
    for sql in [
        "UPDATE herald.attempt SET id = 'atmpt_zz' || substr(id, 7), \
                message_id = 'msg_zz' || substr(message_id, 5) WHERE message_id = ANY($1)",
        "UPDATE herald.delivery SET message_id = 'msg_zz' || substr(message_id, 5) \
          WHERE message_id = ANY($1)",
        "UPDATE herald.message SET id = 'msg_zz' || substr(id, 5) WHERE id = ANY($1)",
    ] {
        sqlx::query(sql)
            .bind(&aged)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    // Counted before the commit: once committed, retention (every 200 ms) may already be
    // deleting them.
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM herald.message_default")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        in_default, 7,
        "the aged messages are in the default partition"
    );
    tx.commit().await.unwrap();
    let timeless = |id: &str| format!("msg_zz{}", &id[4..]);
    let (waiting, dead_lately) = (&timeless(waiting), timeless(&dead_lately));

    // Left: the waiting, the recent and the lately dead messages; the attempts of the
    // waiting and the recent one; the new key.
    t.wait_for_count(
        "SELECT (SELECT count(*) FROM herald.message) * 10000
              + (SELECT count(*) FROM herald.delivery) * 100
              + (SELECT count(*) FROM herald.attempt) * 10
              + (SELECT count(*) FROM herald.idempotency)",
        3 * 10000 + 3 * 100 + 2 * 10 + 1,
        timeout,
    )
    .await;
    let kept: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, payload FROM herald.message ORDER BY id")
            .fetch_all(&t.pool)
            .await
            .unwrap();
    let mut want = vec![waiting.clone(), recent.clone(), dead_lately.clone()];
    want.sort();
    assert_eq!(
        kept.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        want
    );
    assert!(
        kept.iter().all(|(_, p)| p.is_some()),
        "kept messages keep their payloads"
    );
    let key: String = sqlx::query_scalar("SELECT key FROM herald.idempotency")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(key, "new-key");

    // The lately dead letter is still there to be replayed, and delivery goes on.
    let (status, dead) = t.api().get("/api/v1/dead-letter").await;
    assert_eq!(status, 200, "{dead}");
    assert!(dead.to_string().contains(dead_lately.as_str()), "{dead}");
    let after = t.send(&app, "ok", r#"{"after":true}"#).await;
    t.wait_for_count(
        &format!("SELECT count(*) FROM herald.delivery WHERE message_id = '{after}' AND status = 'succeeded'"),
        1,
        timeout,
    )
    .await;
    t.finish().await;
}

#[actix_rt::test]
async fn retention_ends_expired_sessions_and_forgets_old_portal_tokens_and_queue_samples() {
    let t = spawn_app_with(&[
        ("HERALD_RETENTION", "1day"),
        ("HERALD_RETENTION_INTERVAL", "200ms"),
    ])
    .await;
    let api = t.api();
    api.create_app("acme", "Acme").await;
    for expiry in [3600, 7200] {
        api.expect(
            200,
            "POST",
            "/api/v1/auth/app-portal-access/acme",
            Some(serde_json::json!({"expiry": expiry})),
        )
        .await;
    }
    let mut tx = t.pool.begin().await.unwrap();
    for sql in [
        // One portal token expired two days ago (gone), one an hour ago (kept a while: the
        // token list still says it expired).
        "UPDATE herald.api_token SET expires_at = now() - interval '2 days' \
          WHERE expires_at = (SELECT min(expires_at) FROM herald.api_token)",
        "UPDATE herald.api_token SET expires_at = now() - interval '1 hour' \
          WHERE expires_at > now()",
        "INSERT INTO herald.ui_session (id_hash, operator, csrf, expires_at) VALUES \
           (sha256('gone'), 'abc', 'x', now() - interval '1 minute'), \
           (sha256('kept'), 'abc', 'x', now() + interval '1 hour')",
        "INSERT INTO herald.queue_sample VALUES \
           (date_trunc('minute', now() - interval '2 days'), 1, 0, 0, 0), \
           (date_trunc('minute', now() - interval '2 hours'), 1, 0, 0, 0)",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let timeout = Duration::from_secs(10);
    t.wait_for_count("SELECT count(*) FROM herald.ui_session", 1, timeout)
        .await;
    t.wait_for_count("SELECT count(*) FROM herald.api_token", 1, timeout)
        .await;
    assert_eq!(
        t.count("SELECT count(*) FROM herald.ui_session WHERE id_hash = sha256('kept')")
            .await,
        1
    );
    t.wait_for_count(
        "SELECT count(*) FROM herald.queue_sample WHERE minute < now() - interval '1 day'",
        0,
        timeout,
    )
    .await;
    assert!(
        t.count(
            "SELECT count(*) FROM herald.queue_sample WHERE minute < now() - interval '1 hour'"
        )
        .await
            >= 1,
        "a sample of two hours ago is kept"
    );
    t.finish().await;
}

#[actix_rt::test]
async fn retention_forgets_old_received_requests_and_expired_event_ids() {
    let t = spawn_app_with(&[
        ("HERALD_RETENTION", "1day"),
        ("HERALD_RETENTION_INTERVAL", "200ms"),
    ])
    .await;
    let api = t.api();
    let src = api
        .expect(
            201,
            "POST",
            "/ingest/api/v1/source",
            Some(
                serde_json::json!({"name": "Bank", "type": "generic-webhook",
                                    "config": {"eventIdHeader": "X-Id"}}),
            ),
        )
        .await;
    let url = src["ingestUrl"].as_str().unwrap();
    for id in ["old", "recent"] {
        let res = reqwest::Client::new()
            .post(url)
            .header("x-id", id)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let mut tx = t.pool.begin().await.unwrap();
    for sql in [
        "UPDATE herald.ingest_event SET received_at = now() - interval '2 days' \
          WHERE event_key = 'old'",
        "UPDATE herald.ingest_dedupe SET expires_at = now() - interval '1 minute' \
          WHERE event_key = 'old'",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let timeout = Duration::from_secs(10);
    t.wait_for_count("SELECT count(*) FROM herald.ingest_event", 1, timeout)
        .await;
    t.wait_for_count("SELECT count(*) FROM herald.ingest_dedupe", 1, timeout)
        .await;
    assert_eq!(
        t.count("SELECT count(*) FROM herald.ingest_dedupe WHERE event_key = 'recent'")
            .await,
        1
    );
    t.finish().await;
}
