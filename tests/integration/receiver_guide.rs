//! The receiver's guide (`docs/receivers.md`): its example receivers in Python (by hand, with
//! `standardwebhooks`, with `svix`), JavaScript and Rust get real deliveries from Herald and
//! must accept them, and must reject a delivery signed with another secret, a tampered body,
//! a swapped id, a stale or future timestamp and a missing signature. Each also has to accept
//! the two signatures Herald sends during a secret rotation, and process an id only once.

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use herald::signing::Secret;
use serde_json::json;
use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

use crate::{sdk::python_with_svix, support::*};

// Exactly the guide's file; its `main` is for `cargo run --example receiver`.
#[allow(dead_code)]
#[path = "../../docs/examples/rust/receiver.rs"]
mod rust_receiver;

const WAIT: Duration = Duration::from_secs(20);
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples");

const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const VECTOR_TIMESTAMP: u64 = 1614265330;
const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

#[test]
fn rust_example_checks_the_test_vector_and_the_tolerance() {
    let check = |secret: &str, body: &[u8], now: u64| {
        rust_receiver::verify(
            secret,
            VECTOR_ID,
            &VECTOR_TIMESTAMP.to_string(),
            VECTOR_SIGNATURE,
            body,
            now,
        )
    };
    assert_eq!(check(VECTOR_SECRET, VECTOR_BODY, VECTOR_TIMESTAMP), Ok(()));
    assert_eq!(
        check(VECTOR_SECRET, VECTOR_BODY, VECTOR_TIMESTAMP + 300),
        Ok(())
    );
    assert_eq!(
        check(VECTOR_SECRET, VECTOR_BODY, VECTOR_TIMESTAMP - 300),
        Ok(())
    );
    for now in [VECTOR_TIMESTAMP + 301, VECTOR_TIMESTAMP - 301] {
        assert_eq!(
            check(VECTOR_SECRET, VECTOR_BODY, now),
            Err("webhook-timestamp is more than 5 minutes away from now")
        );
    }
    let no_match = Err("no signature matches");
    assert_eq!(
        check(VECTOR_SECRET, br#"{"test": 2432232315}"#, VECTOR_TIMESTAMP),
        no_match
    );
    assert_eq!(
        check(&Secret::generate().expose(), VECTOR_BODY, VECTOR_TIMESTAMP),
        no_match
    );
}

/// The example request of the guide, signed with the test vector's secret.
const EXAMPLE_ID: &str = "msg_01a20499bee3RuGy8PACSv6pszus";
const EXAMPLE_TIMESTAMP: u64 = 1795373514;
const EXAMPLE_BODY: &str = r#"{"payment_id": "pr_42", "status": "confirmed"}"#;
const EXAMPLE_SIGNATURE: &str = "v1,mECz/9QyLzmup5RR0WHcsDG3qhPr80pI0vnSAfZH6H4=";

#[test]
fn the_guide_shows_the_tested_code_and_a_valid_example() {
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/receivers.md")).unwrap();
    // A block fenced as ```lang docs/examples/… must be in that file, verbatim.
    let mut lines = guide.lines();
    let mut quoted = Vec::new();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        if let Some((_, file)) = info.split_once(' ') {
            let source = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
                .unwrap_or_else(|e| panic!("the guide quotes {file}: {e}"));
            assert!(
                source.contains(&block.join("\n")),
                "the guide's block from {file} is not in that file (any more):\n{}",
                block.join("\n")
            );
            quoted.push(file);
        }
    }
    assert_eq!(quoted.len(), 4, "{quoted:?}");

    for shown in [
        format!("webhook-id: {EXAMPLE_ID}"),
        format!("webhook-timestamp: {EXAMPLE_TIMESTAMP}"),
        format!("webhook-signature: {EXAMPLE_SIGNATURE}"),
        EXAMPLE_BODY.to_string(),
    ] {
        assert!(guide.contains(&shown), "the guide's example shows {shown}");
    }
    let verified = rust_receiver::verify(
        VECTOR_SECRET,
        EXAMPLE_ID,
        &EXAMPLE_TIMESTAMP.to_string(),
        EXAMPLE_SIGNATURE,
        EXAMPLE_BODY.as_bytes(),
        EXAMPLE_TIMESTAMP,
    );
    assert_eq!(verified, Ok(()));
}

#[actix_rt::test]
async fn rust_example_receiver() {
    let secret = Secret::generate();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
    let server = rust_receiver::server(listener, secret.expose()).unwrap();
    let handle = server.handle();
    actix_rt::spawn(server);
    herald_delivers_to(&url, &secret, String::new).await;
    handle.stop(false).await;
}

#[actix_rt::test]
async fn python_example_receiver_by_hand() {
    // The worked example and the tolerance, as the docstring shows them.
    let receiver = format!("{EXAMPLES}/python/receiver.py");
    run_ok(
        Command::new("python3")
            .args(["-m", "doctest", &receiver])
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    );
    let secret = Secret::generate();
    let process = Process::start(Command::new("python3").arg(&receiver), &secret);
    herald_delivers_to(&process.url, &secret, || process.output()).await;
}

#[actix_rt::test]
async fn python_example_receiver_with_standardwebhooks() {
    python_library_receiver("standardwebhooks").await;
}

#[actix_rt::test]
async fn python_example_receiver_with_svix() {
    python_library_receiver("svix").await;
}

async fn python_library_receiver(library: &str) {
    let python = actix_rt::task::spawn_blocking(python_with_svix)
        .await
        .unwrap();
    let secret = Secret::generate();
    let process = Process::start(
        Command::new(python)
            .arg(format!("{EXAMPLES}/python/receiver_library.py"))
            .arg(library),
        &secret,
    );
    herald_delivers_to(&process.url, &secret, || process.output()).await;
}

#[actix_rt::test]
async fn javascript_example_receiver_by_hand() {
    if Command::new("node").arg("--version").output().is_err() {
        // Written past the test harness's capture, so that the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "javascript_example_receiver_by_hand: SKIPPED, `node` is not installed"
        );
        return;
    }
    let receiver = format!("{EXAMPLES}/node/receiver.js");
    // The worked example and the tolerance.
    let check = format!(
        r#"const assert = require("node:assert");
const {{ verify, InvalidWebhook }} = require({receiver:?});
const headers = {{ "webhook-id": "{VECTOR_ID}", "webhook-timestamp": "{VECTOR_TIMESTAMP}",
                  "webhook-signature": "{VECTOR_SIGNATURE}" }};
const body = Buffer.from({body:?});
assert.strictEqual(verify("{VECTOR_SECRET}", headers, body, {VECTOR_TIMESTAMP}), "{VECTOR_ID}");
assert.strictEqual(verify("{VECTOR_SECRET}", headers, body, {VECTOR_TIMESTAMP} + 300), "{VECTOR_ID}");
assert.throws(() => verify("{VECTOR_SECRET}", headers, body, {VECTOR_TIMESTAMP} + 301), InvalidWebhook);
assert.throws(() => verify("{VECTOR_SECRET}", headers, Buffer.from("{{}}"), {VECTOR_TIMESTAMP}), InvalidWebhook);"#,
        body = std::str::from_utf8(VECTOR_BODY).unwrap(),
    );
    run_ok(Command::new("node").args(["-e", &check]));
    let secret = Secret::generate();
    let process = Process::start(Command::new("node").arg(&receiver), &secret);
    herald_delivers_to(&process.url, &secret, || process.output()).await;
}

/// The scenario every example goes through. The receiver at `url` verifies with `secret`;
/// `output` is what it printed, for failure messages.
async fn herald_delivers_to(url: &str, secret: &Secret, output: impl Fn() -> String) {
    let t = spawn_app().await;
    let api = t.api();
    let id = |endpoint: serde_json::Value| endpoint["id"].as_str().unwrap().to_string();
    let good = id(api
        .acme_endpoint(json!({"url": url, "secret": secret.expose()}))
        .await);
    let endpoint = |body| api.expect(201, "POST", "/api/v1/app/acme/endpoint", Some(body));
    // Herald gives this one a secret of its own, which the receiver does not know.
    let wrong = id(endpoint(json!({"url": url})).await);
    // The same delivery as `good` gets, kept for the forgeries below.
    let capture = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&capture)
        .await;
    let copy = id(endpoint(json!({"url": capture.uri(), "secret": secret.expose()})).await);

    let msg = t
        .send(
            "acme",
            "payment.confirmed",
            r#"{"payment_id": "pr_42", "status": "confirmed"}"#,
        )
        .await;
    t.wait_for_count(&settled(&msg, &good, "succeeded"), 1, WAIT)
        .await;
    t.wait_for_count(&settled(&msg, &wrong, "dead"), 1, WAIT)
        .await;
    assert_eq!(
        answers(&t, &msg, &good).await,
        vec![(Some(200), Some("processed".into()))],
        "{}",
        output()
    );
    let refused = answers(&t, &msg, &wrong).await;
    assert_eq!(refused.len(), 3, "every attempt is refused: {refused:?}");
    for (status, response) in &refused {
        assert_eq!(*status, Some(400), "{refused:?}\n{}", output());
        assert!(
            response.as_deref().unwrap_or("").starts_with("rejected:"),
            "{refused:?}"
        );
    }

    // What an attacker, or a replay, could send: built from the real delivery.
    let real = wait_for_requests(&capture, 1, WAIT).await.remove(0);
    let real = Delivery {
        id: header(&real, "webhook-id"),
        timestamp: header(&real, "webhook-timestamp"),
        signature: header(&real, "webhook-signature"),
        body: real.body,
    };
    assert_eq!(
        real.id, msg,
        "webhook-id is the message id on every endpoint"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signed = |id: &str, at: i64, key: &Secret| Delivery {
        id: id.into(),
        timestamp: at.to_string(),
        signature: key.sign(id, at, &real.body),
        body: real.body.clone(),
    };
    let tampered = Delivery {
        body: String::from_utf8(real.body.clone())
            .unwrap()
            .replace("pr_42", "pr_43")
            .into_bytes(),
        ..real.clone()
    };
    let fresh = signed("msg_fresh", now - 200, secret);
    let cases: Vec<(&str, Delivery, u16, &str)> = vec![
        (
            "the same delivery again",
            real.clone(),
            200,
            "already processed",
        ),
        ("a tampered body", tampered, 400, "rejected:"),
        (
            "another message's id",
            Delivery {
                id: "msg_other".into(),
                ..real.clone()
            },
            400,
            "rejected:",
        ),
        (
            "a wrong secret",
            signed("msg_wrong", now, &Secret::generate()),
            400,
            "rejected:",
        ),
        (
            "a timestamp 400 s old",
            signed("msg_stale", now - 400, secret),
            400,
            "rejected:",
        ),
        (
            "a timestamp 400 s ahead",
            signed("msg_future", now + 400, secret),
            400,
            "rejected:",
        ),
        (
            "no signature",
            Delivery {
                signature: String::new(),
                ..signed("msg_unsigned", now, secret)
            },
            400,
            "rejected:",
        ),
        (
            "a signature of an unknown version",
            Delivery {
                signature: fresh.signature.replacen("v1,", "v2,", 1),
                ..fresh.clone()
            },
            400,
            "rejected:",
        ),
        (
            "a timestamp 200 s old, its signature second",
            Delivery {
                signature: format!(
                    "{} {}",
                    Secret::generate().sign("msg_fresh", now - 200, &real.body),
                    fresh.signature
                ),
                ..fresh.clone()
            },
            200,
            "processed",
        ),
    ];
    let client = reqwest::Client::new();
    for (what, delivery, status, answer) in cases {
        let (got, text) = delivery.post(&client, url).await;
        assert!(
            got == status && text.starts_with(answer),
            "{what}: expected {status} {answer:?}, got {got} {text:?}\n{}",
            output()
        );
    }

    // A rotation: Herald signs with the new secret and, for the grace period, the old one,
    // which is all this receiver knows.
    let rotated = Secret::generate();
    for ep in [&good, &copy] {
        api.expect(
            200,
            "POST",
            &format!("/api/v1/app/acme/endpoint/{ep}/secret/rotate"),
            Some(json!({"key": rotated.expose()})),
        )
        .await;
    }
    let msg = t
        .send("acme", "payment.refunded", r#"{"payment_id": "pr_42"}"#)
        .await;
    t.wait_for_count(&settled(&msg, &good, "succeeded"), 1, WAIT)
        .await;
    let after = wait_for_requests(&capture, 2, WAIT).await.remove(1);
    let signature = header(&after, "webhook-signature");
    let entries: Vec<&str> = signature.split(' ').collect();
    let ts: i64 = header(&after, "webhook-timestamp").parse().unwrap();
    assert_eq!(
        entries,
        [
            rotated.sign(&msg, ts, &after.body),
            secret.sign(&msg, ts, &after.body)
        ],
        "the new secret signs first, then the old one"
    );
    assert_eq!(
        answers(&t, &msg, &good).await,
        vec![(Some(200), Some("processed".into()))],
        "{}",
        output()
    );
    t.finish().await;
}

/// A count query: is the delivery of `msg` to `endpoint` in `status`?
fn settled(msg: &str, endpoint: &str, status: &str) -> String {
    format!(
        "SELECT count(*) FROM herald.delivery WHERE message_id = '{msg}' \
         AND endpoint_id = '{endpoint}' AND status = '{status}'"
    )
}

/// The status code and response body of each attempt, in order.
async fn answers(t: &TestApp, msg: &str, endpoint: &str) -> Vec<(Option<i16>, Option<String>)> {
    sqlx::query_as(
        "SELECT status_code, response FROM herald.attempt \
         WHERE message_id = $1 AND endpoint_id = $2 ORDER BY attempt_no",
    )
    .bind(msg)
    .bind(endpoint)
    .fetch_all(&t.pool)
    .await
    .unwrap()
}

#[derive(Clone)]
struct Delivery {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Delivery {
    /// Posts it as Herald would; returns the status and the body of the answer.
    async fn post(&self, client: &reqwest::Client, url: &str) -> (u16, String) {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &self.id)
            .header("webhook-timestamp", &self.timestamp);
        if !self.signature.is_empty() {
            request = request.header("webhook-signature", &self.signature);
        }
        let response = request.body(self.body.clone()).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

/// Runs a command to its end; it must succeed.
fn run_ok(command: &mut Command) {
    let output = command.output().expect("the command starts");
    assert!(
        output.status.success(),
        "{command:?} failed\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An example receiver in its own process (`WEBHOOK_SECRET`, `PORT=0`), stopped when dropped.
struct Process {
    child: Child,
    url: String,
    output: Arc<Mutex<String>>,
}

impl Process {
    fn start(command: &mut Command, secret: &Secret) -> Process {
        let mut child = command
            .env("WEBHOOK_SECRET", secret.expose())
            .env("PORT", "0")
            // Python would write __pycache__ into docs/examples/.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let (listening, url) = mpsc::channel();
        let out = output.clone();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = listening.send(url.to_string());
                }
                out.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let out = output.clone();
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            out.lock().unwrap().push_str(&text);
        });
        let url = url.recv_timeout(WAIT);
        let mut process = Process {
            child,
            url: String::new(),
            output,
        };
        match url {
            Ok(url) => process.url = url,
            Err(_) => {
                let _ = process.child.kill();
                let _ = process.child.wait();
                std::thread::sleep(Duration::from_millis(200));
                panic!("{command:?} did not start listening\n{}", process.output());
            }
        }
        process
    }

    fn output(&self) -> String {
        format!("--- receiver output\n{}", self.output.lock().unwrap())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
