//! Circle: `X-Circle-Signature` is a base64 DER ECDSA P-256 signature (SHA-256) of the
//! raw body, by the key `X-Circle-Key-Id` names. Keys (base64 DER SubjectPublicKeyInfo)
//! come from the source's config, or are fetched once per key id from its key URL (with its
//! API key) and kept. The event is the body's `notificationId`, of type `notificationType`.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use openssl::{
    ec::EcKey,
    hash::MessageDigest,
    pkey::{PKey, Public},
    sign::Verifier,
};

use super::{Context, Verified};
use crate::ingest::{
    request::{json_field, Inbound, Refusal},
    source::CircleConfig,
};

/// A P-256 public key from its base64 DER SubjectPublicKeyInfo.
pub fn public_key(b64: &str) -> Result<PKey<Public>, String> {
    let der = STANDARD.decode(b64.trim()).map_err(|e| e.to_string())?;
    let key = PKey::public_key_from_der(&der).map_err(|e| e.to_string())?;
    let ec: EcKey<Public> = key.ec_key().map_err(|_| "not an EC key".to_string())?;
    match ec.group().curve_name() {
        Some(openssl::nid::Nid::X9_62_PRIME256V1) => Ok(key),
        _ => Err("not a P-256 key".into()),
    }
}

/// Keys fetched from key URLs, by source and key id, for the life of the process.
#[derive(Default)]
pub struct KeyCache(Mutex<HashMap<(String, String), PKey<Public>>>);

impl KeyCache {
    fn get(&self, source: &str, key_id: &str) -> Option<PKey<Public>> {
        self.0
            .lock()
            .expect("key cache")
            .get(&(source.to_string(), key_id.to_string()))
            .cloned()
    }

    fn put(&self, source: &str, key_id: &str, key: PKey<Public>) {
        self.0
            .lock()
            .expect("key cache")
            .insert((source.to_string(), key_id.to_string()), key);
    }
}

/// The key `key_id` names: configured, cached, or fetched now.
async fn key(c: &CircleConfig, key_id: &str, ctx: &Context<'_>) -> Result<PKey<Public>, Refusal> {
    if let Some(k) = c.public_keys.get(key_id) {
        return public_key(k)
            .map_err(|_| Refusal::KeyUnavailable("a configured key is invalid".into()));
    }
    if let Some(k) = ctx.keys.get(ctx.source_id, key_id) {
        return Ok(k);
    }
    let Some(template) = &c.public_key_url else {
        // Not one of the configured keys: nothing could have signed with it.
        return Err(Refusal::BadSignature);
    };
    // The key id goes into a URL: only what a key id can be.
    if key_id.is_empty()
        || !key_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Refusal::MalformedHeader("x-circle-key-id".into()));
    }
    let url = template.replace("{keyId}", key_id);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let mut request = client.get(&url);
    if let Some(api_key) = &c.api_key {
        request = request.bearer_auth(api_key);
    }
    let unavailable = |why: String| Refusal::KeyUnavailable(why);
    let mut res = request
        .send()
        .await
        .map_err(|e| unavailable(format!("fetching the key failed: {e}")))?;
    if res.status().as_u16() == 404 {
        return Err(Refusal::BadSignature);
    }
    if !res.status().is_success() {
        return Err(unavailable(format!(
            "the key server answered {}",
            res.status()
        )));
    }
    let body: serde_json::Value = res
        .json()
        .limit(64 * 1024)
        .await
        .map_err(|e| unavailable(format!("the key server's answer: {e}")))?;
    let b64 = json_field(&body, "data.publicKey")
        .or_else(|| json_field(&body, "publicKey"))
        .ok_or_else(|| unavailable("no publicKey in the key server's answer".into()))?;
    let k = public_key(&b64).map_err(|e| unavailable(format!("the fetched key: {e}")))?;
    ctx.keys.put(ctx.source_id, key_id, k.clone());
    Ok(k)
}

pub async fn verify(
    c: &CircleConfig,
    req: &Inbound,
    ctx: &Context<'_>,
) -> Result<Verified, Refusal> {
    const SIGNATURE: &str = "x-circle-signature";
    let signature = STANDARD
        .decode(req.required(SIGNATURE)?)
        .map_err(|_| Refusal::MalformedHeader(SIGNATURE.into()))?;
    let key_id = req.required("x-circle-key-id")?.to_string();
    let key = key(c, &key_id, ctx).await?;
    let valid = Verifier::new(MessageDigest::sha256(), &key)
        .and_then(|mut v| {
            v.update(&req.body)?;
            v.verify(&signature)
        })
        // A signature that is not DER is simply not valid.
        .unwrap_or(false);
    if !valid {
        return Err(Refusal::BadSignature);
    }
    let body = req.json();
    let field = |name| body.as_ref().and_then(|b| json_field(b, name));
    Ok(Verified {
        event_key: field("notificationId"),
        event_type: field("notificationType").unwrap_or_else(|| "circle".into()),
        authenticated: true,
        handshake: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use openssl::{ec::EcGroup, nid::Nid, pkey::Private, sign::Signer};

    fn keypair() -> (PKey<Private>, String) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let spki = STANDARD.encode(key.public_key_to_der().unwrap());
        (key, spki)
    }

    fn sign(key: &PKey<Private>, body: &[u8]) -> String {
        let mut s = Signer::new(MessageDigest::sha256(), key).unwrap();
        s.update(body).unwrap();
        STANDARD.encode(s.sign_to_vec().unwrap())
    }

    #[actix_rt::test]
    async fn a_configured_key_verifies_and_another_does_not() {
        let (key, spki) = keypair();
        let (other, _) = keypair();
        let c = CircleConfig {
            public_keys: [("k1".to_string(), spki)].into(),
            ..Default::default()
        };
        let body = br#"{"notificationId":"n-1","notificationType":"payments"}"#;
        let cache = KeyCache::default();
        let ctx = Context {
            now: 0,
            tolerance: 300,
            keys: &cache,
            source_id: "src_1",
        };
        let req = |sig: String, key_id: &str| {
            Inbound::new(
                [
                    ("X-Circle-Signature".to_string(), sig),
                    ("X-Circle-Key-Id".to_string(), key_id.to_string()),
                ],
                Bytes::from_static(body),
            )
        };
        let v = verify(&c, &req(sign(&key, body), "k1"), &ctx)
            .await
            .unwrap();
        assert_eq!(
            (v.event_key.as_deref(), v.event_type.as_str()),
            (Some("n-1"), "payments")
        );
        assert_eq!(
            verify(&c, &req(sign(&other, body), "k1"), &ctx).await,
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&c, &req(sign(&key, body), "k2"), &ctx).await,
            Err(Refusal::BadSignature),
            "an unknown key id, with no key URL"
        );
        assert_eq!(
            verify(&c, &req("%%".into(), "k1"), &ctx).await,
            Err(Refusal::MalformedHeader("x-circle-signature".into()))
        );
        assert!(public_key("bm90IGEga2V5").is_err());
    }
}
