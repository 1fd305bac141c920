//! Waiting on events, not the clock. Every fake and recorder here keeps a
//! `Notify` that it fires on each change; [`until_notified`] re-checks a
//! condition at each of those, so a test wakes the moment the thing it
//! waits for happens. The time limit is only a guard against a hang.
//!
//! [`eventually`] is the exception: a bounded poll, kept for effects of a
//! child process (the `voxpipe` binary), which has no notification to give,
//! and for the server's gauges, which only its `/metrics` shows.

use std::time::Duration;

use tokio::sync::Notify;

/// Waits until `check` gives a value, re-checking each time `changed` is
/// notified (and once at the start); `None` if `limit` passes first.
pub async fn until_notified<T>(
    changed: &Notify,
    limit: Duration,
    check: impl FnMut() -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(limit, notified_until(changed, check))
        .await
        .ok()
}

/// [`until_notified`] with no time limit (no timer either, so paused time
/// never jumps ahead to one).
pub async fn notified_until<T>(changed: &Notify, mut check: impl FnMut() -> Option<T>) -> T {
    loop {
        // Registered before the check: a change between the check and the
        // wait still wakes it.
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(found) = check() {
            return found;
        }
        notified.await;
    }
}

/// Waits until `check` holds, polling every 10 ms, for at most `limit`:
/// only for state a child process changes, or a gauge of the server's,
/// where no notification exists.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
