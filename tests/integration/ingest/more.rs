//! Inbound webhooks beyond the per-type checks: unauthenticated sources, Circle's fetched
//! keys, URLs that no longer work, limits, reading events in SQL, and the Svix SDK.

use std::time::Duration;

use serde_json::json;
use sqlx::postgres::PgListener;
use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

use super::harness::{headers, now, post, python_sign, source};
use crate::support::{mock_receiver, spawn_app, spawn_app_with, wait_for_requests};

#[actix_rt::test]
async fn a_generic_webhook_source_is_unauthenticated_but_still_deduped() {
    let t = spawn_app().await;
    let receiver = mock_receiver(&[(200, None)]).await;
    let config = json!({"eventIdHeader": "X-Request-Id", "eventTypeField": "event"});
    let src = source(&t.api(), "generic-webhook", config, &receiver.uri()).await;
    let body = r#"{"event":"bank.transfer.received","amount":"12.00"}"#;
    let id = vec![("X-Request-Id".to_string(), "req-1".to_string())];
    let (status, first) = post(&src.url, &id, body).await;
    assert_eq!((status, &first["duplicate"]), (200, &json!(false)));
    let (status, again) = post(&src.url, &id, body).await;
    assert_eq!((status, &again["duplicate"]), (200, &json!(true)));
    // Without the id header there is nothing to dedupe on: each is forwarded.
    assert_eq!(post(&src.url, &[], body).await.0, 200);
    wait_for_requests(&receiver, 2, Duration::from_secs(20)).await;
    let verified: Vec<bool> =
        sqlx::query_scalar("SELECT verified FROM herald.ingest_event WHERE source_id = $1")
            .bind(&src.id)
            .fetch_all(&t.pool)
            .await
            .unwrap();
    assert!(verified.iter().all(|v| !v), "recorded as not verified");
    let event_type: String =
        sqlx::query_scalar("SELECT min(event_type) FROM herald.message WHERE app_id = $1")
            .bind(&src.app_id)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(event_type, "bank.transfer.received");
    t.finish().await;
}

#[actix_rt::test]
async fn circle_keys_are_fetched_once_per_key_id_with_the_api_key() {
    let keys = python_sign(&[json!({"op": "circle-key"})]);
    let key_server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path("/v2/notifications/publicKey/k-7"))
        .and(wiremock::matchers::header(
            "authorization",
            "Bearer circle-api-key",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "id": "k-7", "algorithm": "ECDSA_SHA_256", "publicKey": keys[0]["public_spki"]
        }})))
        .expect(1)
        .mount(&key_server)
        .await;
    let t = spawn_app().await;
    let receiver = mock_receiver(&[(200, None)]).await;
    let config = json!({
        "publicKeyUrl": format!("{}/v2/notifications/publicKey/{{keyId}}", key_server.uri()),
        "apiKey": "circle-api-key"
    });
    let src = source(&t.api(), "circle", config, &receiver.uri()).await;
    for n in 0..2 {
        let body = format!(r#"{{"notificationType":"payments","notificationId":"n-{n}"}}"#);
        let sig = python_sign(&[
            json!({"op": "circle-sign", "private_pem": keys[0]["private_pem"], "body": body}),
        ]);
        let headers = vec![
            (
                "X-Circle-Signature".to_string(),
                sig[0]["signature"].as_str().unwrap().to_string(),
            ),
            ("X-Circle-Key-Id".to_string(), "k-7".to_string()),
        ];
        let (status, answer) = post(&src.url, &headers, &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    wait_for_requests(&receiver, 2, Duration::from_secs(20)).await;
    // The API key is never shown.
    let shown = t
        .api()
        .get(&format!("/ingest/api/v1/source/{}", src.id))
        .await
        .1;
    assert!(!shown.to_string().contains("circle-api-key"), "{shown}");
    key_server.verify().await;
    t.finish().await;
}

#[actix_rt::test]
async fn unknown_and_rotated_urls_oversized_and_binary_bodies() {
    let t = spawn_app_with(&[("HERALD_INGEST_MAX_BODY_BYTES", "2048")]).await;
    let api = t.api();
    let receiver = mock_receiver(&[(200, None)]).await;
    let src = source(&api, "generic-webhook", json!(null), &receiver.uri()).await;
    assert_eq!(post(&src.url, &[], "{}").await.0, 200);
    let base = src.url.rsplit_once("/ingest/").unwrap().0.to_string();
    assert_eq!(
        post(&format!("{base}/ingest/not-a-token"), &[], "{}")
            .await
            .0,
        404
    );
    let rotated = api
        .expect(
            200,
            "POST",
            &format!("/ingest/api/v1/source/{}/token/rotate", src.id),
            None,
        )
        .await;
    let new_url = rotated["ingestUrl"].as_str().unwrap();
    assert_ne!(new_url, src.url);
    assert_eq!(
        post(&src.url, &[], "{}").await.0,
        404,
        "the old URL is gone"
    );
    assert_eq!(post(new_url, &[], "{}").await.0, 200);
    let (status, body) = post(new_url, &[], &"x".repeat(4096)).await;
    assert_eq!(status, 413, "{body}");
    let res = reqwest::Client::new()
        .post(new_url)
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    t.finish().await;
}

#[actix_rt::test]
async fn accepted_events_can_be_read_in_sql_and_are_announced_on_commit() {
    let t = spawn_app().await;
    let receiver = mock_receiver(&[(200, None)]).await;
    let secret = "whsec_stripe_sql";
    let src = source(
        &t.api(),
        "stripe",
        json!({"secret": secret}),
        &receiver.uri(),
    )
    .await;
    let mut listener = PgListener::connect(&t.database_url).await.unwrap();
    listener.listen("herald_ingest").await.unwrap();
    let body = r#"{"id":"evt_sql","type":"charge.refunded"}"#;
    let signed = python_sign(&[
        json!({"scheme": "stripe", "secret": secret, "body": body, "timestamp": now()}),
    ]);
    let headers = super::harness::headers(&signed[0]);
    assert_eq!(post(&src.url, &headers, body).await.0, 200);
    let note = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a NOTIFY on herald_ingest")
        .unwrap();
    assert_eq!(note.payload(), src.id);
    let (key, event_type, verified, stored, sig): (String, String, bool, String, String) =
        sqlx::query_as(
            "SELECT event_key, event_type, verified, body, headers->>'stripe-signature' \
         FROM herald.ingest_event WHERE source_id = $1 AND outcome = 'accepted'",
        )
        .bind(&src.id)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(
        (key.as_str(), event_type.as_str(), verified),
        ("evt_sql", "charge.refunded", true)
    );
    assert_eq!(stored, body);
    assert_eq!(sig, headers[0].1);
    // The API lists it too, with the refused ones (and Svix's log, the refused only).
    post(&src.url, &[], body).await;
    let events = t
        .api()
        .get(&format!("/ingest/api/v1/source/{}/event", src.id))
        .await
        .1;
    let outcomes: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["rejected", "accepted"]);
    let log = t
        .api()
        .get(&format!("/ingest/api/v1/source/{}/log", src.id))
        .await
        .1;
    assert_eq!(log["data"][0]["status_code"], 400);
    let shown = t
        .api()
        .get(&format!("/ingest/api/v1/source/{}", src.id))
        .await
        .1;
    assert!(shown["lastEventAt"].is_string(), "{shown}");
    t.finish().await;
}

#[actix_rt::test]
async fn the_official_svix_sdk_creates_a_source_and_its_endpoint() {
    let python = crate::sdk::python_with_svix();
    let t = spawn_app().await;
    let script = format!(
        r#"
from svix.api import Svix, SvixOptions
from svix.models import IngestSourceIn, IngestEndpointIn
svix = Svix("{token}", SvixOptions(server_url="{base}"))
src = svix.ingest.source.create(IngestSourceIn(name="Stripe live", uid="stripe-live", type="stripe", config={{"secret": "whsec_sdk"}}))
assert src.ingest_url.startswith("{base}/ingest/"), src.ingest_url
ep = svix.ingest.endpoint.create("stripe-live", IngestEndpointIn(url="https://billing.example/hooks"))
got = svix.ingest.source.get(src.id)
assert got.uid == "stripe-live" and got.type == "stripe", got
listed = svix.ingest.endpoint.list("stripe-live")
assert [e.id for e in listed.data] == [ep.id], listed
print(src.id, ep.id)
"#,
        token = crate::support::TOKEN,
        base = t.api().base
    );
    // (Off the test's thread: Herald's group-commit writers run on it.)
    let out = actix_rt::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-c", &script])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.starts_with("src_"), "{printed}");
    t.finish().await;
}

/// A change of name keeps a source's secret: the stored config is opened, checked and
/// sealed again (checked sealed, a Svix secret did not parse: 422).
#[actix_rt::test]
async fn a_patched_source_keeps_its_secret_sealed_and_still_verifies() {
    let t = spawn_app().await;
    let receiver = mock_receiver(&[(200, None)]).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let src = source(&t.api(), "svix", json!({"secret": secret}), &receiver.uri()).await;
    let patched = t
        .api()
        .expect(
            200,
            "PATCH",
            &format!("/ingest/api/v1/source/{}", src.id),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(patched["name"], "renamed");
    let stored: String =
        sqlx::query_scalar("SELECT config->>'secret' FROM herald.ingest_source WHERE id = $1")
            .bind(&src.id)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert!(
        stored.starts_with("hk1:") && !stored.contains(secret),
        "sealed at rest: {stored}"
    );
    let body = r#"{"type":"invoice.paid","data":{"id":"in_2"}}"#;
    let signed = python_sign(&[json!({"scheme": "svix", "secret": secret, "body": body,
                                      "timestamp": now(), "id": "msg_patched"})]);
    let (status, answer) = post(&src.url, &headers(&signed[0]), body).await;
    assert_eq!(status, 200, "{answer}");
    wait_for_requests(&receiver, 1, Duration::from_secs(20)).await;
    t.finish().await;
}
