//! Issue 15, part 2: messages, deliveries and attempts in time partitions. Rows land in the
//! partition of their time; lists, replays, resends and eventId duplicates work across
//! partitions; dropping a partition keeps what must outlive it; and a database of the
//! previous schema, with rows of every kind, upgrades without losing one.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

/// The partition (table name) holding a row of `table` that `condition` names.
async fn partition_of(pool: &PgPool, table: &str, condition: &str) -> String {
    sqlx::query_scalar(&format!(
        "SELECT tableoid::regclass::text FROM herald.{table} WHERE {condition}"
    ))
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("{table} where {condition}: {e}"))
}

/// Makes a range from the end of the legacy one to `hi` (the ranges made at start-up begin
/// a minute from now); returns its suffix.
async fn make_range(pool: &PgPool, lo_sql: &str, hi_sql: &str) -> String {
    let (lo, hi): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(&format!("SELECT {lo_sql}, {hi_sql}"))
            .fetch_one(pool)
            .await
            .unwrap();
    let made = herald::store::partitions::make(pool, lo, hi).await.unwrap();
    assert_eq!(made, Some(true), "range [{lo}, {hi}) made");
    sqlx::query_scalar("SELECT suffix FROM herald.time_partition WHERE lo = $1")
        .bind(lo)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[actix_rt::test]
async fn rows_go_to_their_partition_and_everything_works_across_partitions() {
    let t = spawn_app_with(&[("HERALD_RETRY_SCHEDULE", "50ms")]).await;
    let api = t.api();
    // Two ranges of our own before the ones made ahead: one ending in five seconds (time
    // for the set-up below to write into it, on a loaded machine), the next,
    // in place of the minute the upgrade made (empty still).
    let minute: String = sqlx::query_scalar(
        "SELECT suffix FROM herald.time_partition \
         WHERE lo = (SELECT hi FROM herald.time_partition WHERE suffix = 'legacy')",
    )
    .fetch_one(&t.pool)
    .await
    .unwrap();
    let dropped = herald::store::partitions::drop(&t.pool, &minute, chrono::Utc::now()).await;
    assert_eq!(dropped.unwrap(), Some(0), "the upgrade's minute, empty");
    let first = make_range(
        &t.pool,
        "(SELECT hi FROM herald.time_partition WHERE suffix = 'legacy')",
        "now() + interval '5 seconds'",
    )
    .await;
    let ok = mock_receiver(&[(204, None)]).await;
    let failing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&failing)
        .await;
    api.create_app("acme", "Acme").await;
    api.create_event_type("a", "A").await;
    let good = api
        .expect(
            201,
            "POST",
            "/api/v1/app/acme/endpoint",
            Some(json!({"url": ok.uri()})),
        )
        .await;
    let bad = api
        .expect(
            201,
            "POST",
            "/api/v1/app/acme/endpoint",
            Some(json!({"url": failing.uri()})),
        )
        .await;
    let old = api
        .expect(
            202,
            "POST",
            "/api/v1/app/acme/msg",
            Some(json!({"eventType": "a", "eventId": "pay-1", "payload": {"n": 1}})),
        )
        .await;
    let old_id = old["id"].as_str().unwrap().to_string();
    // A message scheduled an hour ahead: its delivery still waits when its partition goes
    // (it is made due below, once the partition is gone).
    let later = api
        .expect(202, "POST", "/api/v1/app/acme/msg",
            Some(json!({"eventType": "a", "payload": {"n": 2},
                        "deliverAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()})))
        .await;
    let later_id = later["id"].as_str().unwrap().to_string();
    t.wait_for_count(
        &format!("SELECT count(*) FROM herald.delivery WHERE message_id = '{old_id}' AND status IN ('succeeded', 'dead')"),
        2,
        WAIT,
    )
    .await;
    for table in ["message", "delivery", "attempt"] {
        let column = if table == "message" {
            "id"
        } else {
            "message_id"
        };
        assert_eq!(
            partition_of(&t.pool, table, &format!("{column} = '{old_id}' LIMIT 1")).await,
            format!("herald.{table}_{first}")
        );
    }

    // Past the first range's end: the next messages go to the second.
    let passed = wait_until(
        WAIT,
        || {
            let pool = t.pool.clone();
            let first = first.clone();
            async move {
                sqlx::query_scalar::<_, bool>(
                    "SELECT hi < now() FROM herald.time_partition WHERE suffix = $1",
                )
                .bind(first)
                .fetch_one(&pool)
                .await
                .unwrap()
            }
        },
        |passed| *passed,
    )
    .await;
    assert!(passed);
    let second = make_range(
        &t.pool,
        &format!("(SELECT hi FROM herald.time_partition WHERE suffix = '{first}')"),
        "(SELECT min(lo) FROM herald.time_partition WHERE lo > now())",
    )
    .await;
    let new = api
        .expect(
            202,
            "POST",
            "/api/v1/app/acme/msg",
            Some(json!({"eventType": "a", "payload": {"n": 3}})),
        )
        .await;
    let new_id = new["id"].as_str().unwrap().to_string();
    assert_eq!(
        partition_of(&t.pool, "message", &format!("id = '{new_id}'")).await,
        format!("herald.message_{second}")
    );
    // An eventId of the first partition is a duplicate in the second, in the API and in SQL.
    let (status, dup) = api
        .post(
            "/api/v1/app/acme/msg",
            json!({"eventType": "a", "eventId": "pay-1", "payload": {"n": 4}}),
        )
        .await;
    assert_eq!(status, 409, "{dup}");
    let again: String =
        sqlx::query_scalar("SELECT herald.send_message('acme', 'a', '{}', 'pay-1')")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(again, old_id);

    // Lists span partitions, newest first.
    let list = api.expect(200, "GET", "/api/v1/app/acme/msg", None).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [new_id.as_str(), later_id.as_str(), old_id.as_str()]);
    let good_id = good["id"].as_str().unwrap();
    t.wait_for_count(
        &format!(
            "SELECT count(*) FROM herald.delivery WHERE message_id = '{new_id}' \
             AND endpoint_id = '{good_id}' AND status = 'succeeded'"
        ),
        1,
        WAIT,
    )
    .await;
    let attempts = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/attempt/endpoint/{good_id}"),
            None,
        )
        .await;
    let attempted: Vec<&str> = attempts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["msgId"].as_str().unwrap())
        .collect();
    assert!(
        attempted.contains(&old_id.as_str()) && attempted.contains(&new_id.as_str()),
        "{attempts}"
    );
    // A resend of the first partition's message to the good endpoint.
    api.expect(
        202,
        "POST",
        &format!(
            "/api/v1/app/acme/msg/{old_id}/endpoint/{}/resend",
            good["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    t.wait_for_count(
        &format!(
            "SELECT count(*) FROM herald.attempt a JOIN herald.delivery d ON d.id = a.delivery_id \
             WHERE a.message_id = '{old_id}' AND a.endpoint_id = '{good_id}' AND d.status = 'succeeded'"
        ),
        2,
        WAIT,
    )
    .await;

    // The first range goes: its dead letter (recent) and its waiting delivery move to the
    // default partition; what succeeded goes with it.
    let cutoff = chrono::Utc::now() - chrono::Duration::hours(1);
    let moved = herald::store::partitions::drop(&t.pool, &first, cutoff).await;
    assert_eq!(
        moved.unwrap(),
        Some(2),
        "the dead letter's message and the scheduled one"
    );
    for (id, want) in [
        (&old_id, "herald.message_default"),
        (&later_id, "herald.message_default"),
    ] {
        assert_eq!(
            partition_of(&t.pool, "message", &format!("id = '{id}'")).await,
            want
        );
    }
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM herald.delivery WHERE message_id = '{old_id}'"
        ))
        .await,
        1,
        "only the dead one of its two deliveries"
    );
    assert_eq!(
        t.count(&format!("SELECT count(*) FROM pg_tables WHERE schemaname = 'herald' AND tablename LIKE '%{first}'")).await,
        0,
        "its tables are gone"
    );
    // The waiting delivery is still delivered, from the default partition, once due.
    let due = sqlx::query(&format!(
        "UPDATE herald.delivery SET next_attempt_at = now() \
         WHERE message_id = '{later_id}' AND status = 'pending'"
    ))
    .execute(&t.pool)
    .await
    .unwrap();
    assert_eq!(due.rows_affected(), 2, "it waited for both endpoints");
    t.wait_for_count(
        &format!("SELECT count(*) FROM herald.delivery WHERE message_id = '{later_id}' AND status = 'succeeded'"),
        1,
        WAIT,
    )
    .await;
    // The dead letter is still listed and replays (the receiver has recovered).
    let dead = api
        .expect(
            200,
            "GET",
            &format!(
                "/api/v1/dead-letter?endpoint_id={}",
                bad["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let letter = dead["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["msgId"] == json!(old_id))
        .unwrap_or_else(|| panic!("the moved dead letter is listed: {dead}"))
        .clone();
    failing.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&failing)
        .await;
    api.expect(
        202,
        "POST",
        &format!(
            "/api/v1/dead-letter/{}/replay",
            letter["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    t.wait_for_count(
        &format!("SELECT count(*) FROM herald.delivery WHERE message_id = '{old_id}' AND status = 'succeeded'"),
        1,
        WAIT,
    )
    .await;
    // And the message is still found by its id and its eventId.
    api.expect(200, "GET", &format!("/api/v1/app/acme/msg/{old_id}"), None)
        .await;
    api.expect(200, "GET", "/api/v1/app/acme/msg/pay-1", None)
        .await;
    t.finish().await;
}

/// Every row of Herald's tables as text, by table (what an upgrade must keep).
async fn contents(pool: &PgPool) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for table in [
        "application",
        "endpoint",
        "endpoint_secret",
        "message",
        "delivery",
        "attempt",
        "idempotency",
        "event_type",
        "application_secret",
    ] {
        let (n, digest): (i64, Option<String>) = sqlx::query_as(&format!(
            "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM herald.{table} t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push((table.to_string(), n, digest.unwrap_or_default()));
    }
    out
}

#[actix_rt::test]
async fn a_database_of_the_previous_schema_upgrades_without_losing_a_row() {
    let url = fresh_database().await;
    let pool = PgPool::connect(&url).await.unwrap();
    // The schema as it was before time partitions.
    let all = sqlx::migrate!("./migrations");
    let before = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            all.iter()
                .filter(|m| m.version < 20261202000003)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate!("./migrations")
    };
    before.run(&pool).await.unwrap();

    // Rows of every kind: a pending, an in-flight (leased), a succeeded and a dead delivery
    // with attempts; a message with an eventId; and a message, delivery and attempt whose
    // ids, written by hand, name no time.
    let receiver = mock_receiver(&[(204, None)]).await;
    sqlx::raw_sql(&format!(
        "INSERT INTO herald.application (uid, name) VALUES ('acme', 'Acme');
         INSERT INTO herald.event_type (name, description) VALUES ('a', 'A');
         INSERT INTO herald.endpoint (id, app_id, url)
             SELECT 'ep_up', id, '{}/hook' FROM herald.application;
         INSERT INTO herald.endpoint_secret (endpoint_id, key)
             VALUES ('ep_up', uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
         INSERT INTO herald.message (app_id, event_type, event_id, payload)
             SELECT id, 'a', 'e-' || n, '{{\"n\": ' || n || '}}'
             FROM herald.application, generate_series(1, 4) n;
         INSERT INTO herald.message (id, app_id, event_type, payload)
             SELECT 'msg_handwritten', id, 'a', '{{}}' FROM herald.application;
         INSERT INTO herald.delivery (message_id, endpoint_id, app_id, status, attempts,
                                      lease_owner, lease_token, lease_expires_at, dead_reason,
                                      next_attempt_at)
             SELECT m.id, 'ep_up', m.app_id,
                    (ARRAY['pending', 'sending', 'succeeded', 'dead', 'pending'])[row_number() OVER (ORDER BY m.id)]::herald.delivery_status,
                    1, NULL, NULL, NULL, NULL, now() + interval '1 hour'
             FROM herald.message m;
         UPDATE herald.delivery SET lease_owner = 'gone', lease_token = gen_random_uuid(),
             lease_expires_at = now() - interval '1 minute' WHERE status = 'sending';
         UPDATE herald.delivery SET dead_reason = 'gave up after 1 attempts' WHERE status = 'dead';
         INSERT INTO herald.attempt (delivery_id, message_id, endpoint_id, app_id, url,
                                     attempt_no, started_at, duration_ms, status_code, succeeded)
             SELECT d.id, d.message_id, d.endpoint_id, d.app_id, 'x', 1, now(), 3, 500, false
             FROM herald.delivery d;
         INSERT INTO herald.attempt (id, delivery_id, message_id, endpoint_id, app_id, url,
                                     attempt_no, started_at, duration_ms, status_code, succeeded)
             SELECT 'atmpt_handwritten', d.id, d.message_id, d.endpoint_id, d.app_id, 'x', 1,
                    now(), 3, 204, true
             FROM herald.delivery d WHERE d.message_id = 'msg_handwritten';",
        receiver.uri()
    ))
    .execute(&pool)
    .await
    .unwrap();
    let max_delivery: i64 = sqlx::query_scalar("SELECT max(id) FROM herald.delivery")
        .fetch_one(&pool)
        .await
        .unwrap();
    let kept = contents(&pool).await;

    herald::store::Store::from_pool(pool.clone())
        .migrate()
        .await
        .unwrap();

    assert_eq!(contents(&pool).await, kept, "every row, unchanged");
    for (table, condition, want) in [
        ("message", "event_id = 'e-1'", "herald.message_legacy"),
        (
            "message",
            "id = 'msg_handwritten'",
            "herald.message_default",
        ),
        (
            "delivery",
            "message_id = 'msg_handwritten'",
            "herald.delivery_default",
        ),
        (
            "attempt",
            "id = 'atmpt_handwritten'",
            "herald.attempt_default",
        ),
    ] {
        assert_eq!(
            partition_of(&pool, table, condition).await,
            want,
            "{table} {condition}"
        );
    }
    // What the old constraints did still holds: one message per eventId (the one of
    // before), one delivery per message and endpoint, delivery ids going on from the last.
    let same: String = sqlx::query_scalar("SELECT herald.send_message('acme', 'a', '{}', 'e-2')")
        .fetch_one(&pool)
        .await
        .unwrap();
    let first: String = sqlx::query_scalar("SELECT id FROM herald.message WHERE event_id = 'e-2'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(same, first);
    let twice = sqlx::query(
        "INSERT INTO herald.delivery (message_id, endpoint_id, app_id) \
         SELECT message_id, endpoint_id, app_id FROM herald.delivery LIMIT 1",
    )
    .execute(&pool)
    .await;
    assert!(
        twice.is_err(),
        "a second delivery of a message to one endpoint is refused"
    );
    let fresh: String = sqlx::query_scalar("SELECT herald.send_message('acme', 'a', '{}')")
        .fetch_one(&pool)
        .await
        .unwrap();
    let id: i64 = sqlx::query_scalar("SELECT id FROM herald.delivery WHERE message_id = $1")
        .bind(&fresh)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(id > max_delivery, "{id} after {max_delivery}");

    // Herald runs on it: the expired lease comes back and is delivered, the pending ones
    // made due are delivered, the dead letter replays.
    sqlx::query("UPDATE herald.delivery SET next_attempt_at = now() WHERE status = 'pending'")
        .execute(&pool)
        .await
        .unwrap();
    let t = spawn_app_on(&url, &[]).await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        5,
        WAIT,
    )
    .await;
    let dead = t
        .api()
        .expect(200, "GET", "/api/v1/dead-letter", None)
        .await;
    let letter = dead["data"][0]["id"].as_str().unwrap().to_string();
    t.api()
        .expect(
            202,
            "POST",
            &format!("/api/v1/dead-letter/{letter}/replay"),
            None,
        )
        .await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        6,
        WAIT,
    )
    .await;
    t.finish().await;
}
