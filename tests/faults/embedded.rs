//! The embedded PostgreSQL (issue 16): a Herald started with `HERALD_DATABASE_URL=embedded`
//! makes a cluster of its own in its data directory, serves the API and delivers; a second
//! Herald on the same directory is refused while the first runs (and the first keeps
//! working); a graceful stop stops the server too, and the next start finds the data; a
//! first start cut short during initdb is made again by the next. With no server binaries
//! where it is told to look, Herald names the package and exits 2.

use std::time::Duration;

use base64::Engine;
use serde_json::json;

use crate::{
    herald::{Herald, TOKEN},
    pg::tail,
    receiver::Receiver,
    serial,
    support::{bounded, wait_until, TempDir},
};

const READY: Duration = Duration::from_secs(90);

async fn api(
    herald: &Herald,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", herald.base_url()))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(10));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// The ids of the application's messages, as the API lists them.
async fn message_ids(herald: &Herald) -> Vec<String> {
    let (status, page) = api(herald, reqwest::Method::GET, "/api/v1/app/acme/msg", None).await;
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[actix_rt::test]
async fn an_embedded_postgres_serves_delivers_keeps_its_data_and_has_one_herald() {
    let _serial = serial().await;
    bounded(Duration::from_secs(240), async {
        let dir = TempDir::new("embedded");
        let data = dir.path().join("data");
        let data_dir = data.to_str().unwrap();
        let settings = [("HERALD_DATA_DIR", data_dir)];
        let receiver = Receiver::start();
        let mut first = Herald::start("first", dir.path(), "embedded", &settings);
        first.wait_ready(READY).await;
        assert!(
            first
                .log()
                .contains("development database: an embedded PostgreSQL with its data in"),
            "one line says where the data lives:\n{}",
            tail(&first.log(), 20)
        );
        assert!(
            data.join("postgres/PG_VERSION").exists(),
            "the cluster is in the data directory"
        );

        let post = reqwest::Method::POST;
        let (status, body) = api(
            &first,
            post.clone(),
            "/api/v1/app",
            Some(json!({"name": "Acme", "uid": "acme"})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(receiver.secret_key())
        );
        let endpoint = json!({"url": receiver.url("embedded"), "secret": secret});
        let (status, body) = api(
            &first,
            post.clone(),
            "/api/v1/app/acme/endpoint",
            Some(endpoint),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let payment = json!({"eventType": "payment.confirmed", "payload": {"payment_id": "pr_1"}});
        let (status, message) =
            api(&first, post.clone(), "/api/v1/app/acme/msg", Some(payment)).await;
        assert_eq!(status, 202, "{message}");
        let id = message["id"].as_str().unwrap().to_string();
        let arrived = wait_until(
            Duration::from_secs(30),
            || async { receiver.tally(|t| t.delivered()) },
            |n| *n == 1,
        )
        .await;
        assert!(arrived, "the message arrived, signed (the receiver checks)");
        assert!(
            receiver.tally(|t| t.bad.is_empty()),
            "every signature verified"
        );

        // A second Herald on the same directory is refused, with a reason, and leaves the
        // first one's cluster alone.
        let mut second = Herald::start("second", dir.path(), "embedded", &settings);
        let status = second.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(2), "{}", second.log());
        assert!(
            second.log().contains("is in use by another Herald"),
            "{}",
            second.log()
        );
        assert_eq!(
            message_ids(&first).await,
            vec![id.clone()],
            "the first still serves"
        );

        // A graceful stop stops the server with it; the next start finds the message.
        let status = first.terminate(Duration::from_secs(60)).await;
        assert!(status.success(), "{status}: {}", tail(&first.log(), 20));
        assert!(
            !data.join("postgres/postmaster.pid").exists(),
            "the server stopped with Herald"
        );
        first.start_again();
        first.wait_ready(READY).await;
        assert_eq!(
            message_ids(&first).await,
            vec![id],
            "the data outlived the restart"
        );
    })
    .await;
}

#[actix_rt::test]
async fn without_server_binaries_herald_names_the_package_and_exits_2() {
    let _serial = serial().await;
    bounded(Duration::from_secs(60), async {
        let dir = TempDir::new("no-binaries");
        let empty = dir.path().join("bin");
        std::fs::create_dir_all(&empty).unwrap();
        let settings = [
            (
                "HERALD_DATA_DIR",
                dir.path().join("data").to_str().unwrap().to_string(),
            ),
            ("HERALD_POSTGRES_BIN", empty.to_str().unwrap().to_string()),
        ];
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut herald = Herald::start("no-binaries", dir.path(), "embedded", &settings);
        let status = herald.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(2), "{}", herald.log());
        let said: Vec<String> = herald
            .log()
            .lines()
            .filter(|l| l.starts_with("herald: "))
            .map(String::from)
            .collect();
        assert_eq!(said.len(), 1, "one line: {said:?}");
        let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        if os.contains("ID=debian") || os.contains("ID_LIKE=debian") {
            assert!(said[0].contains("apt-get install postgresql"), "{said:?}");
        }
        assert!(said[0].contains("initdb and postgres"), "{said:?}");
    })
    .await;
}

#[actix_rt::test]
async fn a_cluster_whose_making_was_cut_short_is_made_again() {
    let _serial = serial().await;
    bounded(Duration::from_secs(120), async {
        let dir = TempDir::new("embedded-cut-short");
        let data = dir.path().join("data");
        // What a Herald killed during its first initdb leaves: a half-made cluster in the
        // staging directory, and perhaps a password file of that attempt.
        std::fs::create_dir_all(data.join("postgres.init/base")).unwrap();
        std::fs::write(data.join("postgres.init/PG_VERSION"), "15\n").unwrap();
        std::fs::write(data.join("postgres.password"), "of-the-attempt").unwrap();
        let data_dir = data.to_str().unwrap();
        let mut herald = Herald::start(
            "cut-short",
            dir.path(),
            "embedded",
            &[("HERALD_DATA_DIR", data_dir)],
        );
        herald.wait_ready(READY).await;
        assert!(data.join("postgres/PG_VERSION").exists(), "a whole cluster");
        assert!(
            !data.join("postgres.init").exists(),
            "the half-made one is gone"
        );
        let password = std::fs::read_to_string(data.join("postgres.password")).unwrap();
        assert_ne!(
            password.trim(),
            "of-the-attempt",
            "the new cluster's password"
        );
        let status = herald.terminate(Duration::from_secs(60)).await;
        assert!(status.success(), "{status}: {}", tail(&herald.log(), 20));
    })
    .await;
}
