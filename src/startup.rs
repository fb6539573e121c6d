//! Wiring the process together: database, migrations, dispatcher, HTTP API, shutdown.

use std::{net::TcpListener, num::NonZeroU32, str::FromStr};

use actix_web::{dev::ServerHandle, web, App, HttpServer};
use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tracing_actix_web::TracingLogger;

use utoipa_actix_web::AppExt;

use crate::{
    access::{lockout::Lockout, Authenticator},
    api::{
        health::Readiness,
        idempotency::KeyLock,
        message_create::MessageLimits,
        metrics::{QueueCache, Scrape},
        openapi::Document,
        route_table::RouteTable,
        ApiConfig, Serving,
    },
    config::{ConfigError, Settings},
    dispatcher::{config::DispatcherConfig, Dispatcher},
    metrics::Metrics,
    store::{writers::ApiWriters, Store},
};

/// A running Herald. Tests build one with `listen = 127.0.0.1:0` and read the port back.
pub struct Application {
    port: u16,
    /// The API server, already running (spawned at build).
    server: Option<(
        ServerHandle,
        actix_rt::task::JoinHandle<std::io::Result<()>>,
    )>,
    /// `/metrics` on an address of its own (`HERALD_METRICS_LISTEN`), and its port.
    metrics_server: Option<(crate::api::metrics::Running, u16)>,
    dispatcher: Option<Dispatcher>,
    pool: PgPool,
}

impl Application {
    /// Connects, migrates, starts the dispatcher and binds the API, per `settings.process.role`.
    /// Must run inside an actix system.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let db = database_options(&settings)?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.database.pool_size)
            .acquire_timeout(settings.database.timeout)
            .connect_lazy_with(db.clone());

        if settings.database.run_migrations {
            migrate_with(&settings.database.url, &pool).await?;
        }

        // Partitions for the messages about to come (a worker's retention keeps them
        // ahead; until then, or if this fails, rows go to the default partitions).
        if let Err(error) =
            crate::store::partitions::make_ahead(&pool, settings.retention.partition_interval).await
        {
            tracing::warn!(%error, "could not make the time partitions ahead; retention will retry");
        }
        let keyring = std::sync::Arc::new(
            crate::keyring::from_settings(
                settings.encryption.key(),
                &settings.encryption.old_keys,
                &settings.database.data_dir,
            )
            .map_err(|problem| ConfigError {
                setting: "HERALD_ENCRYPTION_KEY".into(),
                problem,
            })?,
        );
        let metrics = std::sync::Arc::new(Metrics::new());
        let owner = instance_name();
        publish_runtime_settings(&pool, &owner, &settings).await;
        let dispatcher = settings.process.role.runs_worker().then(|| {
            let config = DispatcherConfig::from_settings(
                &settings,
                owner.clone(),
                db,
                metrics.clone(),
                keyring.clone(),
            );
            Dispatcher::start(config)
        });

        // Every role listens: API instances serve the API, worker-only instances serve
        // health and metrics (so each replica can be probed and scraped).
        let listener = TcpListener::bind(settings.process.listen).map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} ({e}): stop what uses that address, or set HERALD_LISTEN \
                 to another (127.0.0.1:0 picks a free port)",
                settings.process.listen
            )
        })?;
        let port = listener.local_addr()?.port();
        let data = web::Data::new(pool.clone());
        let serving = if settings.process.role.runs_api() {
            Serving::Api
        } else {
            Serving::Ops
        };
        // Message creates and idempotency keys from every worker share one group commit
        // (its writers run only where the API does).
        let writers = (serving == Serving::Api)
            .then(|| web::Data::new(ApiWriters::start(&pool, settings.api.batch_linger)));
        let document = crate::api::document(serving);
        let routes = web::Data::new(RouteTable::from_document(&document));
        let document = web::Data::new(Document(std::sync::Arc::new(
            document
                .to_json()
                .context("serializing the OpenAPI document")?,
        )));
        let readiness = Readiness {
            dispatcher: dispatcher.clone(),
            // Heartbeats are asked for every interval; allow a few to be late.
            max_heartbeat_age: settings.supervision.heartbeat_interval * 3,
            timeout: settings.database.timeout,
        };
        let queue_cache = web::Data::new(QueueCache::new(settings.process.metrics_cache));
        let (metrics_for_scrapes, readiness_for_scrapes) = (metrics.clone(), readiness.clone());
        let api = std::sync::Arc::new(ApiConfig {
            authenticator: web::Data::new(Authenticator::new(
                settings.api.tokens.clone(),
                Lockout::per_minute(
                    NonZeroU32::new(settings.access.auth_failure_limit)
                        .context("auth_failure_limit is validated to be at least 1")?,
                ),
            )),
            access: settings.access.clone(),
            ingest: settings.ingest.clone(),
            circle_keys: web::Data::new(Default::default()),
            sources: web::Data::new(crate::api::ingest::source_cache::SourceCache::new(
                keyring.clone(),
            )),
            max_body_bytes: settings.api.max_payload_bytes,
            destinations: crate::destination::Policy::from_settings(&settings),
            readiness,
            metrics,
            messages: MessageLimits {
                max_deliver_ahead: settings.api.max_deliver_ahead,
            },
            key_lock: KeyLock(settings.api.idempotency_lock),
            scrape: match settings.process.metrics_listen {
                Some(_) => Scrape::OperatorOnly,
                None => Scrape::Open,
            },
            queue_cache: queue_cache.clone(),
            keyring: web::Data::from(keyring.clone()),
        });
        let server = HttpServer::new(move || {
            let (api, writers) = (api.clone(), writers.clone());
            let (app, _) = App::new()
                .wrap(TracingLogger::default())
                .app_data(data.clone())
                .app_data(document.clone())
                .app_data(routes.clone())
                .configure(|cfg| {
                    crate::api::app_data(cfg, &api);
                    if let Some(w) = writers {
                        cfg.app_data(w);
                    }
                })
                .into_utoipa_app()
                .configure(|cfg| crate::api::configure(cfg, serving))
                .split_for_parts();
            app.configure(|cfg| {
                if serving == Serving::Api {
                    crate::ui::configure(cfg);
                }
            })
            .default_service(web::to(crate::api::route_table::no_route))
        })
        // Signals are ours: shutdown must drain the dispatcher, not only the server.
        .disable_signals()
        .listen(listener)?
        .run();
        let what = match serving {
            Serving::Api => "API",
            Serving::Ops => "health and metrics",
        };
        tracing::info!(address = %settings.process.listen, port, serving = what, "listening");
        let server = Some((server.handle(), actix_rt::spawn(server)));
        let metrics_server = match settings.process.metrics_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot listen on {addr} for /metrics ({e}): set HERALD_METRICS_LISTEN \
                         to a free address, or empty to serve /metrics on HERALD_LISTEN"
                    )
                })?;
                let port = listener.local_addr()?.port();
                tracing::info!(address = %addr, port, serving = "metrics", "listening");
                let running = crate::api::metrics::serve_alone(
                    listener,
                    metrics_for_scrapes,
                    pool.clone(),
                    readiness_for_scrapes,
                    queue_cache,
                )?;
                Some((running, port))
            }
            None => None,
        };

        Ok(Application {
            port,
            server,
            metrics_server,
            dispatcher,
            pool,
        })
    }

    /// The HTTP port (useful when bound to port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `/metrics`'s own listener, when it has one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    pub fn dispatcher(&self) -> Option<&Dispatcher> {
        self.dispatcher.as_ref()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs until SIGTERM or SIGINT, then shuts down cleanly.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let serving = self.server.as_mut().map(|(_, task)| task);
        let serve = async move {
            match serving {
                Some(task) => task.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = serve => {
                self.server = None;
                result.context("API server failed")?
            }
            signal = shutdown_signal() => tracing::info!(signal, "shutdown requested"),
        }
        self.shutdown().await;
        Ok(())
    }

    /// Stops accepting API requests (finishing those being served), stops the dispatcher
    /// (draining in-flight work), and closes the database pool.
    pub async fn shutdown(&self) {
        if let Some((handle, _)) = &self.server {
            handle.stop(true).await;
        }
        if let Some(((handle, _), _)) = &self.metrics_server {
            handle.stop(true).await;
        }
        if let Some(d) = &self.dispatcher {
            d.shutdown().await;
        }
        self.pool.close().await;
    }
}

/// `herald migrate`: creates the database if it is missing and applies the migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = database_options(settings)?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(settings.database.timeout)
        .connect_lazy_with(db);
    let result = migrate_with(&settings.database.url, &pool).await;
    pool.close().await;
    result
}

/// A small pool for a command-line tool (`herald token`), on a migrated database (migrated
/// here when `HERALD_RUN_MIGRATIONS` is on, as `serve` would).
pub async fn tool_pool(settings: &Settings) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(settings.database.timeout)
        .connect_lazy_with(database_options(settings)?);
    if settings.database.run_migrations {
        migrate_with(&settings.database.url, &pool).await?;
    }
    Ok(pool)
}

async fn migrate_with(url: &str, pool: &PgPool) -> anyhow::Result<()> {
    create_database_if_missing(url).await?;
    Store::from_pool(pool.clone())
        .migrate()
        .await
        .map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(db) => {
                unreachable_or(url, db, "applying the migrations")
            }
            other => anyhow::anyhow!(
                "applying the database migrations failed: {other} (is this database used by \
                 a newer Herald? HERALD_RUN_MIGRATIONS=false skips this step)"
            ),
        })
}

fn database_options(settings: &Settings) -> anyhow::Result<PgConnectOptions> {
    let db = PgConnectOptions::from_str(&settings.database.url).map_err(|e| ConfigError {
        setting: "HERALD_DATABASE_URL".into(),
        problem: format!("not a PostgreSQL URL: {e}"),
    })?;
    // No JIT compilation: Herald's statements are short, by key or through a partial index,
    // and the sessions that plan with `enable_seqscan = off` (`store::index_driven`) give a
    // scan no index serves a cost of 10^10, far past `jit_above_cost`, so PostgreSQL's
    // default `jit = on` compiled and optimized such a statement with LLVM on every
    // execution: the reaper's look at a 4-row endpoint table and its queue sample kept two
    // backends 30 % busy, and three instances delivering 20,000 messages in the fault tests
    // fell from thousands per second to about 50 (gdb: the time in LLVM's passes).
    Ok(db.application_name("herald").options([("jit", "off")]))
}

/// A first run against a fresh PostgreSQL should just work: create the database when it
/// does not exist yet (only when Herald also manages the schema, i.e. runs migrations).
async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    use sqlx::migrate::MigrateDatabase;
    let exists = sqlx::Postgres::database_exists(url)
        .await
        .map_err(|e| unreachable_or(url, e, "connecting"))?;
    if !exists {
        tracing::info!("database does not exist; creating it");
        sqlx::Postgres::create_database(url)
            .await
            .map_err(|e| unreachable_or(url, e, "creating the database"))?;
    }
    Ok(())
}

/// One line a newcomer understands: which address, what failed, what to do next.
fn unreachable_or(url: &str, e: sqlx::Error, doing: &str) -> anyhow::Error {
    let at = crate::config::mask_url(url);
    match &e {
        sqlx::Error::Io(io) => anyhow::anyhow!(
            "cannot reach PostgreSQL at {at} ({io}): start PostgreSQL there, or set \
             HERALD_DATABASE_URL to a server that runs"
        ),
        sqlx::Error::PoolTimedOut => anyhow::anyhow!(
            "PostgreSQL at {at} did not answer in time (HERALD_DATABASE_TIMEOUT): check that \
             it runs and is reachable, or set HERALD_DATABASE_URL"
        ),
        sqlx::Error::Database(db)
            if db.code().as_deref() == Some("28P01") || db.code().as_deref() == Some("28000") =>
        {
            anyhow::anyhow!(
                "PostgreSQL at {at} refused the login ({}): fix the user or password in \
                 HERALD_DATABASE_URL",
                db.message()
            )
        }
        sqlx::Error::Database(db) if db.code().as_deref() == Some("42501") => anyhow::anyhow!(
            "PostgreSQL at {at} refused {doing} ({}): grant the user the right, or create \
             the database and schema yourself and set HERALD_RUN_MIGRATIONS=false",
            db.message()
        ),
        _ => anyhow::anyhow!("{doing} on PostgreSQL at {at} failed: {e}"),
    }
}

/// What the SQL functions need to know of the configuration (`herald.send_message` checks
/// `deliver_at` and a callback `url` against it).
/// Best effort: an instance that starts while the database is down keeps the values the
/// last instance wrote (the functions' defaults before any).
async fn publish_runtime_settings(pool: &PgPool, owner: &str, settings: &Settings) {
    let ahead = format!("{} seconds", settings.api.max_deliver_ahead.as_secs());
    let d = &settings.destinations;
    let cidrs: Vec<String> = d.allowed_cidrs.iter().map(|n| n.to_string()).collect();
    let values = [
        ("max_deliver_ahead", ahead),
        ("destination_allowlist", d.allowlist.join(",")),
        ("require_https", d.require_https.to_string()),
        ("allowed_cidrs", cidrs.join(",")),
    ];
    if let Err(error) = crate::store::runtime::publish(pool, owner, &values).await {
        tracing::warn!(%error, "could not write herald.runtime_setting; the SQL functions use the values written before");
    }
}

/// The name written on this instance's leases: unique per process.
fn instance_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "herald".into());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &tag[..8])
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use actix_rt::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = actix_rt::signal::ctrl_c() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = actix_rt::signal::ctrl_c().await;
        "SIGINT"
    }
}
