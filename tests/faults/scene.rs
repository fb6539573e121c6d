//! The set-up every fault test shares: its own PostgreSQL cluster with Herald's schema, one
//! application with endpoints pointing at a verifying receiver, producers that enqueue
//! through `herald.send_message` in batched transactions, and the checks on what arrived.

use std::time::Duration;

use sqlx::{postgres::PgPoolOptions, Connection, Executor, PgConnection, PgPool};

use crate::{
    herald::Herald,
    pg::PgCluster,
    receiver::Receiver,
    support::{wait_until, TempDir},
};

/// One delivery the test expects: the endpoint (its label at the receiver) and the message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Expected {
    pub label: String,
    pub message_id: String,
}

pub struct Scene {
    /// Herald's logs.
    pub dir: TempDir,
    pub receiver: Receiver,
    pub db: PgPool,
    pub database_url: String,
    pub app: String,
    /// Endpoint ids; each is also its label at the receiver and subscribes to the event type
    /// `fault.{index}`.
    pub endpoints: Vec<String>,
    /// Last, so that it outlives everything that talks to it.
    pub pg: PgCluster,
}

impl Scene {
    /// A new cluster with a migrated `herald` database, a receiver, and `endpoints`
    /// endpoints of one application (ids `ep_faults_{i}`).
    pub async fn new(endpoints: usize) -> Scene {
        Self::with_endpoint_ids((0..endpoints).map(|i| format!("ep_faults_{i}")).collect()).await
    }

    pub async fn with_endpoint_ids(endpoints: Vec<String>) -> Scene {
        let pg = PgCluster::start().await;
        let mut admin = PgConnection::connect(&pg.url())
            .await
            .expect("connect to the cluster");
        admin
            .execute("CREATE DATABASE herald")
            .await
            .expect("create the database");
        admin.close().await.ok();
        let database_url = pg.database_url("herald");
        let db = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&database_url)
            .await
            .expect("connect to the test database");
        // The schema is in place before any instance starts, so instances can start together.
        herald::store::Store::from_pool(db.clone())
            .migrate()
            .await
            .expect("migrate");

        let receiver = Receiver::start();
        let app: String = sqlx::query_scalar(
            "INSERT INTO herald.application (uid, name) VALUES ('faults', 'Faults') RETURNING id",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        for (i, id) in endpoints.iter().enumerate() {
            sqlx::query(
                "INSERT INTO herald.endpoint (id, app_id, url, event_types) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(&app)
            .bind(receiver.url(id))
            .bind(vec![format!("fault.{i}")])
            .execute(&db)
            .await
            .unwrap();
            sqlx::query("INSERT INTO herald.endpoint_secret (endpoint_id, key) VALUES ($1, $2)")
                .bind(id)
                .bind(receiver.secret_key())
                .execute(&db)
                .await
                .unwrap();
        }
        Scene {
            dir: TempDir::new("logs"),
            receiver,
            db,
            database_url,
            app,
            endpoints,
            pg,
        }
    }

    /// Starts an instance on this scene's database.
    pub fn herald(&self, name: &str, overrides: &[(&str, &str)]) -> Herald {
        Herald::start(name, self.dir.path(), &self.database_url, overrides)
    }

    /// Starts `count` instances and waits until each answers.
    pub async fn heralds(&self, count: usize, overrides: &[(&str, &str)]) -> Vec<Herald> {
        let mut heralds: Vec<Herald> = (1..=count)
            .map(|i| self.herald(&format!("herald-{i}"), overrides))
            .collect();
        for h in &mut heralds {
            h.wait_ready(Duration::from_secs(30)).await;
        }
        heralds
    }

    /// Enqueues `count` messages as a producer would: `herald.send_message` inside its own
    /// transactions, `per_transaction` at a time. Messages go to the endpoints in turn.
    pub async fn enqueue(&self, count: usize, per_transaction: usize) -> Vec<Expected> {
        self.enqueue_from(0, count, per_transaction).await
    }

    /// The same, numbering payloads from `first` (payloads differ between calls).
    pub async fn enqueue_from(
        &self,
        first: usize,
        count: usize,
        per_transaction: usize,
    ) -> Vec<Expected> {
        let mut expected = Vec::with_capacity(count);
        let n = self.endpoints.len() as i32;
        let mut start = first;
        while start < first + count {
            let end = (start + per_transaction).min(first + count);
            let mut tx = self.db.begin().await.expect("begin");
            let rows: Vec<(i32, String)> = sqlx::query_as(
                "SELECT i % $4, herald.send_message($1, 'fault.' || (i % $4), \
                        json_build_object('n', i, 'note', 'fault test')::text) \
                 FROM generate_series($2::int, $3::int) AS i",
            )
            .bind(&self.app)
            .bind(start as i32)
            .bind(end as i32 - 1)
            .bind(n)
            .fetch_all(&mut *tx)
            .await
            .expect("send_message");
            tx.commit().await.expect("commit");
            expected.extend(rows.into_iter().map(|(ep, id)| Expected {
                label: self.endpoints[ep as usize].clone(),
                message_id: id,
            }));
            start = end;
        }
        expected
    }

    /// Waits until `n` deliveries have arrived (a point in the middle of a run).
    pub async fn wait_arrivals(&self, n: usize, timeout: Duration) {
        let reached = wait_until(
            timeout,
            || std::future::ready(self.delivered()),
            |got| *got >= n,
        )
        .await;
        assert!(
            reached,
            "{} of the {n} deliveries awaited arrived within {timeout:?}",
            self.delivered()
        );
    }

    /// Deliveries the receiver answered with success at least once.
    pub fn delivered(&self) -> usize {
        self.receiver.tally(|t| t.delivered())
    }

    /// Waits until every expected delivery has arrived (answered 2xx) at the receiver, then
    /// checks that exactly these did; panics with what is missing otherwise.
    pub async fn wait_all_arrived(&self, expected: &[Expected], timeout: Duration) {
        let missing = || {
            self.receiver.tally(|t| {
                expected
                    .iter()
                    .filter(|e| t.get(&e.label, &e.message_id).ok == 0)
                    .cloned()
                    .collect::<Vec<Expected>>()
            })
        };
        let mut left = Vec::new();
        wait_until(
            timeout,
            || std::future::ready(missing()),
            |m| {
                left = m.clone();
                m.is_empty()
            },
        )
        .await;
        assert!(
            left.is_empty(),
            "after {timeout:?}, {} of {} deliveries have not arrived, e.g. {:?}; \
             delivery states: {:?}",
            left.len(),
            expected.len(),
            &left[..left.len().min(5)],
            self.delivery_states().await
        );
        let bad = self.receiver.tally(|t| t.bad.clone());
        assert!(
            bad.is_empty(),
            "bad requests: {:?}",
            &bad[..bad.len().min(5)]
        );
    }

    /// Waits until every delivery row is `succeeded` (its outcome written).
    pub async fn wait_all_settled(&self, timeout: Duration) {
        let db = self.db.clone();
        let settled = wait_until(
            timeout,
            || {
                let db = db.clone();
                async move {
                    sqlx::query_scalar::<_, i64>(
                        "SELECT count(*) FROM herald.delivery WHERE status <> 'succeeded'",
                    )
                    .fetch_one(&db)
                    .await
                    .unwrap_or(-1)
                }
            },
            |n| *n == 0,
        )
        .await;
        assert!(
            settled,
            "after {timeout:?}, deliveries are not all settled: {:?}",
            self.delivery_states().await
        );
    }

    /// `status → count` of the delivery rows.
    pub async fn delivery_states(&self) -> Vec<(String, i64)> {
        sqlx::query_as("SELECT status::text, count(*) FROM herald.delivery GROUP BY 1 ORDER BY 1")
            .fetch_all(&self.db)
            .await
            .unwrap_or_default()
    }

    /// The attempt log's failures by error, to say why something arrived twice.
    pub async fn failed_attempts(&self) -> Vec<(Option<String>, Option<i16>, i64)> {
        sqlx::query_as(
            "SELECT left(error, 120), status_code, count(*) FROM herald.attempt \
             WHERE NOT succeeded GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10",
        )
        .fetch_all(&self.db)
        .await
        .unwrap_or_default()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}
