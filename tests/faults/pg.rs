//! A PostgreSQL cluster of the test's own: `initdb` into a temporary directory, on a free
//! port, so that a test can stop it and start it again without touching the shared server.
//!
//! initdb and postgres refuse to run as root, so when the tests run as root (CI) every
//! PostgreSQL tool runs as the `postgres` user through `runuser`, and the cluster's
//! directory belongs to that user.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::support::{free_port, TempDir};

/// A running (or stopped) cluster. Dropping it stops it (`pg_ctl -m immediate`) and
/// removes its directory.
pub struct PgCluster {
    /// Holds `data/` (the cluster), the unix socket and `postgres.log`.
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    running: bool,
}

impl PgCluster {
    /// `initdb` and start a new cluster on a free port (trust authentication, user
    /// `postgres`, `fsync=off`).
    pub async fn start() -> PgCluster {
        let dir = TempDir::new("pg");
        if running_as_root() {
            run_sync(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let mut cluster = PgCluster {
            bin: bin_dir(),
            port: free_port(),
            dir,
            running: false,
        };
        let data = cluster.data_dir();
        cluster
            .run(
                "initdb",
                &[
                    "-D",
                    path_str(&data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
            )
            .await;
        cluster.start_again().await;
        cluster
    }

    /// Starts the stopped cluster again, on the same port.
    pub async fn start_again(&mut self) {
        assert!(!self.running, "the cluster is already running");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB",
            self.port,
            path_str(self.dir.path()),
        );
        let (data, log) = (self.data_dir(), self.log_path());
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
        .await;
        self.running = true;
    }

    /// A fast shutdown: open connections are closed, new ones are refused, until
    /// [`PgCluster::start_again`].
    pub async fn stop(&mut self) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
        )
        .await;
        self.running = false;
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The server's URL, without a database (sqlx then uses the database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// The URL of one database on this server.
    pub fn database_url(&self, database: &str) -> String {
        format!("{}/{database}", self.url())
    }

    /// The server's own log (start-up, shutdown, errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A PostgreSQL tool as the user it must run as.
    fn command(&self, tool: &str) -> tokio::process::Command {
        let program = self.bin.join(tool);
        let mut command = if running_as_root() {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            tokio::process::Command::new(program)
        };
        command.current_dir(self.dir.path()).kill_on_drop(true);
        command
    }

    async fn run(&self, tool: &str, args: &[&str]) {
        let output = self
            .command(tool)
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed ({}):\n{}{}\n--- postgres.log ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- PostgreSQL log (port {}) ---\n{}",
                self.port,
                tail(&self.log(), 60)
            );
        }
        // Whatever state it is in: `immediate` does not wait for clients to go.
        let program = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        let _ = command
            .args(["-D", path_str(&data), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // `dir` removes the directory when dropped, after this.
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn running_as_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        let out = Command::new("id").arg("-u").output().expect("run `id -u`");
        String::from_utf8_lossy(&out.stdout).trim() == "0"
    })
}

fn run_sync(command: &mut Command) {
    let status = command.status().expect("command runs");
    assert!(status.success(), "{command:?} failed: {status}");
}

/// Where initdb and pg_ctl are: `PG_BIN` if set, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), else the `PATH`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(v, _)| *v);
    match newest {
        Some((_, bin)) => bin,
        None => {
            let out = Command::new("sh")
                .args(["-c", "command -v initdb"])
                .output()
                .expect("sh runs");
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(
                !path.is_empty(),
                "initdb not found: install PostgreSQL or set PG_BIN"
            );
            PathBuf::from(path)
                .parent()
                .expect("initdb is in a directory")
                .to_path_buf()
        }
    }
}
