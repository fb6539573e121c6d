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
