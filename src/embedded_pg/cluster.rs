//! A private PostgreSQL cluster in the data directory, run as a child process.
//!
//! Layout of `HERALD_DATA_DIR` (default `.herald/`):
//! * `postgres/`: the cluster (made by `initdb` on first use in `postgres.init/`, then moved
//!   here, and reused afterwards);
//! * `postgres.log`: the server's own log;
//! * `postgres.password`: the password of its superuser `postgres` (scram; the server listens
//!   on loopback only, and local users other than Herald's cannot read this file);
//! * `herald.lock`: held (`flock`) by the Herald using the cluster, with its pid: a second
//!   Herald on the same directory is refused instead of starting a second server on it.
//!
//! As root, the server runs as the unprivileged user `postgres` (or `nobody`): PostgreSQL
//! refuses to run as root. It gets its own process group, so a Ctrl-C in the terminal
//! reaches Herald alone, which drains its work and then stops the server; if Herald dies
//! without stopping it, the kernel tells the server to shut down (`PR_SET_PDEATHSIG`).

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use nix::{
    fcntl::Flock,
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use super::{
    binaries,
    files::{ensure_cluster, lock, make_dir},
    server::{free_port, run_as, spawn, stop_orphan, wait_exit},
};

/// Why the embedded cluster could not start. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no PostgreSQL server binaries (initdb, postgres) on PATH or in the usual places; install them: {hint} (or set HERALD_DATABASE_URL to a running PostgreSQL)")]
    NoBinaries { hint: String },
    #[error("HERALD_POSTGRES_BIN={dir} does not hold PostgreSQL's initdb and postgres; install them: {hint}")]
    BadBinDir { dir: PathBuf, hint: String },
    #[error("the embedded PostgreSQL in {dir} is in use by another Herald (pid {pid}); stop it, or give this one another HERALD_DATA_DIR")]
    InUse {
        dir: PathBuf,
        pid: String,
        /// The port its server listens on, once it has started.
        port: Option<u16>,
    },
    #[error("running as root, the embedded PostgreSQL needs an unprivileged user to run as (`postgres` or `nobody`)")]
    NoUser,
    #[error("{doing} failed: {detail}")]
    Failed { doing: String, detail: String },
}

pub(super) fn failed(doing: impl Into<String>, detail: impl ToString) -> ClusterError {
    ClusterError::Failed {
        doing: doing.into(),
        detail: detail.to_string(),
    }
}

/// A running cluster; dropping it stops the server.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    password: String,
    child: Option<Child>,
    /// Held while the cluster runs.
    _lock: Flock<File>,
}

/// The superuser `initdb` makes, and the database Herald uses. (Not `herald`: a user named
/// like Herald's schema puts that schema first on the search path, where sqlx would then
/// look for its migration history once the first migration has made it.)
pub(super) const USER: &str = "postgres";
const DATABASE: &str = "herald";

impl Cluster {
    /// Starts the cluster in `dir` (making it on first use) with the server binaries in
    /// `bin` (or found on this machine), on a free loopback port; returns once it accepts
    /// connections.
    pub fn start(dir: &Path, bin: Option<&Path>) -> Result<Cluster, ClusterError> {
        let hint =
            || binaries::install_hint(std::fs::read_to_string("/etc/os-release").ok().as_deref());
        let bin = match bin {
            Some(b) => binaries::locate(Some(b), None).ok_or_else(|| ClusterError::BadBinDir {
                dir: b.into(),
                hint: hint(),
            })?,
            None => binaries::locate(None, std::env::var("PATH").ok().as_deref())
                .ok_or_else(|| ClusterError::NoBinaries { hint: hint() })?,
        };
        let run_as = run_as()?;
        make_dir(dir, run_as.is_some())?;
        let dir = dir
            .canonicalize()
            .map_err(|e| failed(format!("opening {}", dir.display()), e))?;
        let lock = lock(&dir)?;
        let data = dir.join("postgres");
        ensure_cluster(&bin, &dir, &data, run_as.as_ref())?;
        let password = std::fs::read_to_string(dir.join("postgres.password"))
            .map_err(|e| failed("reading postgres.password", e))?
            .trim()
            .to_string();
        stop_orphan(&data)?;
        let port = free_port()?;
        let mut lock = lock;
        // Beside the pid, for Herald's other commands while this one runs.
        writeln!(lock, "\n{port}").map_err(|e| failed("writing herald.lock", e))?;
        let child = spawn(&bin, &dir, &data, port, run_as.as_ref())?;
        let mut cluster = Cluster {
            dir,
            port,
            password,
            child: Some(child),
            _lock: lock,
        };
        cluster.wait_ready(&bin)?;
        Ok(cluster)
    }

    /// The URL of Herald's database on the cluster another Herald runs in `dir`, listening
    /// on `port`.
    pub fn url_of_running(dir: &Path, port: u16) -> Result<String, ClusterError> {
        let password = std::fs::read_to_string(dir.join("postgres.password"))
            .map_err(|e| failed("reading postgres.password", e))?;
        Ok(url(password.trim(), port))
    }

    /// Where the data lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of Herald's database on it (created by Herald's start-up when missing).
    pub fn url(&self) -> String {
        url(&self.password, self.port)
    }

    /// A fast shutdown (sessions are closed, the data is consistent on disk), waiting for
    /// the server to exit.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        if wait_exit(&mut child, Duration::from_secs(60)) {
            return Ok(());
        }
        // Immediate shutdown: recovery replays the WAL on the next start.
        let _ = kill(pid, Signal::SIGQUIT);
        if !wait_exit(&mut child, Duration::from_secs(10)) {
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(failed(
            "stopping the embedded PostgreSQL",
            "it did not shut down within 60 s and was stopped immediately",
        ))
    }

    fn wait_ready(&mut self, bin: &Path) -> Result<(), ClusterError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let isready = bin.join("pg_isready");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(failed(
                        "starting the embedded PostgreSQL",
                        format!("the server exited ({status}):\n{}", self.log_tail()),
                    ));
                }
            }
            let ready = if isready.exists() {
                Command::new(&isready)
                    .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                    .status()
                    .is_ok_and(|s| s.success())
            } else {
                std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.stop();
                return Err(failed(
                    "starting the embedded PostgreSQL",
                    format!("not ready within 60 s:\n{}", self.log_tail()),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the server's log, for an error message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn url(password: &str, port: u16) -> String {
    format!("postgres://{USER}:{password}@127.0.0.1:{port}/{DATABASE}")
}
