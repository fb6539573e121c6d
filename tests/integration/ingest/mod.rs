//! Inbound webhooks, one test per source type: a valid request (forwarded, and verified by
//! the receiver), the same event again (a duplicate, forwarded once), a bad signature, a
//! stale timestamp (where the scheme signs one), and a missing header. Signatures are made
//! by the providers' own libraries (`harness`).

pub mod harness;
mod more;

use serde_json::{json, Value};

use harness::{checked, github_sign, headers, now, post, python_sign, with, without, Expectations};

type Headers = Vec<(String, String)>;

/// Signs `body` for `scheme` three ways: now with `secret`, now with another secret, and
/// 1000 s ago (`id` for the Svix schemes).
fn three_ways(scheme: &str, secret: &str, wrong: &str, body: &str, id: &str) -> [Headers; 3] {
    let t = now();
    let s = python_sign(&[
        json!({"scheme": scheme, "secret": secret, "body": body, "timestamp": t, "id": id}),
        json!({"scheme": scheme, "secret": wrong, "body": body, "timestamp": t, "id": id}),
        json!({"scheme": scheme, "secret": secret, "body": body, "timestamp": t - 1000, "id": id}),
    ]);
    [headers(&s[0]), headers(&s[1]), headers(&s[2])]
}

/// The expectations of a scheme: `valid` sent twice, `bad`, `stale` where it applies, and
/// `valid` without the header `missing`.
fn expect<'a>(
    valid: Headers,
    bad: Headers,
    stale: Option<Headers>,
    missing: &'a str,
    body: &'a str,
    signature_header: &'a str,
) -> Expectations<'a> {
    Expectations {
        again: valid.clone(),
        missing: Some((without(&valid, missing), missing)),
        valid,
        bad,
        stale,
        body,
        signature_header,
    }
}

#[actix_rt::test]
async fn stripe() {
    let body = r#"{"id":"evt_1Q2w3E","object":"event","type":"payment_intent.succeeded","data":{"object":{"amount":4200}}}"#;
    let [valid, bad, stale] = three_ways(
        "stripe",
        "whsec_stripe_test_secret",
        "whsec_other",
        body,
        "",
    );
    let e = expect(
        valid,
        bad,
        Some(stale),
        "stripe-signature",
        body,
        "Stripe-Signature",
    );
    let (t, src) = checked("stripe", json!({"secret": "whsec_stripe_test_secret"}), e).await;
    // Its event type is Stripe's, for endpoints' filters.
    let m: String = sqlx::query_scalar("SELECT event_type FROM herald.message WHERE app_id = $1")
        .bind(&src.app_id)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(m, "payment_intent.succeeded");
    t.finish().await;
}

#[actix_rt::test]
async fn github() {
    let body = r#"{"action":"opened","issue":{"number":7}}"#;
    let ids = [
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-GitHub-Event", "issues"),
    ];
    let signed = |secret| {
        with(
            vec![("X-Hub-Signature-256".into(), github_sign(secret, body))],
            &ids,
        )
    };
    let e = expect(
        signed("gh-secret"),
        signed("other"),
        None,
        "x-hub-signature-256",
        body,
        "X-Hub-Signature-256",
    );
    let (t, _) = checked("github", json!({"secret": "gh-secret"}), e).await;
    t.finish().await;
}

#[actix_rt::test]
async fn shopify() {
    let body = r#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    let [valid, bad, _] = three_ways("shopify", "shpss_secret", "other", body, "");
    let ids = [
        (
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
        ("X-Shopify-Topic", "orders/create"),
    ];
    let e = expect(
        with(valid, &ids),
        with(bad, &ids),
        None,
        "x-shopify-hmac-sha256",
        body,
        "X-Shopify-Hmac-Sha256",
    );
    let (t, _) = checked("shopify", json!({"secret": "shpss_secret"}), e).await;
    t.finish().await;
}

#[actix_rt::test]
async fn slack() {
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let body = r#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi"}}"#;
    let [valid, bad, stale] = three_ways("slack", secret, "other", body, "");
    let e = expect(
        valid,
        bad,
        Some(stale),
        "x-slack-request-timestamp",
        body,
        "X-Slack-Signature",
    );
    let (t, src) = checked("slack", json!({"secret": secret}), e).await;
    // Slack checks a new URL with a challenge: answered, not forwarded.
    let challenge = r#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let signed = python_sign(&[
        json!({"scheme": "slack", "secret": secret, "body": challenge, "timestamp": now()}),
    ]);
    let (status, answer) = post(&src.url, &headers(&signed[0]), challenge).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    t.finish().await;
}

async fn svix_family(kind: &str, signature_header: &str) {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = r#"{"type":"invoice.paid","data":{"id":"in_1"}}"#;
    let wrong = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let [valid, bad, stale] = three_ways(kind, secret, wrong, body, "msg_p5jXN8AQM9LWM0D4loKWxJek");
    let e = expect(
        valid,
        bad,
        Some(stale),
        signature_header,
        body,
        signature_header,
    );
    let (t, _) = checked(kind, json!({"secret": secret}), e).await;
    t.finish().await;
}

#[actix_rt::test]
async fn svix() {
    svix_family("svix", "svix-signature").await;
}

#[actix_rt::test]
async fn standard_webhooks() {
    svix_family("standard-webhooks", "webhook-signature").await;
}

#[actix_rt::test]
async fn circle() {
    let keys = python_sign(&[json!({"op": "circle-key"}), json!({"op": "circle-key"})]);
    let body = r#"{"clientId":"c60d2d5b","notificationType":"payments","version":1,"notificationId":"3f6a4fd4-1ab6-4e5a-a2bb-6a0cd0e0c8e7","payment":{"amount":{"amount":"3.14","currency":"USD"}}}"#;
    let sigs = python_sign(&[
        json!({"op": "circle-sign", "private_pem": keys[0]["private_pem"], "body": body}),
        json!({"op": "circle-sign", "private_pem": keys[1]["private_pem"], "body": body}),
    ]);
    let signed = |s: &Value| {
        vec![
            (
                "X-Circle-Signature".to_string(),
                s["signature"].as_str().unwrap().to_string(),
            ),
            ("X-Circle-Key-Id".to_string(), "a1b2c3".to_string()),
        ]
    };
    let e = expect(
        signed(&sigs[0]),
        signed(&sigs[1]),
        None,
        "x-circle-key-id",
        body,
        "X-Circle-Signature",
    );
    let config = json!({"publicKeys": {"a1b2c3": keys[0]["public_spki"]}});
    let (t, _) = checked("circle", config, e).await;
    t.finish().await;
}

#[actix_rt::test]
async fn generic_hmac() {
    let config = json!({
        "secret": "generic-secret", "header": "X-Signature", "prefix": "sha512=",
        "algorithm": "sha512", "encoding": "base64", "timestampHeader": "X-Timestamp",
        "eventIdHeader": "X-Event-Id", "eventTypeField": "kind"
    });
    let body = r#"{"kind":"transfer.settled","amount":100}"#;
    let [valid, bad, stale] = three_ways("generic-hmac", "generic-secret", "other", body, "");
    let id = [("X-Event-Id", "tr-991")];
    let e = expect(
        with(valid, &id),
        with(bad, &id),
        Some(with(stale, &id)),
        "x-timestamp",
        body,
        "X-Signature",
    );
    let (t, _) = checked("generic-hmac", config, e).await;
    t.finish().await;
}
