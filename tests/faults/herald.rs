//! Herald as a real process: the `herald` binary Cargo built for this test target, configured
//! only through `HERALD_*` variables, its output (JSON logs) kept in a file. Dropping it kills
//! the process; a failing test prints the end of its log.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    pg::tail,
    support::{free_port, wait_until},
};

/// The bearer token every test instance accepts.
pub const TOKEN: &str = "faults-test-token-0123456789";

/// Settings every test instance gets; a test adds or overrides its own.
const BASE: &[(&str, &str)] = &[
    ("HERALD_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
    ("HERALD_API_TOKENS", TOKEN),
    // The receiver is on loopback, which the SSRF guard refuses unless allowed.
    ("HERALD_ALLOWED_CIDRS", "127.0.0.0/8"),
    ("HERALD_LOG_FORMAT", "json"),
    // The same key for every instance of a test (base64 of "herald-faults-tests-key-32-bytes").
    ("HERALD_ENCRYPTION_KEY", "aGVyYWxkLWZhdWx0cy10ZXN0cy1rZXktMzItYnl0ZXM="),
    ("HERALD_LOG_LEVEL", "info"),
    ("HERALD_SENDERS", "2"),
    ("HERALD_POLL_INTERVAL", "250ms"),
    ("HERALD_REAP_INTERVAL", "500ms"),
    // Short timeouts allow a short lease: lease >= request + connect + 5 s. The request
    // timeout leaves room for a receiver queueing behind three instances on two loaded
    // cores: with 2 s, a slower machine timed out 3,564 of 20,000 requests the receiver
    // then answered, and each came again (a duplicate by design, not a lost lease).
    ("HERALD_REQUEST_TIMEOUT", "5s"),
    ("HERALD_CONNECT_TIMEOUT", "1s"),
    ("HERALD_LEASE_DURATION", "11s"),
    ("HERALD_MAX_HOLD", "3s"),
    ("HERALD_RETRY_SCHEDULE", "200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms"),
    ("HERALD_RETRY_JITTER", "0"),
    ("HERALD_HEARTBEAT_INTERVAL", "250ms"),
    ("HERALD_HEALTH_LOG_INTERVAL", "1s"),
    ("HERALD_SHUTDOWN_GRACE", "2s"),
    // Failing on purpose is the point of some tests; the breaker has tests of its own.
    ("HERALD_BREAKER_FAILURES", "1000"),
    ("HERALD_BREAKER_WINDOW", "1000"),
];

pub struct Herald {
    pub name: String,
    env: Vec<(String, String)>,
    port: u16,
    log_path: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

impl Herald {
    /// Starts an instance named `name` (its log is `{dir}/{name}.log`) on `database_url`,
    /// listening on a free port.
    pub fn start(name: &str, dir: &Path, database_url: &str, overrides: &[(&str, &str)]) -> Herald {
        let port = free_port();
        let mut env: Vec<(String, String)> = BASE
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("HERALD_DATABASE_URL".into(), database_url.into()));
        env.push(("HERALD_LISTEN".into(), format!("127.0.0.1:{port}")));
        for (key, value) in overrides {
            env.retain(|(k, _)| k != key);
            env.push((key.to_string(), value.to_string()));
        }
        let mut herald = Herald {
            name: name.to_string(),
            env,
            port,
            log_path: dir.join(format!("{name}.log")),
            dir: dir.to_path_buf(),
            child: None,
        };
        herald.start_again();
        herald
    }

    /// Starts the process again (after [`Herald::kill`]), same settings, same port; its
    /// output is appended to the same log.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        // Only the settings given here: nothing inherited (an unknown HERALD_* variable,
        // such as the integration tests' HERALD_TEST_DATABASE_URL, would stop start-up).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HERALD_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        // Its own working directory: no stray `.env` is read.
        command
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(command.spawn().expect("start herald"));
    }

    /// Waits until the API answers and reaches the database.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let url = format!("{}/api/v1/health", self.base_url());
        let client = client();
        let ready = wait_until(
            timeout,
            || {
                let request = client.get(&url).send();
                async move { request.await.map(|r| r.status().as_u16()).unwrap_or(0) }
            },
            |status| *status == 200 || !self.is_running(),
        )
        .await;
        assert!(
            self.is_running(),
            "{} exited during start-up:\n{}",
            self.name,
            tail(&self.log(), 40)
        );
        assert!(ready, "{} not ready within {timeout:?}", self.name);
    }

    /// SIGKILL: no shutdown, no drain, nothing released.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the process to exit (a graceful stop: drain, then exit).
    pub async fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.wait_exit(timeout).await
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("poll the process") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {timeout:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("poll the process").is_none(),
            None => false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The JSON log lines (each process writes one event per line).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `GET`/`POST` on the API with the token, bounded by `timeout`: the status and how long
    /// the answer took, or `None` if there was no answer in time.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> (Option<u16>, Duration) {
        let mut request = client()
            .request(
                method.parse().unwrap(),
                format!("{}{path}", self.base_url()),
            )
            .bearer_auth(TOKEN)
            .timeout(timeout);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let started = Instant::now();
        let status = request.send().await.ok().map(|r| r.status().as_u16());
        (status, started.elapsed())
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        self.kill();
        let failing = std::thread::panicking();
        if failing || std::env::var_os("FAULTS_KEEP_LOGS").is_some() {
            // The temporary directory goes with the test: keep a copy of the whole log.
            let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-logs");
            let copy = keep.join(format!(
                "{}-{}",
                self.name,
                self.log_path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            let kept = std::fs::create_dir_all(&keep)
                .and_then(|_| std::fs::copy(&self.log_path, &copy))
                .is_ok();
            if !failing {
                return;
            }
            let log = self.log();
            let events: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("\"actor health\""))
                .collect();
            eprintln!(
                "--- {} log without health lines (whole log: {}) ---\n{}",
                self.name,
                if kept {
                    copy.display().to_string()
                } else {
                    "not kept".into()
                },
                events[events.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

impl Herald {
    /// The `actor health` lines of this instance's log, in order.
    pub fn health_lines(&self) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["message"] == "actor health")
            .collect()
    }

    /// Deliveries its senders completed with success, as their health lines report them.
    pub fn sender_successes(&self) -> u64 {
        self.health_lines()
            .iter()
            .filter(|e| {
                e["actor"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("sender-"))
            })
            .map(|e| e["succeeded"].as_u64().unwrap_or(0))
            .sum()
    }
}
