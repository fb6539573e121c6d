//! Access: tokens made at run time, application-scoped tokens that reach their own
//! application only (every documented operation tried with another tenant's ids), read-only
//! and feature-flagged tokens, portal access and logout, and the lockout of an address that
//! keeps failing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{mock_receiver, spawn_app, spawn_app_with, Api, TestApp};

/// One tenant's rows: an application with an endpoint, a message, its attempts, a dead
/// letter, and a bulk-replay task.
struct Tenant {
    app: String,
    endpoint: String,
    msg: String,
    attempt: String,
    dead_letter: String,
    task: String,
}

async fn tenant(t: &TestApp, api: &Api, uid: &str, receiver: &str) -> Tenant {
    let app = text(api.create_app(uid, uid).await, "/id");
    let endpoint_path = format!("/api/v1/app/{app}/endpoint");
    let endpoint_body = json!({"url": receiver});
    let endpoint = text(
        api.expect(201, "POST", &endpoint_path, Some(endpoint_body))
            .await,
        "/id",
    );
    let msg = text(api.post_messages(&app, 1).await.remove(0), "/id");
    // The receiver fails: three attempts (the test schedule), then a dead letter.
    let one_dead = || async {
        let sql = format!(
            "SELECT count(*) FROM herald.delivery WHERE app_id = '{app}' AND status = 'dead'"
        );
        t.wait_for_count(&sql, 1, Duration::from_secs(20)).await
    };
    one_dead().await;
    let attempts = api
        .get(&format!("/api/v1/app/{app}/attempt/msg/{msg}"))
        .await
        .1;
    let dead = api
        .get(&format!("/api/v1/dead-letter?app_id={app}"))
        .await
        .1;
    // A bulk replay (its task), and the delivery dead again.
    let replay = json!({"appId": app});
    let replayed = api
        .expect(202, "POST", "/api/v1/dead-letter/replay", Some(replay))
        .await;
    one_dead().await;
    Tenant {
        attempt: text(attempts, "/data/0/id"),
        dead_letter: text(dead, "/data/0/id"),
        task: text(replayed, "/taskId"),
        app,
        endpoint,
        msg,
    }
}

/// The string at `pointer` in `v`.
fn text(v: Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
        .to_string()
}

/// Makes a token through the API; returns it.
async fn make_token(api: &Api, body: Value) -> String {
    let made = api.expect(201, "POST", "/api/v1/token", Some(body)).await;
    assert!(made["token"].as_str().unwrap().starts_with("hrld_"));
    made["token"].as_str().unwrap().to_string()
}

/// The documented operations: (method, path template, open to application tokens).
async fn operations(api: &Api) -> Vec<(String, String, bool)> {
    let doc = api.get("/api/v1/openapi.json").await.1;
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = op["security"].as_array().unwrap();
            if security.iter().all(|s| s.as_object().unwrap().is_empty()) {
                continue; // public
            }
            let open = security.iter().any(|s| s.get("ApplicationToken").is_some());
            ops.push((method.to_uppercase(), path.clone(), open));
        }
    }
    ops
}

fn fill(template: &str, app: &str, other: &Tenant) -> String {
    template
        .replace("{app_id}", app)
        .replace("{endpoint_id}", &other.endpoint)
        .replace("{msg_id}", &other.msg)
        .replace("{attempt_id}", &other.attempt)
        .replace("{delivery_id}", &other.dead_letter)
        .replace("{task_id}", &other.task)
        .replace("{event_type_name}", "a")
        .replace("{token_id}", "tok_unknown")
}

/// A body each write accepts (so that only where it points decides the answer).
fn body_for(method: &str, template: &str) -> Option<Value> {
    let since = json!({"since": "2020-01-01T00:00:00Z"});
    match (method, template.rsplit('/').next().unwrap()) {
        ("GET" | "DELETE", _) => None,
        (_, "recover" | "replay-missing") => Some(since),
        (_, "send-example") => Some(json!({"eventType": "a"})),
        (_, "headers") => Some(json!({"headers": {}})),
        ("PUT", "{endpoint_id}") => Some(json!({"url": "https://example.com/hook"})),
        ("PUT", "{app_id}") => Some(json!({"name": "renamed"})),
        _ => Some(json!({})),
    }
}

#[actix_rt::test]
async fn an_application_token_reaches_its_own_application_only() {
    let t = spawn_app().await;
    let api = t.api();
    let receiver = mock_receiver(&[(500, None)]).await;
    api.create_event_type("a", "A").await;
    let a = tenant(&t, &api, "merchant-a", &receiver.uri()).await;
    let b = tenant(&t, &api, "merchant-b", &receiver.uri()).await;
    let token = make_token(
        &api,
        json!({"name": "merchant A's backend", "appId": "merchant-a"}),
    )
    .await;
    let as_a = api.with_token(&token);

    // Its own application: it sees it, by id and by uid.
    for path in [
        format!("/api/v1/app/{}", a.app),
        "/api/v1/app/merchant-a/endpoint".to_string(),
        format!("/api/v1/app/{}/msg/{}", a.app, a.msg),
        format!("/api/v1/app/{}/msg/{}/attempt/{}", a.app, a.msg, a.attempt),
        format!("/api/v1/background-task/{}", a.task),
    ] {
        as_a.expect(200, "GET", &path, None).await;
    }

    // Every documented operation, pointed at B.
    let ops = operations(&api).await;
    assert!(
        ops.len() > 40,
        "the document lists the API ({} operations)",
        ops.len()
    );
    for (method, template, open) in &ops {
        if template == "/api/v1/auth/logout" {
            continue; // it would end this token; tested below
        }
        let path = fill(template, &b.app, &b);
        let body = body_for(method, template);
        let (status, answer) = as_a.call(method, &path, body.clone()).await;
        let expected = match (*open, template.contains("{app_id}"), template.as_str()) {
            (false, _, _) => 403,
            (true, true, _) => 404,
            (true, false, "/api/v1/event-type" | "/api/v1/event-type/{event_type_name}") => 200,
            (true, false, "/api/v1/dead-letter" | "/api/v1/background-task") => 200,
            (true, false, "/api/v1/dead-letter/replay") => {
                // Naming B is not found; without a name, A's own only (checked below).
                let (status, _) = as_a
                    .call("POST", &path, Some(json!({"appId": b.app})))
                    .await;
                assert_eq!(status, 404, "bulk replay of B's dead letters");
                202
            }
            (true, false, _) => 404,
        };
        assert_eq!(
            status, expected,
            "{method} {path} with A's token → {status} {answer}"
        );
        if expected == 200 {
            let text = answer.to_string();
            for foreign in [&b.app, &b.msg, &b.endpoint, &b.dead_letter, &b.task] {
                assert!(
                    !text.contains(foreign.as_str()),
                    "{method} {path} shows B's {foreign}: {text}"
                );
            }
        }
        // Under its own application, another tenant's endpoint, message or attempt is not
        // found either.
        let inner = ["{endpoint_id}", "{msg_id}", "{attempt_id}"]
            .iter()
            .any(|p| template.contains(p));
        if *open && inner {
            let path = fill(template, &a.app, &b);
            let (status, answer) = as_a.call(method, &path, body).await;
            assert_eq!(
                status, 404,
                "{method} {path} (A's app, B's ids) → {status} {answer}"
            );
        }
    }

    // B's rows are untouched: its dead letter is still dead (the bulk replay above replayed
    // only A's), and B's endpoint still exists.
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM herald.delivery WHERE app_id = '{}' AND status = 'dead'",
            b.app
        ))
        .await,
        1
    );
    api.expect(
        200,
        "GET",
        &format!("/api/v1/app/{}/endpoint/{}", b.app, b.endpoint),
        None,
    )
    .await;
    t.finish().await;
}

#[actix_rt::test]
async fn runtime_tokens_are_hashed_listed_and_revoked_at_once() {
    let t = spawn_app().await;
    let api = t.api();
    let token = make_token(&api, json!({"name": "ops laptop", "expiry": 3600})).await;
    let ops = api.with_token(&token);
    ops.expect(200, "GET", "/api/v1/app", None).await;
    ops.expect(
        201,
        "POST",
        "/api/v1/event-type",
        Some(json!({"name": "b", "description": "B"})),
    )
    .await;

    // Stored as a hash: the token is nowhere in the database or the list.
    let list = api.get("/api/v1/token").await.1;
    assert!(!list.to_string().contains(&token));
    let row = &list["data"][0];
    assert_eq!(
        (row["kind"].as_str(), row["name"].as_str()),
        (Some("operator"), Some("ops laptop"))
    );
    assert!(
        row["expiresAt"].is_string() && row["lastUsedAt"].is_string(),
        "{row}"
    );
    let stored: i64 = t
        .count(&format!(
            "SELECT count(*) FROM herald.api_token WHERE token_hash = sha256('{token}'::bytea)"
        ))
        .await;
    assert_eq!(stored, 1);
    let anywhere: i64 = t
        .count(&format!(
            "SELECT count(*) FROM herald.api_token t WHERE t::text LIKE '%{}%'",
            &token[5..]
        ))
        .await;
    assert_eq!(anywhere, 0);

    let id = row["id"].as_str().unwrap();
    let revoked = api
        .expect(200, "POST", &format!("/api/v1/token/{id}/revoke"), None)
        .await;
    assert!(revoked["revokedAt"].is_string());
    let (status, body) = ops.get("/api/v1/app").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("authentication_failed"))
    );

    // Bad requests say what is wrong.
    for (body, field) in [
        (json!({"name": "x", "appId": "no-such-app"}), "body.appId"),
        (json!({"name": "x", "readOnly": true}), "body.appId"),
        (json!({"name": "", "expiry": 1}), "body.name"),
    ] {
        let (status, answer) = api.post("/api/v1/token", body.clone()).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert!(
            crate::support::invalid_fields(&answer).contains(&field.to_string()),
            "{answer}"
        );
    }
    t.finish().await;
}

#[actix_rt::test]
async fn read_only_and_feature_flagged_tokens() {
    let t = spawn_app().await;
    let api = t.api();
    api.create_app("merchant-a", "A").await;
    api.create_event_type("open", "x").await;
    api.expect(
        201,
        "POST",
        "/api/v1/event-type",
        Some(json!({"name": "beta.thing", "description": "x", "featureFlags": ["beta"]})),
    )
    .await;
    let reader = make_token(
        &api,
        json!({"name": "r", "appId": "merchant-a", "readOnly": true}),
    )
    .await;
    let reader = api.with_token(&reader);
    reader
        .expect(200, "GET", "/api/v1/app/merchant-a/endpoint", None)
        .await;
    let (status, body) = reader
        .post(
            "/api/v1/app/merchant-a/endpoint",
            json!({"url": "https://example.com/h"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    // Without the flag, the flagged event type is hidden; with it, shown.
    let names = |list: &Value| -> Vec<String> {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&reader.get("/api/v1/event-type").await.1),
        vec!["open"]
    );
    reader
        .expect(404, "GET", "/api/v1/event-type/beta.thing", None)
        .await;
    let flagged = make_token(
        &api,
        json!({"name": "f", "appId": "merchant-a", "featureFlags": ["beta"]}),
    )
    .await;
    let flagged = api.with_token(&flagged);
    assert_eq!(
        names(&flagged.get("/api/v1/event-type").await.1),
        vec!["beta.thing", "open"]
    );
    assert_eq!(
        names(&api.get("/api/v1/event-type").await.1),
        vec!["beta.thing", "open"]
    );

    // A flagged event type cannot be sent as an example without the flag either.
    let ep = api
        .expect(
            201,
            "POST",
            "/api/v1/app/merchant-a/endpoint",
            Some(json!({"url": "https://example.com/h"})),
        )
        .await;
    let example = format!(
        "/api/v1/app/merchant-a/endpoint/{}/send-example",
        ep["id"].as_str().unwrap()
    );
    let plain = make_token(&api, json!({"name": "p", "appId": "merchant-a"})).await;
    let (status, body) = api
        .with_token(&plain)
        .post(&example, json!({"eventType": "beta.thing"}))
        .await;
    assert_eq!(status, 422, "{body}");
    flagged
        .expect(
            200,
            "POST",
            &example,
            Some(json!({"eventType": "beta.thing"})),
        )
        .await;

    // A read-only token may still log out; then it is refused.
    reader
        .expect(204, "POST", "/api/v1/auth/logout", None)
        .await;
    reader
        .expect(401, "GET", "/api/v1/app/merchant-a/endpoint", None)
        .await;
    // A configured token cannot log out.
    api.expect(403, "POST", "/api/v1/auth/logout", None).await;
    t.finish().await;
}

#[actix_rt::test]
async fn app_portal_access_gives_an_expiring_token_and_a_one_time_link() {
    let t = spawn_app().await;
    let api = t.api();
    api.create_app("merchant-a", "A").await;
    api.create_app("merchant-b", "B").await;
    let access = api
        .expect(
            200,
            "POST",
            "/api/v1/auth/app-portal-access/merchant-a",
            Some(json!({"expiry": 3600})),
        )
        .await;
    let url = access["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/portal/start?code=", api.base)),
        "{url}"
    );
    let portal = api.with_token(access["token"].as_str().unwrap());
    portal
        .expect(200, "GET", "/api/v1/app/merchant-a/endpoint", None)
        .await;
    portal
        .expect(404, "GET", "/api/v1/app/merchant-b/endpoint", None)
        .await;
    portal.expect(403, "GET", "/api/v1/app", None).await;
    let expires: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT expires_at FROM herald.api_token WHERE kind = 'portal'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    let lasts = expires - chrono::Utc::now();
    assert!(
        lasts > chrono::Duration::minutes(59) && lasts <= chrono::Duration::hours(1),
        "{lasts}"
    );

    // The default is HERALD_PORTAL_EXPIRY (7 days); an application is made when asked.
    let made = api
        .expect(
            200,
            "POST",
            "/api/v1/auth/app-portal-access/merchant-c",
            Some(json!({"application": {"name": "C"}})),
        )
        .await;
    assert!(made["token"].is_string());
    api.expect(200, "GET", "/api/v1/app/merchant-c", None).await;
    api.expect(
        404,
        "POST",
        "/api/v1/auth/app-portal-access/merchant-d",
        None,
    )
    .await;

    // What Herald cannot honour is refused, not ignored.
    for body in [
        json!({"expiry": 60}),
        json!({"capabilities": ["ViewBase"]}),
        json!({"sessionId": "s"}),
    ] {
        let (status, answer) = api
            .post("/api/v1/auth/app-portal-access/merchant-a", body.clone())
            .await;
        assert_eq!(status, 422, "{body} → {answer}");
    }
    // Only an operator gives portal access.
    portal
        .expect(
            403,
            "POST",
            "/api/v1/auth/app-portal-access/merchant-a",
            Some(json!({})),
        )
        .await;

    portal
        .expect(204, "POST", "/api/v1/auth/logout", None)
        .await;
    portal
        .expect(401, "GET", "/api/v1/app/merchant-a/endpoint", None)
        .await;
    t.finish().await;
}

#[actix_rt::test]
async fn an_address_that_keeps_failing_is_locked_out() {
    let t = spawn_app_with(&[("HERALD_AUTH_FAILURE_LIMIT", "3")]).await;
    let api = t.api();
    let wrong = api.with_token("hrld_not-a-token");
    for _ in 0..3 {
        wrong.expect(401, "GET", "/api/v1/app", None).await;
    }
    let (status, body) = wrong.get("/api/v1/app").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_requests")),
        "{body}"
    );
    // Locked out: even a good token from this address waits.
    let (status, _) = api.get("/api/v1/app").await;
    assert_eq!(status, 429);
    let retry_after = reqwest::Client::new()
        .get(format!("{}/api/v1/app", api.base))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap()
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("a Retry-After header");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Health stays reachable (probes are not locked out).
    api.expect(204, "GET", "/api/v1/health/ping", None).await;
    t.finish().await;
}

#[actix_rt::test]
async fn a_bulk_replay_reports_its_progress() {
    let t = spawn_app().await;
    let api = t.api();
    // Fails three times (one message: three attempts, then dead), then succeeds.
    let receiver = mock_receiver(&[(500, Some(3)), (204, None)]).await;
    api.acme_endpoint(json!({"url": receiver.uri()})).await;
    api.post_messages("acme", 1).await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'dead'",
        1,
        Duration::from_secs(20),
    )
    .await;
    let replayed = api
        .expect(202, "POST", "/api/v1/dead-letter/replay", Some(json!({})))
        .await;
    assert_eq!(replayed["replayed"], 1);
    let task = replayed["taskId"].as_str().unwrap();
    let mut last = Value::Null;
    let done = crate::support::wait_until(
        Duration::from_secs(20),
        || async { api.get(&format!("/api/v1/background-task/{task}")).await.1 },
        |t| {
            last = t.clone();
            t["data"]["delivered"] == 1
        },
    )
    .await;
    assert!(done, "the replayed delivery was delivered: {last}");
    assert_eq!(last["data"]["messagesSent"], 1);
    assert_eq!(
        (
            last["data"]["waiting"].as_i64(),
            last["data"]["dead"].as_i64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(last["task"], "endpoint.bulk-replay");
    t.finish().await;
}
