//! Small pieces every fault test uses: temporary directories, free ports, time bounds and
//! waiting on conditions.

use std::{
    future::Future,
    net::TcpListener,
    path::{Path, PathBuf},
    time::Duration,
};

/// A directory under the system's temporary directory, removed with everything in it when
/// dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "herald-faults-{what}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nothing listens on right now (the OS picks it; the listener is closed again).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Runs a test body, failing the test if it takes longer than `limit`. Everything the body
/// owns (processes, clusters) is dropped on the way out, and prints its logs.
pub async fn bounded<F: Future<Output = ()>>(limit: Duration, body: F) {
    let mut body = std::pin::pin!(body);
    if tokio::time::timeout(limit, body.as_mut()).await.is_err() {
        // Panicking while the body is still alive: its processes and cluster are dropped
        // while unwinding, and print their logs.
        panic!("the test did not finish within {limit:?}");
    }
}

#[path = "../common/wait.rs"]
mod wait;
pub use wait::wait_until;
