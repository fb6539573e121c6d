//! What every inbound-webhook test needs: signatures made by the providers' own libraries
//! (`tests/ingest/sign.py`, `tests/ingest/github-sign.mjs`), a source with an endpoint at a
//! receiver, and a way to post as a provider does.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use serde_json::{json, Value};

use crate::{
    sdk::python_with_svix,
    support::{wait_for_requests, Api, TestApp},
};

/// Runs `tests/ingest/sign.py` on `requests`; one answer each.
pub fn python_sign(requests: &[Value]) -> Vec<Value> {
    let python = python_with_svix();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ingest/sign.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(requests.to_vec()).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sign.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// `X-Hub-Signature-256` for `body`, made by GitHub's own library (Node).
pub fn github_sign(secret: &str, body: &str) -> String {
    static INSTALL: Mutex<()> = Mutex::new(());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/ingest-node");
    {
        let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = std::fs::read_to_string(root.join("tests/ingest/package-lock.json")).unwrap();
        let stamp = dir.join("installed.lock");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
            std::fs::create_dir_all(&dir).unwrap();
            for f in ["package.json", "package-lock.json", "github-sign.mjs"] {
                std::fs::copy(root.join("tests/ingest").join(f), dir.join(f)).unwrap();
            }
            let status = Command::new("npm")
                .args(["ci", "--silent", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect("npm is installed (Debian's nodejs and npm; .ci/run installs them)");
            assert!(status.success(), "npm ci in target/ingest-node failed");
            std::fs::write(&stamp, wanted).unwrap();
        }
    }
    let mut child = Command::new("node")
        .arg(dir.join("github-sign.mjs"))
        .arg(secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// A source with one endpoint at a receiver.
pub struct Source {
    pub id: String,
    pub app_id: String,
    pub url: String,
    pub endpoint_secret: String,
}

pub async fn source(api: &Api, kind: &str, config: Value, receiver: &str) -> Source {
    let s = api
        .expect(
            201,
            "POST",
            "/ingest/api/v1/source",
            Some(json!({"name": format!("{kind} source"), "type": kind, "config": config})),
        )
        .await;
    let id = s["id"].as_str().unwrap().to_string();
    let e = api
        .expect(
            201,
            "POST",
            &format!("/ingest/api/v1/source/{id}/endpoint"),
            Some(json!({"url": format!("{receiver}/{kind}")})),
        )
        .await;
    let secret = api
        .expect(
            200,
            "GET",
            &format!(
                "/ingest/api/v1/source/{id}/endpoint/{}/secret",
                e["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    Source {
        app_id: s["appId"].as_str().unwrap().to_string(),
        url: s["ingestUrl"].as_str().unwrap().to_string(),
        endpoint_secret: secret["key"].as_str().unwrap().to_string(),
        id,
    }
}

/// Posts `body` with `headers` to a source's URL, as a provider does; the status and the
/// JSON answer.
pub async fn post(url: &str, headers: &[(String, String)], body: &str) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The headers of a signing answer.
pub fn headers(signed: &Value) -> Vec<(String, String)> {
    signed["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// `headers` with `extra` added.
pub fn with(mut headers: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    headers
}

/// `headers` without the one named `name`.
pub fn without(headers: &[(String, String)], name: &str) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .cloned()
        .collect()
}

/// Now, in unix seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// What every scheme must do, for one source, given requests signed right (`valid`, and
/// `again` with the same event id), wrongly (`bad`), too long ago (`stale`, where the
/// scheme signs a time), and `missing` (a required header dropped, named `missing_name`).
pub struct Expectations<'a> {
    pub valid: Vec<(String, String)>,
    pub again: Vec<(String, String)>,
    pub bad: Vec<(String, String)>,
    pub stale: Option<Vec<(String, String)>>,
    pub missing: Option<(Vec<(String, String)>, &'a str)>,
    pub body: &'a str,
    /// The provider's signature header, expected on the forward under the prefix.
    pub signature_header: &'a str,
}

/// A Herald with a source of `kind` forwarding to a receiver, put through `e`; returned
/// for more checks (the caller finishes it).
pub async fn checked(kind: &str, config: Value, e: Expectations<'_>) -> (TestApp, Source) {
    let t = crate::support::spawn_app().await;
    let receiver = crate::support::mock_receiver(&[(200, None)]).await;
    let src = source(&t.api(), kind, config, &receiver.uri()).await;
    exercise(&t, &src, &receiver, e).await;
    (t, src)
}

async fn exercise(
    t: &TestApp,
    source: &Source,
    receiver: &wiremock::MockServer,
    e: Expectations<'_>,
) {
    // Valid: 200, forwarded once, signed by Herald, the body and the provider's headers kept.
    let (status, answer) = post(&source.url, &e.valid, e.body).await;
    assert_eq!(status, 200, "valid → {answer}");
    assert_eq!(answer["duplicate"], false);
    // The same event again: 200, a duplicate of the first, not forwarded again.
    let (status, again) = post(&source.url, &e.again, e.body).await;
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &json!(true)),
        "duplicate → {again}"
    );
    assert_eq!(again["messageId"], answer["messageId"]);
    // A wrong signature: 401, a reason, nothing forwarded.
    let (status, bad) = post(&source.url, &e.bad, e.body).await;
    assert_eq!(status, 401, "bad signature → {bad}");
    assert!(
        !bad["detail"].as_str().unwrap().contains("whsec"),
        "no secret in {bad}"
    );
    if let Some(stale) = &e.stale {
        let (status, old) = post(&source.url, stale, e.body).await;
        assert_eq!(
            (status, old["code"].as_str()),
            (401, Some("stale_timestamp")),
            "{old}"
        );
    }
    if let Some((missing, name)) = &e.missing {
        let (status, m) = post(&source.url, missing, e.body).await;
        assert_eq!(status, 400, "missing {name} → {m}");
        assert!(
            m["detail"].as_str().unwrap().contains(name),
            "{m} names {name}"
        );
    }

    let forwarded = wait_for_requests(receiver, 1, Duration::from_secs(20)).await;
    let f = &forwarded[0];
    crate::support::verify(&source.endpoint_secret, f).expect("Herald's own signature verifies");
    assert_eq!(
        f.body,
        e.body.as_bytes(),
        "the provider's body, byte for byte"
    );
    let original = format!(
        "x-herald-original-{}",
        e.signature_header.to_ascii_lowercase()
    );
    assert!(
        !crate::support::header(f, &original).is_empty(),
        "the provider's {} under {original}",
        e.signature_header
    );
    assert_eq!(crate::support::header(f, "x-herald-source"), source.id);
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM herald.delivery WHERE app_id = '{}'",
            source.app_id
        ))
        .await,
        1,
        "forwarded once"
    );
    let outcomes: Vec<(String, bool)> = sqlx::query_as(
        "SELECT outcome, verified FROM herald.ingest_event WHERE source_id = $1 ORDER BY id",
    )
    .bind(&source.id)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    let rejected = 1 + usize::from(e.stale.is_some()) + usize::from(e.missing.is_some());
    assert_eq!(outcomes[0], ("accepted".to_string(), true));
    assert_eq!(outcomes[1].0, "duplicate");
    assert_eq!(
        outcomes[2..]
            .iter()
            .filter(|(o, _)| o == "rejected")
            .count(),
        rejected
    );
}
