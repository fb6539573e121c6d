//! What every scenario needs: a throw-away database with applications and endpoints, the
//! `herald` binary as a child process, and a few measurements of it.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use herald::signing::Secret;
use sqlx::{Connection, Executor, PgConnection, PgPool};

use crate::Cli;

/// The bearer token the benchmark's Herald accepts.
pub const TOKEN: &str = "bench-token-0123456789";

pub struct Bench {
    pub database_url: String,
    pub pool: PgPool,
    pub secret: Secret,
}

impl Bench {
    /// A new database on `server`, migrated, with `settings` (`NAME=VALUE`) for its sessions.
    pub async fn create(server: &str, settings: &[String]) -> anyhow::Result<Bench> {
        let name = format!("herald_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .context("connecting to PostgreSQL (is it running?)")?;
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await?;
        for setting in settings {
            let Some((key, value)) = setting.split_once('=') else {
                bail!("--db-setting {setting}: expected NAME=VALUE");
            };
            let value = value.replace('\'', "''");
            admin
                .execute(format!(r#"ALTER DATABASE "{name}" SET {key} = '{value}'"#).as_str())
                .await
                .with_context(|| format!("--db-setting {setting}"))?;
        }
        let database_url = format!("{server}/{name}");
        let pool = PgPool::connect(&database_url).await?;
        herald::store::Store::from_pool(pool.clone())
            .migrate()
            .await?;
        Ok(Bench {
            database_url,
            pool,
            secret: Secret::generate(),
        })
    }

    pub async fn drop_database(self, server: &str) -> anyhow::Result<()> {
        self.pool.close().await;
        let name = self
            .database_url
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut admin = PgConnection::connect(&format!("{server}/postgres")).await?;
        admin
            .execute(format!(r#"DROP DATABASE "{name}" WITH (FORCE)"#).as_str())
            .await?;
        Ok(())
    }

    pub async fn create_app(&self, uid: &str) -> anyhow::Result<String> {
        Ok(sqlx::query_scalar(
            "INSERT INTO herald.application (uid, name) VALUES ($1, $1) RETURNING id",
        )
        .bind(uid)
        .fetch_one(&self.pool)
        .await?)
    }

    /// An endpoint of `app` at `url`, subscribed to `event_type` (or everything).
    pub async fn add_endpoint(
        &self,
        app: &str,
        url: &str,
        event_type: Option<&str>,
    ) -> anyhow::Result<()> {
        self.add_endpoint_with_id(None, app, url, event_type).await
    }

    /// The same with a fixed id (endpoints are routed to senders by id).
    pub async fn add_endpoint_with_id(
        &self,
        id: Option<&str>,
        app: &str,
        url: &str,
        event_type: Option<&str>,
    ) -> anyhow::Result<()> {
        let ep: String = sqlx::query_scalar(
            "INSERT INTO herald.endpoint (id, app_id, url, event_types) \
             VALUES (coalesce($4, herald.new_id('ep')), $1, $2, $3) RETURNING id",
        )
        .bind(app)
        .bind(url)
        .bind(event_type.map(|e| vec![e.to_string()]))
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        sqlx::query("INSERT INTO herald.endpoint_secret (endpoint_id, key) VALUES ($1, $2)")
            .bind(&ep)
            .bind(self.secret.as_bytes())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Many endpoints of `app` in two statements, one per URL, all with the bench secret.
    pub async fn add_endpoints_bulk(&self, app: &str, urls: &[String]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO herald.endpoint (app_id, url) SELECT $1, u FROM unnest($2::text[]) u",
        )
        .bind(app)
        .bind(urls)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO herald.endpoint_secret (endpoint_id, key) \
             SELECT id, $2 FROM herald.endpoint WHERE app_id = $1",
        )
        .bind(app)
        .bind(self.secret.as_bytes())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One application with `endpoints` endpoints labelled e0, e1, ...
    pub async fn setup_endpoints(
        &self,
        receiver: &crate::receiver::Receiver,
        endpoints: usize,
    ) -> anyhow::Result<String> {
        let app = self.create_app("bench").await?;
        for i in 0..endpoints {
            self.add_endpoint(&app, &receiver.url(&format!("e{i}")), None)
                .await?;
        }
        Ok(app)
    }

    /// Enqueues `n` messages with `herald.send_message` in transactions of `batch`, one
    /// statement per message; returns messages per second.
    pub async fn enqueue(&self, app: &str, n: usize, batch: usize) -> anyhow::Result<f64> {
        self.enqueue_type(app, "payment.confirmed", n, batch).await
    }

    pub async fn enqueue_type(
        &self,
        app: &str,
        event_type: &str,
        n: usize,
        batch: usize,
    ) -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut sent = 0;
        while sent < n {
            let take = batch.min(n - sent);
            let mut tx = self.pool.begin().await?;
            for i in 0..take {
                let payload = format!(
                    r#"{{"t": {}, "seq": {}, "type": "payment.confirmed", "amount": "10.00"}}"#,
                    chrono::Utc::now().timestamp_micros(),
                    sent + i
                );
                sqlx::query("SELECT herald.send_message($1, $2, $3)")
                    .bind(app)
                    .bind(event_type)
                    .bind(payload)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            sent += take;
        }
        Ok(n as f64 / started.elapsed().as_secs_f64())
    }

    /// Enqueues `n` messages with `herald.send_message` in one transaction, one statement
    /// per message; returns messages per second and the moment the commit returned.
    pub async fn enqueue_one_transaction(
        &self,
        app: &str,
        n: usize,
    ) -> anyhow::Result<(f64, Instant)> {
        let started = Instant::now();
        self.enqueue(app, n, n).await?;
        let committed = Instant::now();
        Ok((n as f64 / (committed - started).as_secs_f64(), committed))
    }

    /// Waits until a Herald dispatcher listens for notifications on this database.
    pub async fn wait_listening(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self
            .count(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'herald' AND query ILIKE 'LISTEN%'",
            )
            .await?
            == 0
        {
            if Instant::now() > deadline {
                bail!("Herald did not LISTEN within {timeout:?}");
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }

    /// Transactions committed or rolled back in this database so far (all clients).
    pub async fn transactions(&self) -> anyhow::Result<i64> {
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&self.pool)
            .await?;
        self.count(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
             WHERE datname = current_database()",
        )
        .await
    }

    /// CPU seconds used so far by the PostgreSQL backends serving Herald in this database
    /// (its connections are named `herald`). Backends that ended are not counted.
    pub async fn herald_backends_cpu(&self) -> anyhow::Result<f64> {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'herald'",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(pids
            .into_iter()
            .filter_map(|pid| process_cpu_seconds(pid as u32))
            .sum())
    }

    /// Waits until `n` deliveries succeeded, or `timeout`.
    pub async fn wait_succeeded(&self, n: usize, timeout: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let done = self
                .count("SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'")
                .await?;
            if done as usize >= n {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `herald` binary built beside this one, running as a child process.
pub struct Herald {
    child: Child,
    /// The API's address when it serves one.
    pub api: Option<std::net::SocketAddr>,
}

/// What to run: `worker` (dispatcher only), `api` (HTTP only) or `all`.
#[derive(Clone, Copy, PartialEq)]
pub enum Role {
    Worker,
    Api,
    All,
}

impl Herald {
    pub async fn start(
        cli: &Cli,
        database_url: &str,
        role: Role,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Herald> {
        let exe = match &cli.herald_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("herald"),
        };
        if !exe.exists() {
            bail!(
                "{} not found: build it first (cargo build --release --bins)",
                exe.display()
            );
        }
        let api = match role {
            Role::Worker => None,
            // A free port: bound, read and released (Herald binds it a moment later).
            _ => Some(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?),
        };
        let config_dir = cli
            .herald_config
            .clone()
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/config").into());
        // Herald's working directory: a development Herald writes its encryption key into
        // `.herald/` there, which belongs in neither the checkout nor the caller's directory.
        // (Not HERALD_ENCRYPTION_KEY or HERALD_DATA_DIR: builds from before them, run with
        // `--herald-bin`, refuse settings they do not know.)
        let workdir = std::env::temp_dir().join("herald-bench");
        std::fs::create_dir_all(&workdir)?;
        // Given paths are the caller's, relative to where it runs.
        let exe = exe.canonicalize()?;
        let config_dir = std::path::absolute(&config_dir)?;
        let mut cmd = Command::new(exe);
        cmd.current_dir(&workdir)
            .env("HERALD_CONFIG_DIR", config_dir)
            .env("HERALD_DATABASE_URL", database_url)
            .env(
                "HERALD_ROLE",
                match role {
                    Role::Worker => "worker",
                    Role::Api => "api",
                    Role::All => "all",
                },
            )
            .env("HERALD_SENDERS", cli.senders.to_string())
            .env("HERALD_API_TOKENS", TOKEN)
            .env(
                "HERALD_LOG_LEVEL",
                if cli.herald_log.is_some() {
                    "info"
                } else {
                    "warn"
                },
            )
            .env("HERALD_LOG_FORMAT", "json")
            .env("HERALD_HEALTH_LOG_INTERVAL", "1s")
            .env("HERALD_HEARTBEAT_INTERVAL", "500ms")
            // The receiver is local; Herald refuses loopback destinations unless allowed.
            .env("HERALD_ALLOWED_CIDRS", "127.0.0.0/8")
            .envs(env.iter().copied())
            .stdout(match &cli.herald_log {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?,
                ),
                None => Stdio::null(),
            });
        if let Some(addr) = api {
            cmd.env("HERALD_LISTEN", addr.to_string());
        }
        if cli.herald_bin.is_some() {
            // Another build (an earlier version, say) on the schema this benchmark created.
            cmd.env("HERALD_RUN_MIGRATIONS", "false");
        }
        // A benchmark killed before it could stop Herald must not leave it running (one that
        // did kept reconnecting to its dropped database through the next soak).
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        #[cfg(target_os = "linux")]
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
                Ok(())
            });
        }
        let mut herald = Herald {
            child: cmd.spawn()?,
            api,
        };
        if let Some(addr) = api {
            herald.wait_listening(addr).await?;
        }
        Ok(herald)
    }

    async fn wait_listening(&mut self, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while actix_rt::net::TcpStream::connect(addr).await.is_err() {
            if let Some(status) = self.child.try_wait()? {
                bail!("herald exited at start-up: {status}");
            }
            if Instant::now() > deadline {
                bail!("herald's API did not come up on {addr}");
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far, in MiB (Linux).
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        process_cpu_seconds(self.pid())
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

/// A scenario that fails midway leaves no Herald running behind it.
impl Drop for Herald {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU seconds (user + system) of a process (Linux, from /proc/{pid}/stat).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields after it are space-separated.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Busy and total CPU time of the whole machine so far (Linux, from /proc/stat), in ticks.
pub fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// Share of the machine's CPU that was busy between two [`machine_cpu`] readings.
pub fn busy_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (before?, after?);
    (t1 > t0).then(|| (b1 - b0) as f64 / (t1 - t0) as f64)
}

/// Two decimals.
pub fn round(x: f64) -> f64 {
    round_to(x, 2)
}

/// `decimals` decimals (for small ratios).
pub fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// Percentile `p` (0–100) of unsorted values, nearest rank.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    Some(v[i])
}
