//! Issue 14, part 1: an application's own signing secret (for deliveries to the callback
//! URL a message names).

use serde_json::json;

use crate::support::*;

#[actix_rt::test]
async fn every_application_has_a_secret_that_rotates_with_a_grace_period() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    api.create_app("acme", "Acme").await;
    let first = api
        .expect(200, "GET", "/api/v1/app/acme/secret", None)
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        herald::signing::Secret::parse(&first).is_ok(),
        "a whsec_ secret: {first}"
    );
    // The same until rotated.
    assert_eq!(
        api.expect(200, "GET", "/api/v1/app/acme/secret", None)
            .await["key"],
        json!(first)
    );
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=";
    let rotated = api
        .expect(
            200,
            "POST",
            "/api/v1/app/acme/secret/rotate",
            Some(json!({"key": given, "gracePeriodSeconds": 3600})),
        )
        .await;
    assert_eq!(rotated["key"], json!(given));
    assert_eq!(
        api.expect(200, "GET", "/api/v1/app/acme/secret", None)
            .await["key"],
        json!(given)
    );
    // The old one keeps signing for the hour; a rotation without a body makes a new key.
    let signing: i64 = t
        .count(
            "SELECT count(*) FROM herald.application_secret s JOIN herald.application a \
             ON a.id = s.app_id WHERE a.uid = 'acme' AND (s.expires_at IS NULL \
             OR s.expires_at BETWEEN now() + interval '59 minutes' AND now() + interval '1 hour')",
        )
        .await;
    assert_eq!(signing, 2);
    let fresh = api
        .expect(200, "POST", "/api/v1/app/acme/secret/rotate", None)
        .await["key"]
        .clone();
    assert_ne!(fresh, json!(given));
    for (body, field) in [
        (json!({"key": "not-a-secret"}), "body.key"),
        (
            json!({"gracePeriodSeconds": 700000}),
            "body.gracePeriodSeconds",
        ),
    ] {
        let (status, answer) = api.post("/api/v1/app/acme/secret/rotate", body).await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            invalid_fields(&answer).contains(&field.to_string()),
            "{answer}"
        );
    }
    api.expect(404, "GET", "/api/v1/app/nobody/secret", None)
        .await;
    // An application written by hand has one too.
    sqlx::query("INSERT INTO herald.application (uid, name) VALUES ('by-hand', 'By hand')")
        .execute(&t.pool)
        .await
        .unwrap();
    api.expect(200, "GET", "/api/v1/app/by-hand/secret", None)
        .await;
    t.finish().await;
}

/// `herald.send_message(..., url => ...)` as a producer calls it: in its own transaction.
async fn send_in_tx(
    t: &TestApp,
    event_id: &str,
    url: &str,
    commit: bool,
) -> Result<String, sqlx::Error> {
    let mut tx = t.pool.begin().await?;
    let id: String = sqlx::query_scalar(
        "SELECT herald.send_message('shop', 'payment.confirmed', $1, event_id => $2, url => $3)",
    )
    .bind(format!(
        r#"{{"payment":"{event_id}","status":"confirmed"}}"#
    ))
    .bind(event_id)
    .bind(url)
    .fetch_one(&mut *tx)
    .await?;
    if commit {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(id)
}

fn paths(requests: &[wiremock::Request]) -> Vec<String> {
    requests.iter().map(|r| r.url.path().to_string()).collect()
}

#[actix_rt::test]
async fn a_callback_url_is_checked_in_the_producers_transaction_and_signed_with_the_app_secret() {
    let t = spawn_app_with(&[("HERALD_DESTINATION_ALLOWLIST", "127.0.0.1")]).await;
    let api = t.api();
    api.create_app("shop", "Shop").await;
    let receiver = mock_receiver(&[(200, None)]).await;
    // An ordinary endpoint beside it: it gets the application's messages, not the callbacks.
    api.expect(
        201,
        "POST",
        "/api/v1/app/shop/endpoint",
        Some(json!({"url": format!("{}/subscribed", receiver.uri())})),
    )
    .await;
    let secret = api
        .expect(200, "GET", "/api/v1/app/shop/secret", None)
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();

    // Allowed: committed, delivered to that URL only, verifiable with the app's secret.
    let first = send_in_tx(&t, "pay-1", &format!("{}/cb/pay-1", receiver.uri()), true)
        .await
        .unwrap();
    // Outside the allowlist: the producer's statement fails, naming the rule.
    let refused = send_in_tx(&t, "pay-2", "https://merchant.example/cb", true)
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert!(text.contains("HERALD_DESTINATION_ALLOWLIST"), "{text}");
    // Rolled back: nothing is sent, and no endpoint is left behind.
    send_in_tx(
        &t,
        "pay-3",
        &format!("{}/cb/rolled-back", receiver.uri()),
        false,
    )
    .await
    .unwrap();
    // The same event id again: the same message, delivered once.
    let again = send_in_tx(&t, "pay-1", &format!("{}/cb/pay-1", receiver.uri()), true)
        .await
        .unwrap();
    assert_eq!(again, first);
    // Another payment to the same URL: the same callback endpoint.
    let second = send_in_tx(&t, "pay-1b", &format!("{}/cb/pay-1", receiver.uri()), true)
        .await
        .unwrap();
    assert_ne!(second, first);
    // Then a message through the HTTP API, the same way, and one for the subscribers.
    let by_api = api
        .expect(
            202,
            "POST",
            "/api/v1/app/shop/msg",
            Some(
                json!({"eventType": "payment.confirmed", "payload": {"payment": "pay-4"},
                        "callbackUrl": format!("{}/cb/pay-4", receiver.uri())}),
            ),
        )
        .await;
    api.expect(
        202,
        "POST",
        "/api/v1/app/shop/msg",
        Some(json!({"eventType": "payment.confirmed", "payload": {"payment": "pay-5"}})),
    )
    .await;

    let requests = wait_for_requests(&receiver, 4, WAIT).await;
    let mut got = paths(&requests);
    got.sort();
    assert_eq!(got, ["/cb/pay-1", "/cb/pay-1", "/cb/pay-4", "/subscribed"]);
    for r in requests.iter().filter(|r| r.url.path().starts_with("/cb/")) {
        verify(&secret, r).unwrap_or_else(|e| panic!("{}: {e}", r.url));
    }
    let ids: Vec<String> = requests.iter().map(|r| header(r, "webhook-id")).collect();
    assert!(ids.contains(&first) && ids.contains(&by_api["id"].as_str().unwrap().to_string()));
    // Nothing more comes: each message has exactly the one delivery it should.
    for id in [&first, &second, &by_api["id"].as_str().unwrap().to_string()] {
        let deliveries = t
            .count(&format!(
                "SELECT count(*) FROM herald.delivery WHERE message_id = '{id}'"
            ))
            .await;
        assert_eq!(deliveries, 1, "{id}");
    }
    let endpoints = t
        .count("SELECT count(*) FROM herald.endpoint WHERE callback AND url LIKE '%/cb/pay-1'")
        .await;
    assert_eq!(endpoints, 1);
    let messages = t
        .count("SELECT count(*) FROM herald.message m JOIN herald.application a ON a.id = m.app_id WHERE a.uid = 'shop'")
        .await;
    assert_eq!(
        messages, 4,
        "pay-1, pay-1b, pay-4, pay-5: nothing of the refused or rolled back"
    );
    let left = t
        .count("SELECT count(*) FROM herald.endpoint WHERE url LIKE '%rolled-back%' OR url LIKE '%merchant.example%'")
        .await;
    assert_eq!(left, 0);
    t.finish().await;
}

const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

#[actix_rt::test]
async fn callback_endpoints_are_listed_when_asked_and_not_edited() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let api = t.api();
    api.create_app("shop", "Shop").await;
    let (status, answer) = api
        .post(
            "/api/v1/app/shop/msg",
            json!({"eventType": "payment.confirmed", "payload": {},
                   "callbackUrl": "http://169.254.169.254/latest/meta-data"}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(invalid_fields(&answer), ["body.callbackUrl"]);
    let named = api
        .expect(
            202,
            "POST",
            "/api/v1/app/shop/msg",
            Some(json!({"eventType": "payment.confirmed", "payload": {},
                        "callbackUrl": "https://merchant.example/cb"})),
        )
        .await;
    // An ordinary endpoint added afterwards: replay-missing leaves the message that named
    // its own URL out, and a resend to it is refused.
    let ordinary = api
        .expect(
            201,
            "POST",
            "/api/v1/app/shop/endpoint",
            Some(json!({"url": "https://subscriber.example/hooks"})),
        )
        .await;
    let ordinary = ordinary["id"].as_str().unwrap();
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let task = api
        .expect(
            202,
            "POST",
            &format!("/api/v1/app/shop/endpoint/{ordinary}/replay-missing"),
            Some(json!({"since": since})),
        )
        .await;
    assert_eq!(task["data"]["messagesSent"], json!(0));
    api.expect(
        409,
        "POST",
        &format!(
            "/api/v1/app/shop/msg/{}/endpoint/{ordinary}/resend",
            named["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    let listed = api
        .expect(200, "GET", "/api/v1/app/shop/endpoint?callbacks=true", None)
        .await;
    assert_eq!(data_len(&listed), 2);
    let callback = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["callback"] == json!(true))
        .unwrap();
    assert_eq!(
        (&callback["url"], &callback["callback"]),
        (&json!("https://merchant.example/cb"), &json!(true))
    );
    assert_eq!(
        data_len(
            &api.expect(200, "GET", "/api/v1/app/shop/endpoint", None)
                .await
        ),
        1,
        "the ordinary one only"
    );
    let path = format!(
        "/api/v1/app/shop/endpoint/{}",
        callback["id"].as_str().unwrap()
    );
    for (method, body) in [
        ("PATCH", Some(json!({"url": "https://elsewhere.example/"}))),
        ("PUT", Some(json!({"url": "https://elsewhere.example/"}))),
    ] {
        api.expect(409, method, &path, body).await;
    }
    api.expect(409, "GET", &format!("{path}/secret"), None)
        .await;
    api.expect(204, "DELETE", &path, None).await;
    t.finish().await;
}

/// The rules `herald.check_callback_url` applies in SQL are those the API applies in Rust
/// (`destination::Policy::check_url`), for the same settings, on URLs of every kind; SQL is
/// stricter in one documented way: IPv6 literals carrying an IPv4 address.
#[actix_rt::test]
async fn the_sql_check_agrees_with_the_destination_policy() {
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let urls = [
        "https://example.com/cb",
        "http://example.com:8080/cb?x=1",
        "https://EXAMPLE.com./cb",
        "https://api.example.org/hooks",
        "https://example.org/hooks",
        "https://8.8.8.8/",
        "http://8.8.8.8:80/",
        "https://[2606:4700::1111]/",
        "http://localhost/",
        "http://app.localhost:8080/",
        "http://127.0.0.1/",
        "http://127.0.0.1:3000/cb",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://172.32.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://198.18.0.1/",
        "http://203.0.113.9/",
        "http://192.0.2.1/",
        "http://192.88.99.1/",
        "http://[2001::1]/",
        "http://[3fff::1]/",
        "https://h.example:99999/",
        "https://[8.8.8.8]/",
        "https://a[b]/",
        "http://[::1]/",
        "http://[::]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[2001:db8::1]/",
        "http://[ff02::1]/",
        "ftp://example.com/",
        "https://user:pass@example.com/",
        "not a url",
    ];
    let policies = [
        (vec![], false, vec![]),
        (vec![], true, vec![]),
        (
            vec!["*.example.org".to_string(), "example.com".to_string()],
            false,
            vec![],
        ),
        (vec![], false, vec!["127.0.0.0/8".parse().unwrap()]),
        (
            vec!["127.0.0.1".to_string(), "[::1]".to_string()],
            false,
            vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        ),
    ];
    for (allowlist, require_https, allowed_cidrs) in policies {
        let policy = herald::destination::Policy {
            allowed_cidrs,
            allowlist,
            require_https,
        };
        let cidrs: Vec<String> = policy.allowed_cidrs.iter().map(|n| n.to_string()).collect();
        sqlx::query(
            "INSERT INTO herald.runtime_setting (name, value, written_by) \
             SELECT n, v, 'test' FROM unnest($1::text[], $2::text[]) u(n, v) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(vec![
            "destination_allowlist",
            "require_https",
            "allowed_cidrs",
        ])
        .bind(vec![
            policy.allowlist.join(","),
            require_https.to_string(),
            cidrs.join(","),
        ])
        .execute(&t.pool)
        .await
        .unwrap();
        for url in urls {
            let rust =
                herald::api::validate::url("url", url).is_ok() && policy.check_url(url).is_ok();
            let sql = sqlx::query("SELECT herald.check_callback_url($1)")
                .bind(url)
                .execute(&t.pool)
                .await;
            assert_eq!(sql.is_ok(), rust, "{url} with {policy:?}: SQL says {sql:?}");
        }
        // Stricter in SQL: an IPv4 address inside an IPv6 literal, even a public one.
        // And anything a URL parser would rewrite before judging it.
        for url in [
            "http://[::ffff:8.8.8.8]/",
            "http://[2002:808:808::1]/",
            "http://127.0.0.\t1/",
            "http://example.com /",
            "http://127.0.0.%31/",
            "http://127\u{3002}0\u{3002}0\u{3002}1/",
            "http://127.0.0.1\\.x.example.org/",
        ] {
            let sql = sqlx::query("SELECT herald.check_callback_url($1)")
                .bind(url)
                .execute(&t.pool)
                .await;
            assert!(sql.is_err(), "{url}");
        }
    }
    // Odd spellings of an address are refused in SQL (a URL parser reads them as 127.0.0.1).
    for url in [
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
    ] {
        let err = sqlx::query("SELECT herald.check_callback_url($1)")
            .bind(url)
            .execute(&t.pool)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("four decimal numbers"), "{url}: {err}");
    }
    t.finish().await;
}
