//! Secrets encrypted at rest (issue 16): a dump of the database holds no signing secret,
//! header value or source secret in plain text; deliveries still verify with them; a key
//! rotation (`herald keys rotate`) keeps every delivery verifiable; plaintext rows of an
//! earlier version are sealed while Herald runs; sensitive headers are redacted.

use std::{process::Command, time::Duration};

use serde_json::json;
use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);
/// base64 of "herald-integration-second-key-32".
const SECOND_KEY: &str = "aGVyYWxkLWludGVncmF0aW9uLXNlY29uZC1rZXktMzI=";

/// What `pg_dump` writes of the test database: its data, as an operator's backup has it.
fn dump(database_url: &str) -> String {
    let out = Command::new("pg_dump")
        .args(["--data-only", "--schema=herald", "--dbname", database_url])
        .output()
        .expect("pg_dump runs (postgresql-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A secret as `pg_dump` would show it: its text, and its key bytes as a bytea's hex.
fn spellings(secret: &herald::signing::Secret) -> Vec<String> {
    let hex: String = secret
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    vec![
        secret.expose(),
        secret.expose().trim_start_matches("whsec_").to_string(),
        hex,
    ]
}

async fn receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    server
}

#[actix_rt::test]
async fn a_dump_holds_no_secret_in_plain_text_and_deliveries_still_verify() {
    let t = spawn_app().await;
    let api = t.api();
    let server = receiver().await;
    let secret = herald::signing::Secret::generate();
    let endpoint = api
        .acme_endpoint(json!({
            "url": server.uri(),
            "secret": secret.expose(),
            "headers": {"Authorization": "Bearer hunter2-credential", "X-Tenant": "tenant-name-7"},
        }))
        .await;
    let ep = endpoint["id"].as_str().unwrap();
    let app_secret = api
        .expect(200, "GET", "/api/v1/app/acme/secret", None)
        .await;
    let app_secret = herald::signing::Secret::parse(app_secret["key"].as_str().unwrap()).unwrap();
    let rotated = api
        .expect(
            200,
            "POST",
            &format!("/api/v1/app/acme/endpoint/{ep}/secret/rotate"),
            Some(json!({})),
        )
        .await;
    let rotated = herald::signing::Secret::parse(rotated["key"].as_str().unwrap()).unwrap();
    let stripe_secret = "whsec_stripe_source_secret_4711";
    let circle_key = "circle-api-key-0815-0815";
    for (kind, config) in [
        ("stripe", json!({"secret": stripe_secret})),
        (
            "circle",
            json!({"apiKey": circle_key, "publicKeyUrl": "https://example.com/{keyId}"}),
        ),
    ] {
        api.expect(
            201,
            "POST",
            "/ingest/api/v1/source",
            Some(json!({"name": kind, "type": kind, "config": config})),
        )
        .await;
    }

    let text = dump(&t.database_url);
    assert!(text.contains("hk1:"), "sealed values are in the dump");
    let mut secrets = spellings(&secret);
    secrets.extend(spellings(&rotated));
    secrets.extend(spellings(&app_secret));
    secrets.extend(
        [
            "hunter2-credential",
            "tenant-name-7",
            stripe_secret,
            circle_key,
        ]
        .map(String::from),
    );
    for s in &secrets {
        assert!(
            !text.contains(s.as_str()),
            "{s} is in the dump in plain text"
        );
    }

    // Credentials are named, not shown; other headers are shown.
    let headers = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/endpoint/{ep}/headers"),
            None,
        )
        .await;
    assert_eq!(
        headers,
        json!({"headers": {"X-Tenant": "tenant-name-7"}, "sensitive": ["Authorization"]})
    );
    // The secrets come back as they were given, and sign.
    let shown = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/app/acme/endpoint/{ep}/secret"),
            None,
        )
        .await;
    assert_eq!(shown["key"], rotated.expose());
    t.send("acme", "payment.confirmed", r#"{"payment_id":"pr_1"}"#)
        .await;
    let request = wait_for_requests(&server, 1, WAIT).await.remove(0);
    verify(&rotated.expose(), &request).expect("signed with the current secret");
    verify(&secret.expose(), &request).expect("and the rotated-out one, in its grace period");
    assert_eq!(
        header(&request, "authorization"),
        "Bearer hunter2-credential"
    );
    assert_eq!(header(&request, "x-tenant"), "tenant-name-7");
    t.finish().await;
}

/// `herald keys rotate`, as an operator runs it beside a running Herald.
fn keys_rotate(database_url: &str, key: &str, old_keys: &str) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            command.env_remove(name);
        }
    }
    command
        .args(["keys", "rotate", "--batch", "2"])
        .env(
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .env("HERALD_DATABASE_URL", database_url)
        .env("HERALD_ENCRYPTION_KEY", key)
        .env("HERALD_ENCRYPTION_OLD_KEYS", old_keys)
        .output()
        .expect("herald keys rotate runs")
}

#[actix_rt::test]
async fn a_key_rotation_keeps_every_delivery_verifiable() {
    let first = spawn_app().await;
    let api = first.api();
    api.create_app("acme", "Acme").await;
    let server = receiver().await;
    let mut secrets = Vec::new();
    for n in 0..3 {
        let secret = herald::signing::Secret::generate();
        let endpoint = json!({"url": format!("{}/{n}", server.uri()), "secret": secret.expose(),
                              "headers": {"X-Api-Key": format!("key-{n}")}});
        api.expect(201, "POST", "/api/v1/app/acme/endpoint", Some(endpoint))
            .await;
        secrets.push(secret);
    }
    let source =
        json!({"name": "Stripe", "type": "stripe", "config": {"secret": "whsec_stripe_4711"}});
    api.expect(201, "POST", "/ingest/api/v1/source", Some(source))
        .await;
    first.app.shutdown().await;

    // The new key current, the old one still read: what an operator deploys first.
    let overrides = [
        ("HERALD_ENCRYPTION_KEY", SECOND_KEY),
        ("HERALD_ENCRYPTION_OLD_KEYS", TEST_KEY),
    ];
    let second = spawn_app_on(&first.database_url, &overrides).await;
    let server = &server;
    let delivered = move |n: usize| async move {
        let requests = wait_for_requests(server, n, WAIT).await;
        requests[n - 3..].to_vec()
    };
    let check = |requests: Vec<wiremock::Request>| {
        for request in requests {
            let n: usize = request.url.path().trim_start_matches('/').parse().unwrap();
            verify(&secrets[n].expose(), &request).expect("verifies with the endpoint's secret");
            assert_eq!(header(&request, "x-api-key"), format!("key-{n}"));
        }
    };
    second.send("acme", "payment.confirmed", "{}").await;
    check(delivered(3).await);

    // One endpoint's row held by another transaction, as the engine holds rows for a
    // statement: the rotation waits for it instead of leaving its headers under the old key
    // (which the operator then discards).
    let mut holder = second.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM herald.endpoint WHERE url LIKE '%/1' FOR NO KEY UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let url = first.database_url.clone();
    let rotation = std::thread::spawn(move || keys_rotate(&url, SECOND_KEY, TEST_KEY));
    let waiting = || async {
        second
            .count(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'herald' AND wait_event_type = 'Lock' AND query LIKE '%FROM herald.endpoint%'",
            )
            .await
    };
    wait_until(WAIT, waiting, |n| *n > 0 || rotation.is_finished()).await;
    holder.commit().await.unwrap();
    let out = rotation.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for count in ["3 endpoint secrets", "3 endpoints' headers", "1 sources"] {
        assert!(said.contains(count), "{count}: {said}");
    }
    let new_id =
        herald::keyring::Keyring::new(&herald::keyring::parse_key(SECOND_KEY).unwrap(), &[])
            .current_id()
            .unwrap()
            .to_string();
    let left: i64 = second
        .count(&format!(
            "SELECT count(*) FROM herald.endpoint_secret \
             WHERE split_part(convert_from(key, 'UTF8'), ':', 2) <> '{new_id}'"
        ))
        .await;
    assert_eq!(left, 0, "every endpoint secret is sealed with the new key");
    let source_key: String = sqlx::query_scalar(
        "SELECT split_part(config->>'secret', ':', 2) FROM herald.ingest_source",
    )
    .fetch_one(&second.pool)
    .await
    .unwrap();
    assert_eq!(source_key, new_id, "so is the source's secret");
    second.app.shutdown().await;

    // The old key gone: everything still opens, signs and carries its headers.
    let third = spawn_app_on(
        &first.database_url,
        &[("HERALD_ENCRYPTION_KEY", SECOND_KEY)],
    )
    .await;
    third.send("acme", "payment.confirmed", "{}").await;
    check(delivered(6).await);
    assert_eq!(
        third
            .count("SELECT count(*) FROM herald.attempt WHERE NOT succeeded")
            .await,
        0
    );
    third.finish().await;
}

#[actix_rt::test]
async fn plaintext_secrets_of_an_earlier_version_are_sealed_while_herald_runs() {
    let database_url = fresh_database().await;
    // The schema of this version, rows as the previous one wrote them.
    let migrating = spawn_app_on(&database_url, &[("HERALD_ROLE", "api")]).await;
    migrating.app.shutdown().await;
    let server = receiver().await;
    let secret = herald::signing::Secret::generate();
    sqlx::query(
        "WITH app AS (INSERT INTO herald.application (uid, name) VALUES ('old', 'Old') RETURNING id), \
         ep AS (INSERT INTO herald.endpoint (app_id, url, headers) \
                SELECT id, $1, '{\"Authorization\": \"Bearer plain-old\"}' FROM app RETURNING id) \
         INSERT INTO herald.endpoint_secret (endpoint_id, key) SELECT id, $2 FROM ep",
    )
    .bind(server.uri())
    .bind(secret.as_bytes())
    .execute(&migrating.pool)
    .await
    .unwrap();
    let t = spawn_app_on(&database_url, &[("HERALD_RETENTION_INTERVAL", "1s")]).await;
    for (what, sql) in [
        ("the endpoint secret", "SELECT count(*) FROM herald.endpoint_secret WHERE substring(key FROM 1 FOR 4) = 'hk1:'"),
        ("the application secret", "SELECT count(*) FROM herald.application_secret WHERE substring(key FROM 1 FOR 4) = 'hk1:'"),
        ("the header value", "SELECT count(*) FROM herald.endpoint WHERE headers->>'Authorization' LIKE 'hk1:%'"),
    ] {
        let count = || {
            let pool = t.pool.clone();
            async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
        };
        assert!(wait_until(WAIT, count, |n| *n == 1).await, "{what} was sealed");
    }
    let text = dump(&database_url);
    for s in spellings(&secret)
        .into_iter()
        .chain(["plain-old".to_string()])
    {
        assert!(!text.contains(&s), "{s} is in the dump in plain text");
    }
    t.send("old", "payment.confirmed", "{}").await;
    let request = wait_for_requests(&server, 1, WAIT).await.remove(0);
    verify(&secret.expose(), &request).expect("the sealed secret still signs");
    assert_eq!(header(&request, "authorization"), "Bearer plain-old");
    t.finish().await;
}
