//! The test harness: a fresh database and a running Herald per test, plus the receiver-side
//! checks a real subscriber would make.

use std::time::Duration;

use herald::{config::Settings, signing::Secret, startup::Application};
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// Server (without database) the tests create their databases on.
pub fn server_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Creates an empty database with a unique name and returns its URL.
pub async fn fresh_database() -> String {
    let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
        .await
        .expect("PostgreSQL must be running (see README)");
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("create test database");
    format!("{}/{name}", server_url())
}

/// The key test instances seal secrets with.
pub const TEST_KEY: &str = "aGVyYWxkLWludGVncmF0aW9uLXRlc3RzLWtleS0zMmI=";

/// Settings for a test instance: fast ticks, a short schedule, an ephemeral port.
pub fn test_settings(database_url: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut vars: Vec<(String, String)> = [
        (
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        ),
        ("HERALD_DATABASE_URL", database_url),
        ("HERALD_LISTEN", "127.0.0.1:0"),
        ("HERALD_SENDERS", "2"),
        ("HERALD_POLL_INTERVAL", "200ms"),
        ("HERALD_REAP_INTERVAL", "200ms"),
        ("HERALD_RETRY_SCHEDULE", "100ms,100ms"),
        ("HERALD_RETRY_JITTER", "0"),
        ("HERALD_REQUEST_TIMEOUT", "5s"),
        ("HERALD_HEARTBEAT_INTERVAL", "100ms"),
        ("HERALD_STALL_TIMEOUT", "3s"),
        ("HERALD_HEALTH_LOG_INTERVAL", "1s"),
        ("HERALD_SHUTDOWN_GRACE", "5s"),
        ("HERALD_LOG_LEVEL", "warn"),
        // Secrets are sealed at rest with it (base64 of "herald-integration-tests-key-32b").
        ("HERALD_ENCRYPTION_KEY", TEST_KEY),
        // Scrapes count the queue each time (its cache has a test of its own).
        ("HERALD_METRICS_CACHE", "0s"),
        // Test receivers listen on loopback, which the SSRF guard refuses by default.
        ("HERALD_ALLOWED_CIDRS", "127.0.0.0/8"),
        // Tests about retries fail on purpose; the breaker has tests of its own.
        ("HERALD_BREAKER_FAILURES", "1000"),
        ("HERALD_BREAKER_WINDOW", "1000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Settings::load_with(vars).expect("test settings are valid")
}

pub struct TestApp {
    pub app: Application,
    pub pool: PgPool,
    pub database_url: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let database_url = fresh_database().await;
    spawn_app_on(&database_url, overrides).await
}

/// Another instance on an existing database (restarts, several instances).
pub async fn spawn_app_on(database_url: &str, overrides: &[(&str, &str)]) -> TestApp {
    let settings = test_settings(database_url, overrides);
    // The first instance's subscriber serves the whole test process. Its panic hook logs a
    // panic through that subscriber, outside libtest's capture, so a failed test's report
    // would not say why: the tests keep the default hook.
    static TELEMETRY: std::sync::Once = std::sync::Once::new();
    TELEMETRY.call_once(|| {
        let _ = herald::telemetry::init(&settings);
        drop(std::panic::take_hook());
    });
    let app = Application::build(settings)
        .await
        .expect("application starts");
    let pool = PgPool::connect(database_url).await.expect("test pool");
    TestApp {
        app,
        pool,
        database_url: database_url.to_string(),
    }
}

impl TestApp {
    /// Shuts Herald down and drops the test database. A failing test never gets here, so
    /// its database stays behind for inspection.
    pub async fn finish(self) {
        self.app.shutdown().await;
        self.pool.close().await;
        let name = self.database_url.rsplit('/').next().unwrap().to_string();
        let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
            .await
            .unwrap();
        admin
            .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
            .await
            .unwrap();
    }

    pub async fn create_app(&self, uid: &str) -> String {
        sqlx::query_scalar(
            "INSERT INTO herald.application (uid, name) VALUES ($1, $1) RETURNING id",
        )
        .bind(uid)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// An endpoint with a fresh secret; `event_types: None` subscribes to everything.
    pub async fn create_endpoint(
        &self,
        app_id: &str,
        url: &str,
        event_types: Option<&[&str]>,
    ) -> (String, Secret) {
        let types: Option<Vec<String>> =
            event_types.map(|t| t.iter().map(|s| s.to_string()).collect());
        let id: String = sqlx::query_scalar(
            "INSERT INTO herald.endpoint (app_id, url, event_types) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(app_id)
        .bind(url)
        .bind(types)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        let secret = Secret::generate();
        sqlx::query("INSERT INTO herald.endpoint_secret (endpoint_id, key) VALUES ($1, $2)")
            .bind(&id)
            .bind(secret.as_bytes())
            .execute(&self.pool)
            .await
            .unwrap();
        (id, secret)
    }

    /// `herald.send_message` in its own committed transaction.
    pub async fn send(&self, app: &str, event_type: &str, payload: &str) -> String {
        sqlx::query_scalar("SELECT herald.send_message($1, $2, $3)")
            .bind(app)
            .bind(event_type)
            .bind(payload)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn delivery_status(&self, message_id: &str, endpoint_id: &str) -> String {
        sqlx::query_scalar(
            "SELECT status::text FROM herald.delivery WHERE message_id = $1 AND endpoint_id = $2",
        )
        .bind(message_id)
        .bind(endpoint_id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    /// Waits until `sql` (a count) returns `want`.
    pub async fn wait_for_count(&self, sql: &str, want: i64, timeout: Duration) {
        let pool = self.pool.clone();
        let sql = sql.to_string();
        let mut last = -1;
        let reached = wait_until(
            timeout,
            || {
                let (pool, sql) = (pool.clone(), sql.clone());
                async move {
                    sqlx::query_scalar::<_, i64>(&sql)
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                }
            },
            |n| {
                last = *n;
                *n == want
            },
        )
        .await;
        assert!(
            reached,
            "waited {timeout:?} for `{sql}` to be {want}; last value {last}"
        );
    }
}

#[path = "../common/wait.rs"]
mod wait;
pub use wait::wait_until;

/// Waits until the mock server has received `n` requests; returns them.
pub async fn wait_for_requests(
    server: &wiremock::MockServer,
    n: usize,
    timeout: Duration,
) -> Vec<wiremock::Request> {
    let mut seen = 0;
    let reached = wait_until(
        timeout,
        || async { server.received_requests().await.unwrap_or_default() },
        |r| {
            seen = r.len();
            r.len() >= n
        },
    )
    .await;
    assert!(reached, "waited {timeout:?} for {n} requests, got {seen}");
    server.received_requests().await.unwrap()
}

#[path = "../common/standard_webhooks.rs"]
mod standard_webhooks;

/// Checks a request's Standard Webhooks signature against `secret_whsec`, with OpenSSL
/// rather than Herald's own signing code.
pub fn verify(secret_whsec: &str, request: &wiremock::Request) -> Result<(), String> {
    let key = openssl::base64::decode_block(secret_whsec.trim_start_matches("whsec_"))
        .map_err(|e| e.to_string())?;
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    standard_webhooks::verify(&key, header, &request.body, None).map(|_| ())
}

pub fn header(request: &wiremock::Request, name: &str) -> String {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub const TOKEN: &str = "dev-token-change-me";

/// A loopback port free a moment ago (for a process that cannot bind port 0 and say which).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A JSON client for the instance's API.
pub struct Api {
    pub base: String,
    client: reqwest::Client,
    /// The bearer token `call` sends.
    token: String,
}

impl TestApp {
    pub fn api(&self) -> Api {
        Api {
            base: format!("http://127.0.0.1:{}", self.app.port()),
            client: reqwest::Client::new(),
            token: TOKEN.into(),
        }
    }
}

impl Api {
    /// The API of an instance at `base` that the test did not build (a process of its own).
    pub fn for_base(base: &str) -> Api {
        Api {
            base: base.to_string(),
            client: reqwest::Client::new(),
            token: TOKEN.into(),
        }
    }

    /// The status of a GET with the token, or `None` while nothing answers.
    pub async fn try_get(&self, path: &str) -> Option<u16> {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await;
        res.ok().map(|r| r.status().as_u16())
    }

    /// The same API, called with another bearer token.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            base: self.base.clone(),
            client: self.client.clone(),
            token: token.into(),
        }
    }

    /// Sends `body` (JSON) with the test token; returns the status and the JSON answer
    /// (`null` for an empty body). Every answer must be JSON or empty.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        self.send(
            method,
            path,
            bytes,
            &[("authorization", &format!("Bearer {}", self.token))],
        )
        .await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| {
                panic!("{method} {path} answered {status} with non-JSON: {text}")
            })
        };
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call("POST", path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call("PUT", path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call("PATCH", path, Some(body)).await
    }

    /// Asserts a status and returns the body.
    pub async fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let (got, json) = self.call(method, path, body).await;
        assert_eq!(got, status, "{method} {path} → {got} {json}");
        json
    }
}

/// How many items a list answer (`{"data": [...]}`) holds.
pub fn data_len(list: &serde_json::Value) -> usize {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list answer: {list}"))
        .len()
}

impl Api {
    /// Creates the application `uid` (named `name`) through the API; returns it.
    pub async fn create_app(&self, uid: &str, name: &str) -> serde_json::Value {
        self.expect(
            201,
            "POST",
            "/api/v1/app",
            Some(serde_json::json!({"name": name, "uid": uid})),
        )
        .await
    }

    /// Creates the event type `name`.
    pub async fn create_event_type(&self, name: &str, description: &str) -> serde_json::Value {
        self.expect(
            201,
            "POST",
            "/api/v1/event-type",
            Some(serde_json::json!({"name": name, "description": description})),
        )
        .await
    }

    /// Posts `n` messages of event type `a` to application `app`, payloads `{"i": 0..n}`;
    /// returns them.
    pub async fn post_messages(&self, app: &str, n: usize) -> Vec<serde_json::Value> {
        let mut created = Vec::with_capacity(n);
        for i in 0..n {
            created.push(
                self.expect(
                    202,
                    "POST",
                    &format!("/api/v1/app/{app}/msg"),
                    Some(serde_json::json!({"eventType": "a", "payload": {"i": i}})),
                )
                .await,
            );
        }
        created
    }
}

/// The field paths a 422 names, e.g. `["body.url", "body.eventTypes"]`.
pub fn invalid_fields(body: &serde_json::Value) -> Vec<String> {
    body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("not a validation error: {body}"))
        .iter()
        .map(|d| {
            d["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect()
}

/// A receiver that answers every POST with each `(status, times)` in turn; `None` means for
/// ever after.
pub async fn mock_receiver(answers: &[(u16, Option<u64>)]) -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    for (status, times) in answers {
        let mock = wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(wiremock::ResponseTemplate::new(*status));
        match times {
            Some(n) => mock.up_to_n_times(*n).mount(&server).await,
            None => mock.mount(&server).await,
        }
    }
    server
}

impl Api {
    /// Creates the application `acme` and one endpoint of it from `body` (at least a url);
    /// returns the endpoint.
    pub async fn acme_endpoint(&self, body: serde_json::Value) -> serde_json::Value {
        self.create_app("acme", "Acme").await;
        self.expect(201, "POST", "/api/v1/app/acme/endpoint", Some(body))
            .await
    }
}
