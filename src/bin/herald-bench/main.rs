//! `herald-bench`: measures Herald on this machine and prints a table and a JSON line.
//!
//! Each scenario creates a throw-away database, starts a receiver that verifies every
//! signature where deliveries are involved, runs the `herald` binary (built next to this
//! one) as a separate process, and drives it.
//!
//!     cargo build --release --bins
//!     target/release/herald-bench all

mod all;
mod api;
mod claim;
mod client;
mod delivery;
mod endpoints;
mod inbound;
mod ordered;
mod pages;
mod pgcount;
mod receiver;
mod setup;
mod soak;
mod soak_plot;

use clap::{Parser, Subcommand};

use api::ApiOptions;
use setup::Bench;

#[derive(Parser)]
#[command(about = "Benchmarks Herald against a local receiver")]
pub struct Cli {
    /// PostgreSQL server to create the benchmark database on.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432",
        env = "HERALD_BENCH_DATABASE_URL"
    )]
    server: String,
    /// Sender actors in the Herald under test.
    #[arg(long, default_value_t = 2)]
    senders: usize,
    /// Keep the benchmark database afterwards.
    #[arg(long)]
    keep_database: bool,
    /// The `herald` binary to run (default: the one built beside this benchmark).
    #[arg(long)]
    herald_bin: Option<std::path::PathBuf>,
    /// The configuration directory it reads (default: this checkout's `config/`; give the
    /// other build's own with `--herald-bin`, since a build refuses settings it does not
    /// know).
    #[arg(long)]
    herald_config: Option<std::path::PathBuf>,
    /// A PostgreSQL setting for the benchmark database's sessions, `NAME=VALUE`
    /// (`ALTER DATABASE ... SET`); repeatable. For experiments and diagnosis, e.g.
    /// `--db-setting log_min_duration_statement=0`.
    #[arg(long, value_name = "NAME=VALUE")]
    db_setting: Vec<String>,
    /// Append the Herald process's log (info level) to this file.
    #[arg(long)]
    herald_log: Option<std::path::PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone)]
enum Scenario {
    /// Pre-enqueue N messages (herald.send_message, batched in transactions), then time how
    /// fast Herald drains them to E endpoints.
    BurnDown {
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        #[arg(long, default_value_t = 1)]
        endpoints: usize,
        /// Messages per enqueue transaction.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Route Herald's database connections through a counting proxy and report round
        /// trips, statements and transactions per delivery.
        #[arg(long)]
        count_db: bool,
        /// Start Herald first, then enqueue every message in ONE transaction (a batch job's
        /// `SELECT herald.send_message(...) FROM orders`); the clock runs from its commit.
        #[arg(long, conflicts_with = "batch")]
        one_transaction: bool,
    },
    /// One endpoint holds a backlog of N deliveries while another receives a steady trickle:
    /// the quiet endpoint's enqueue-to-receive latency must not depend on the backlog.
    Fairness {
        #[arg(long, default_value_t = 100_000)]
        backlog: usize,
        /// Messages per second offered to the quiet endpoint while the backlog drains.
        #[arg(long, default_value_t = 10)]
        rate: u32,
    },
    /// Healthy endpoints' throughput alone, then with one more endpoint that hangs until
    /// Herald's request timeout on every request.
    Hanging {
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        #[arg(long, default_value_t = 4)]
        endpoints: usize,
    },
    /// Messages accepted per second by `POST /api/v1/app/{app}/msg` from concurrent
    /// keep-alive clients (Herald runs the API only).
    ApiIngest {
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        #[command(flatten)]
        api: ApiOptions,
    },
    /// Enqueue-to-receive latency at a steady rate offered through the HTTP API.
    Latency {
        /// Messages per second offered.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[command(flatten)]
        api: ApiOptions,
    },
    /// Time to claim a batch (the library's claim, as the claimer runs it) at growing
    /// backlogs of waiting deliveries.
    Claim {
        /// Backlog sizes, measured in increasing order on one database.
        #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
        backlogs: Vec<usize>,
        /// Deliveries per claim (HERALD_CLAIM_BATCH's default).
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Endpoints the backlog is spread over.
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
        /// Timed claims per backlog size.
        #[arg(long, default_value_t = 20)]
        repeats: usize,
        /// Do not VACUUM ANALYZE after filling (as if autovacuum had not come by yet).
        #[arg(long)]
        no_vacuum: bool,
    },
    /// Herald's peak resident memory while it delivers to many endpoints.
    Endpoints {
        #[arg(long, default_value_t = 10_000)]
        endpoints: usize,
        /// Messages, each fanned out to every endpoint.
        #[arg(long, default_value_t = 10)]
        messages: usize,
        /// Receiver addresses the endpoints are spread over (distinct destinations).
        #[arg(long, default_value_t = 100)]
        hosts: usize,
    },
    /// Stripe-signed requests one source accepts (verified and written) per second from
    /// concurrent clients (Herald runs the API only).
    IngestReceive {
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, default_value_t = 32)]
        clients: usize,
    },
    /// Receipt-to-forward latency of a source's events at a steady offered rate.
    IngestLatency {
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        clients: usize,
    },
    /// An ordered endpoint's throughput (one delivery at a time, so bounded by the round
    /// trip) beside unordered endpoints', every receiver answering after 1 ms.
    Ordered {
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        /// Unordered endpoints beside it.
        #[arg(long, default_value_t = 4)]
        unordered: usize,
    },
    /// How long the dashboard's pages take on a busy hour (the overview's charts read the
    /// attempt log; the dead-letter pages count and list).
    Pages {
        /// Attempts in the last hour (one per message; a tenth are dead letters).
        #[arg(long, default_value_t = 100_000)]
        attempts: usize,
        #[arg(long, default_value_t = 50)]
        endpoints: usize,
        /// Fetches of each page.
        #[arg(long, default_value_t = 20)]
        repeats: usize,
    },
    /// A steady rate through the API for many minutes with a short retention: latency,
    /// throughput, memory, table sizes, dead tuples, claim time and queue over time (printed,
    /// and written as CSV and a PNG chart), first and last tenth side by side.
    Soak(soak::SoakOptions),
    /// Every figure of issue 5 with its parameters: one table and one JSON line.
    All,
}

/// Runs one scenario (not `all`) on a database of its own.
async fn run_one(cli: &Cli, scenario: &Scenario) -> anyhow::Result<serde_json::Value> {
    if let Scenario::Hanging {
        messages,
        endpoints,
    } = scenario
    {
        // It runs twice, each on its own database.
        return delivery::hanging(cli, *messages, *endpoints).await;
    }
    let bench = Bench::create(&cli.server, &cli.db_setting).await?;
    let result = match scenario.clone() {
        Scenario::BurnDown {
            messages,
            endpoints,
            batch,
            count_db,
            one_transaction,
        } => {
            let load = delivery::BurnDown {
                messages,
                endpoints,
                batch,
                count_db,
                one_transaction,
            };
            delivery::burn_down(cli, &bench, load).await
        }
        Scenario::Fairness { backlog, rate } => {
            delivery::fairness(cli, &bench, backlog, rate).await
        }
        Scenario::ApiIngest { messages, api } => api::ingest(cli, &bench, messages, api).await,
        Scenario::Latency { rate, seconds, api } => {
            api::latency(cli, &bench, rate, seconds, api).await
        }
        Scenario::Claim {
            backlogs,
            batch,
            endpoints,
            repeats,
            no_vacuum,
        } => claim::claim(&bench, &backlogs, batch, endpoints, repeats, !no_vacuum).await,
        Scenario::Endpoints {
            endpoints,
            messages,
            hosts,
        } => endpoints::endpoints(cli, &bench, endpoints, messages, hosts).await,
        Scenario::IngestReceive { events, clients } => {
            inbound::receive(cli, &bench, events, clients).await
        }
        Scenario::IngestLatency {
            rate,
            seconds,
            clients,
        } => inbound::latency(cli, &bench, rate, seconds, clients).await,
        Scenario::Ordered {
            messages,
            unordered,
        } => ordered::ordered(cli, &bench, messages, unordered).await,
        Scenario::Pages {
            attempts,
            endpoints,
            repeats,
        } => pages::pages(cli, &bench, endpoints, attempts, repeats).await,
        Scenario::Soak(opts) => soak::soak(cli, &bench, opts).await,
        Scenario::Hanging { .. } | Scenario::All => unreachable!("handled above"),
    };
    if cli.keep_database {
        eprintln!("herald-bench: kept database {}", bench.database_url);
    } else {
        bench.drop_database(&cli.server).await?;
    }
    result
}

fn print_report(report: &serde_json::Value) {
    println!("{:<44} value", "metric");
    if let Some(map) = report.as_object() {
        for (k, v) in map {
            println!("{k:<44} {v}");
        }
    }
    println!("{}", serde_json::to_string(report).unwrap_or_default());
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    actix_rt::System::new().block_on(async {
        if matches!(cli.scenario, Scenario::All) {
            all::print(&all::all(&cli).await?);
        } else {
            print_report(&run_one(&cli, &cli.scenario).await?);
        }
        Ok(())
    })
}
