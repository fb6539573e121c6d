//! The three plain HMAC-SHA256 schemes: Stripe's (timestamped, hex, several `v1` allowed),
//! GitHub's (hex, `sha256=` prefix) and Shopify's (base64).

use base64::{engine::general_purpose::STANDARD, Engine as _};

use super::{hex, hmac_sha256, Verified};
use crate::ingest::{
    request::{fresh, json_field, same, Inbound, Refusal},
    source::{GithubConfig, SecretConfig},
};

/// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`: HMAC-SHA256 of `{t}.{body}`
/// with the endpoint's secret (the whole `whsec_…` string), any `v1` may match. The event
/// is the body's `id` and `type`.
pub fn stripe(
    c: &SecretConfig,
    req: &Inbound,
    now: i64,
    tolerance: u64,
) -> Result<Verified, Refusal> {
    const HEADER: &str = "stripe-signature";
    let header = req.required(HEADER)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signatures.push(s),
            Some(_) => {}
            None => return Err(Refusal::MalformedHeader(HEADER.into())),
        }
    }
    let (Some(timestamp), false) = (timestamp, signatures.is_empty()) else {
        return Err(Refusal::MalformedHeader(HEADER.into()));
    };
    let expected = hex(&hmac_sha256(
        c.secret.trim().as_bytes(),
        &[timestamp.to_string().as_bytes(), b".", &req.body],
    ));
    if !signatures
        .iter()
        .any(|s| same(s.as_bytes(), expected.as_bytes()))
    {
        return Err(Refusal::BadSignature);
    }
    fresh(timestamp, now, tolerance)?;
    let body = req.json();
    let field = |name| body.as_ref().and_then(|b| json_field(b, name));
    Ok(Verified::event(
        field("id"),
        field("type").unwrap_or_else(|| "stripe".into()),
    ))
}

/// `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the body. The event is
/// `X-GitHub-Delivery`, of type `X-GitHub-Event`. Without a secret, unauthenticated.
pub fn github(c: &GithubConfig, req: &Inbound) -> Result<Verified, Refusal> {
    const HEADER: &str = "x-hub-signature-256";
    let delivery = req.header("x-github-delivery").map(str::to_string);
    let event_type = req.header("x-github-event").unwrap_or("github").to_string();
    let Some(secret) = c.secret.as_deref() else {
        return Ok(Verified {
            authenticated: false,
            ..Verified::event(delivery, event_type)
        });
    };
    let given = req
        .required(HEADER)?
        .strip_prefix("sha256=")
        .ok_or_else(|| Refusal::MalformedHeader(HEADER.into()))?;
    let expected = hex(&hmac_sha256(secret.as_bytes(), &[&req.body]));
    if !same(given.as_bytes(), expected.as_bytes()) {
        return Err(Refusal::BadSignature);
    }
    Ok(Verified::event(delivery, event_type))
}

/// `X-Shopify-Hmac-Sha256: <base64>`, HMAC-SHA256 of the body with the app's secret. The
/// event is `X-Shopify-Webhook-Id`, of type `X-Shopify-Topic`.
pub fn shopify(c: &SecretConfig, req: &Inbound) -> Result<Verified, Refusal> {
    const HEADER: &str = "x-shopify-hmac-sha256";
    let given = req.required(HEADER)?;
    let given = STANDARD
        .decode(given)
        .map_err(|_| Refusal::MalformedHeader(HEADER.into()))?;
    let expected = hmac_sha256(c.secret.trim().as_bytes(), &[&req.body]);
    if !same(&given, &expected) {
        return Err(Refusal::BadSignature);
    }
    Ok(Verified::event(
        req.header("x-shopify-webhook-id").map(str::to_string),
        req.header("x-shopify-topic")
            .unwrap_or("shopify")
            .to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn req(headers: &[(&str, &str)], body: &str) -> Inbound {
        Inbound::new(
            headers.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            Bytes::from(body.to_string()),
        )
    }

    fn secret(s: &str) -> SecretConfig {
        SecretConfig {
            secret: s.into(),
            tolerance_seconds: None,
        }
    }

    // Computed independently with OpenSSL: `printf '1700000000.{"id":"evt_1","type":
    // "charge.succeeded"}' | openssl dgst -sha256 -hmac whsec_test` (the integration tests
    // sign with Stripe's own library).
    const STRIPE_SIG: &str = "a3f7d2647ca8af4e7ebbd79c4f9380dbd98ee11b35cf0485b700ca327380e947";

    #[test]
    fn stripe_accepts_any_v1_and_checks_the_time() {
        let body = r#"{"id":"evt_1","type":"charge.succeeded"}"#;
        let c = secret("whsec_test");
        let ok = req(
            &[(
                "Stripe-Signature",
                &format!("t=1700000000,v1=00ff,v1={STRIPE_SIG}"),
            )],
            body,
        );
        let v = stripe(&c, &ok, 1_700_000_100, 300).unwrap();
        assert_eq!(
            (v.event_key.as_deref(), v.event_type.as_str()),
            (Some("evt_1"), "charge.succeeded")
        );
        assert_eq!(
            stripe(&c, &ok, 1_700_000_301, 300),
            Err(Refusal::StaleTimestamp(300))
        );
        let bad = req(&[("Stripe-Signature", "t=1700000000,v1=00ff")], body);
        assert_eq!(
            stripe(&c, &bad, 1_700_000_000, 300),
            Err(Refusal::BadSignature)
        );
        let malformed = req(&[("Stripe-Signature", "garbage")], body);
        assert_eq!(
            stripe(&c, &malformed, 1_700_000_000, 300),
            Err(Refusal::MalformedHeader("stripe-signature".into()))
        );
        assert_eq!(
            stripe(&c, &req(&[], body), 0, 300),
            Err(Refusal::MissingHeader("stripe-signature".into()))
        );
    }

    #[test]
    fn github_and_shopify_sign_the_body() {
        let body = r#"{"action":"opened"}"#;
        let sig = hex(&hmac_sha256(b"gh", &[body.as_bytes()]));
        let c = GithubConfig {
            secret: Some("gh".into()),
        };
        let ok = req(
            &[
                ("X-Hub-Signature-256", &format!("sha256={sig}")),
                ("X-GitHub-Delivery", "d-1"),
                ("X-GitHub-Event", "issues"),
            ],
            body,
        );
        let v = github(&c, &ok).unwrap();
        assert_eq!(
            (v.event_key.as_deref(), v.event_type.as_str()),
            (Some("d-1"), "issues")
        );
        let wrong = req(&[("X-Hub-Signature-256", "sha256=00")], body);
        assert_eq!(github(&c, &wrong), Err(Refusal::BadSignature));
        assert!(
            !github(&GithubConfig::default(), &wrong)
                .unwrap()
                .authenticated
        );

        let sig = STANDARD.encode(hmac_sha256(b"sh", &[body.as_bytes()]));
        let ok = req(
            &[
                ("X-Shopify-Hmac-Sha256", &sig),
                ("X-Shopify-Topic", "orders/create"),
            ],
            body,
        );
        assert_eq!(
            shopify(&secret("sh"), &ok).unwrap().event_type,
            "orders/create"
        );
        let bad = req(&[("X-Shopify-Hmac-Sha256", "***")], body);
        assert_eq!(
            shopify(&secret("sh"), &bad),
            Err(Refusal::MalformedHeader("x-shopify-hmac-sha256".into()))
        );
    }
}
