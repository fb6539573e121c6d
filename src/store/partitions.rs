//! Time partitions of messages, deliveries and attempts (migration `20261202000003`): made
//! ahead of time, and dropped whole once retention has passed them.
//!
//! Partitions cover consecutive time ranges of `HERALD_PARTITION_INTERVAL`, the same for
//! the three tables (a message and its deliveries share one). The retention actor keeps
//! [`AHEAD`] intervals made ahead, and drops a range once its end is older than the
//! retention cutoff; what must outlive it (a delivery still waiting, a recent dead letter)
//! moves to the default partition in the same transaction (`herald.drop_partition`).
//!
//! Several instances take turns through a transaction-level advisory lock. A step takes
//! every table lock it needs at once with `NOWAIT`, or none: it never waits in a lock queue,
//! where an `ACCESS EXCLUSIVE` request holds up every query behind it (a 2 s wait gave one
//! soak a p99 of 3 s), and where waiting for its locks one by one deadlocked with the
//! engine's statements (seen in a soak at 2,000 messages/s: every make deferred, so rows
//! piled up in the default partition). A step whose locks are busy tries again after
//! [`RETRY_PAUSE`], up to [`TRIES`] times, then waits for the next pass.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use sqlx::{postgres::PgRow, PgPool, Row, ValueRef};

/// Intervals made ahead of now.
pub const AHEAD: u32 = 3;

/// How often a step tries for its locks in one pass, and the pause between tries. The
/// engine's statements hold them for milliseconds at a time, so some try finds them free:
/// at 2,000 messages/s in a soak, within a few tries.
pub const TRIES: u32 = 100;
pub const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// A safety net: a lock the step did not foresee is not waited for longer than this.
const LOCK_WAIT: &str = "100ms";

/// Whatever the ranges, the instance holding this lock is the one changing partitions.
const LOCK_KEY: i64 = 0x6865_7261_6c64_7074; // "heraldpt"

/// What one maintenance did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Maintained {
    /// Ranges made.
    pub made: usize,
    /// Ranges dropped, with how many messages each moved to the default partition.
    pub dropped: Vec<(String, i64)>,
    /// Steps left to the next pass (locks busy through every try, another instance at work).
    pub deferred: usize,
}

/// The ranges to make so that `[now, now + AHEAD × span)` is covered, from the end of the
/// last range (`last_hi`). A last range that ended in the past (no instance kept them
/// ahead for a while) is continued by one range up to a minute from now, which
/// `herald.make_partition` refuses if rows of that time went to the default partition
/// meanwhile; then ([`start_fresh`]) the first starts a minute from now.
pub fn ranges_to_make(
    last_hi: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    span: Duration,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let span = chrono::Duration::from_std(span).unwrap_or(chrono::Duration::days(1));
    let mut ranges = Vec::new();
    let mut start = match last_hi {
        Some(hi) if hi >= now => hi,
        Some(hi) => {
            let fresh = start_fresh(now);
            ranges.push((hi, fresh));
            fresh
        }
        None => start_fresh(now),
    };
    let until = now + span * AHEAD as i32;
    while start < until {
        ranges.push((start, start + span));
        start += span;
    }
    ranges
}

/// A range start a minute (and a fraction of a second) from now: no row written before
/// this range exists can have its time.
pub fn start_fresh(now: DateTime<Utc>) -> DateTime<Utc> {
    let earliest = now + chrono::Duration::minutes(1);
    earliest
        .with_nanosecond(0)
        .map(|t| t + chrono::Duration::seconds(1))
        .unwrap_or(earliest)
}

/// Makes the ranges still missing ahead, then drops those past `cutoff`.
pub async fn maintain(
    pool: &PgPool,
    span: Duration,
    cutoff: DateTime<Utc>,
) -> Result<Maintained, sqlx::Error> {
    let mut done = make_ahead(pool, span).await?;
    let expired: Vec<String> =
        sqlx::query_scalar("SELECT suffix FROM herald.time_partition WHERE hi <= $1 ORDER BY lo")
            .bind(cutoff)
            .fetch_all(pool)
            .await?;
    for suffix in expired {
        match drop(pool, &suffix, cutoff).await? {
            Some(moved) => done.dropped.push((suffix, moved)),
            None => done.deferred += 1,
        }
    }
    Ok(done)
}

/// Makes the ranges still missing ahead of now (start-up, and each retention pass).
pub async fn make_ahead(pool: &PgPool, span: Duration) -> Result<Maintained, sqlx::Error> {
    let (last_hi, now): (Option<DateTime<Utc>>, DateTime<Utc>) =
        sqlx::query_as("SELECT (SELECT max(hi) FROM herald.time_partition), now()")
            .fetch_one(pool)
            .await?;
    let mut done = Maintained::default();
    let mut ranges = ranges_to_make(last_hi, now, span).into_iter();
    let mut first = true;
    while let Some((lo, hi)) = ranges.next() {
        let Some(made) = make(pool, lo, hi).await? else {
            done.deferred += 1;
            break;
        };
        if !made && first && last_hi.is_some_and(|h| h < now) {
            // The catch-up range holds rows of the default partition: start afresh.
            ranges = ranges_to_make(None, now, span).into_iter();
        }
        first = false;
        done.made += usize::from(made);
    }
    Ok(done)
}

/// Makes the partitions of `[lo, hi)` (`herald.make_partition`), trying while their locks
/// are busy: `Some(false)` if a range overlaps it or its rows went to the default
/// partition, `None` if it was left to the next pass.
pub async fn make(
    pool: &PgPool,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
) -> Result<Option<bool>, sqlx::Error> {
    step(pool, &Step::Make(lo, hi))
        .await?
        .map(|row| row.try_get(0))
        .transpose()
}

/// Drops the partitions of range `suffix` (`herald.drop_partition`: what outlives
/// `cutoff` moves to the default partitions), trying while their locks are busy: how many
/// messages moved, or `None` if it was left to the next pass.
pub async fn drop(
    pool: &PgPool,
    suffix: &str,
    cutoff: DateTime<Utc>,
) -> Result<Option<i64>, sqlx::Error> {
    step(pool, &Step::Drop(suffix, cutoff))
        .await?
        .map(|row| row.try_get(0))
        .transpose()
}

/// One partition change: one call of a migration's function.
enum Step<'a> {
    Make(DateTime<Utc>, DateTime<Utc>),
    Drop(&'a str, DateTime<Utc>),
}

impl Step<'_> {
    async fn run(&self, tx: &mut sqlx::PgConnection) -> Result<PgRow, sqlx::Error> {
        match *self {
            Step::Make(lo, hi) => {
                sqlx::query("SELECT herald.make_partition($1, $2)")
                    .bind(lo)
                    .bind(hi)
                    .fetch_one(tx)
                    .await
            }
            Step::Drop(suffix, cutoff) => {
                sqlx::query("SELECT herald.drop_partition($1, $2)::bigint")
                    .bind(suffix)
                    .bind(cutoff)
                    .fetch_one(tx)
                    .await
            }
        }
    }
}

/// Runs one partition change in a transaction of its own under the advisory lock, trying
/// again while its table locks are busy; `None` when it was left to the next pass.
async fn step(pool: &PgPool, step: &Step<'_>) -> Result<Option<PgRow>, sqlx::Error> {
    for n in 0..TRIES {
        let mut tx = pool.begin().await?;
        if !locked(&mut tx).await? {
            return Ok(None);
        }
        match step.run(&mut tx).await {
            // NULL: the function found its locks busy (see the migration).
            Ok(row) if row.try_get_raw(0)?.is_null() => {
                tx.rollback().await?;
                actix_rt::time::sleep(RETRY_PAUSE).await;
            }
            Ok(row) => {
                tx.commit().await?;
                tracing::debug!(tries = n + 1, "partition step done");
                return Ok(Some(row));
            }
            Err(e) if lock_not_had(&e) => {
                tx.rollback().await?;
                actix_rt::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Takes the partition lock for this transaction, and bounds its waits for table locks.
async fn locked(tx: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *tx)
        .await?;
    if locked {
        sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
            .execute(&mut *tx)
            .await?;
    }
    Ok(locked)
}

/// A table lock not granted (`NOWAIT`, or not within [`LOCK_WAIT`]): SQLSTATE 55P03.
fn lock_not_had(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "55P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_follow_the_last_one_without_a_gap() {
        let now = t("2026-12-02T10:00:00Z");
        let day = Duration::from_secs(86_400);
        let ranges = ranges_to_make(Some(t("2026-12-03T00:00:00Z")), now, day);
        assert_eq!(
            ranges,
            [
                (t("2026-12-03T00:00:00Z"), t("2026-12-04T00:00:00Z")),
                (t("2026-12-04T00:00:00Z"), t("2026-12-05T00:00:00Z")),
                (t("2026-12-05T00:00:00Z"), t("2026-12-06T00:00:00Z")),
            ],
            "covered up to now + 3 days"
        );
    }

    #[test]
    fn with_no_range_ahead_the_first_starts_a_minute_from_now() {
        let now = t("2026-12-02T10:00:00.250Z");
        let ranges = ranges_to_make(None, now, Duration::from_secs(3600));
        assert_eq!(ranges[0].0, t("2026-12-02T10:01:01Z"));
        assert_eq!(ranges.len(), 3);
        // A last range that ended in the past (no instance ran for a while) is continued up
        // to where a fresh start would begin.
        let stale = ranges_to_make(
            Some(t("2026-11-30T00:00:00Z")),
            now,
            Duration::from_secs(3600),
        );
        assert_eq!(
            stale[0],
            (t("2026-11-30T00:00:00Z"), t("2026-12-02T10:01:01Z"))
        );
        assert_eq!(stale[1].0, t("2026-12-02T10:01:01Z"));
        assert_eq!(stale.len(), 4);
    }

    #[test]
    fn when_enough_is_made_nothing_more_is() {
        let now = t("2026-12-02T10:00:00Z");
        assert!(ranges_to_make(
            Some(t("2026-12-05T10:00:00Z")),
            now,
            Duration::from_secs(86_400)
        )
        .is_empty());
    }
}
