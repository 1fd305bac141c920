//! The clock of the socket drivers: they read tokio's clock (paused in
//! tests) and hand the instant to their sans-IO state machines, which
//! never read one themselves.

use std::time::Instant;

/// Now, on tokio's clock.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Sleeps until `at`; for ever when there is no deadline, so that a
/// `select!` can wait on it beside other work.
///
/// # Cancel safety
/// Cancel safe.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
