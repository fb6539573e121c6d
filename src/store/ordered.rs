//! Claiming the deliveries of ordered endpoints: one at a time per endpoint, in the order
//! they were written, across every instance.
//!
//! `herald.lease_ordered_heads` (a migration) does the work in two statements inside one
//! function: the first locks the ordered endpoints no other claimer is working on, the
//! second, with a snapshot taken after those locks were granted, leases an endpoint's head
//! only when none of its deliveries is in flight. Hence two instances never have two
//! deliveries of one ordered endpoint in flight. Called as one statement, so that nothing
//! is left open on a pooled connection if the caller gives up midway.

use std::time::Duration;

use uuid::Uuid;

use super::{
    claim::{jobs_of, jobs_of_leased, Claimed},
    Store,
};

/// The leased heads as jobs.
const CLAIM_ORDERED: &str = concat!(
    "WITH leased AS MATERIALIZED (\n    SELECT * FROM herald.lease_ordered_heads($1::text[], $2, $3, $4)",
    jobs_of_leased!("false")
);

impl Store {
    /// Leases the next delivery of each ordered endpoint that has none in flight (see the
    /// module's comment), under `token` (`traced`: as for [`Store::claim_with_token`]).
    pub async fn claim_ordered(
        &self,
        token: Uuid,
        owner: &str,
        lease: Duration,
        paused: &[String],
        traced: bool,
    ) -> Result<Claimed, sqlx::Error> {
        let rows = sqlx::query(CLAIM_ORDERED)
            .bind(paused)
            .bind(owner)
            .bind(token)
            .bind(lease.as_secs_f64())
            .fetch_all(self.pool())
            .await?;
        let mut claimed = jobs_of(rows, token, traced, &self.keyring)?;
        claimed.ordered = claimed.jobs.iter().map(|j| j.delivery_id).collect();
        Ok(claimed)
    }

    /// Whether any endpoint is ordered (the claimer asks now and then, so that a
    /// deployment without any pays nothing for them).
    pub async fn any_ordered_endpoint(&self) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM herald.endpoint WHERE ordered)")
            .fetch_one(self.pool())
            .await
    }
}
