//! Readiness checks: what the server needs to take sessions (a store's
//! connection, a model loaded), each asked on every `GET /health`.
//!
//! Checks run concurrently, each bounded by [`CHECK_TIMEOUT`], so that one
//! hung dependency cannot hang the health endpoint a load balancer polls.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// The longest a readiness check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Something the server needs to take sessions, checked on each
/// `GET /health` (a store's connection, a model loaded).
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// The check's name in the answer, e.g. `store`.
    fn name(&self) -> &str;

    /// `Ok` when ready; otherwise why not, for people.
    async fn check(&self) -> Result<(), String>;

    /// False for a check whose failure `/health` reports without making
    /// the server unready: calls still work without it (object storage:
    /// uploads wait until it is back).
    fn required(&self) -> bool {
        true
    }
}

/// Runs every check at once; each one's name, whether it is required, and
/// its result, in order.
pub(crate) async fn run_checks(
    checks: &[Arc<dyn ReadinessCheck>],
) -> Vec<(String, bool, Result<(), String>)> {
    futures_util::future::join_all(checks.iter().map(|check| async {
        let result = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
            Ok(result) => result,
            Err(_elapsed) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        (check.name().to_owned(), check.required(), result)
    }))
    .await
}
