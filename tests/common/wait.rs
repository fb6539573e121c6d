//! Waiting on a condition with a deadline, shared by the test targets (`#[path]`-included:
//! each target is its own crate).

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// Polls `probe` until `done` accepts its value or `timeout` passes; `probe` runs at least
/// once. Returns whether `done` accepted a value.
pub async fn wait_until<T, F, Fut>(
    timeout: Duration,
    mut probe: F,
    mut done: impl FnMut(&T) -> bool,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if done(&probe().await) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
