//! [`Restarts`]: when a server that failed to start or connect may be
//! tried again. Pure: the caller passes the time in.
//!
//! Each failure in a row doubles the wait, from 1 s to 30 s (with jitter,
//! so the processes of a fleet do not all respawn a server together); a
//! success forgets them. Without it every tool call and every session
//! start would spawn a broken server again, each costing its connect
//! timeout.

use std::time::Duration;

use tokio::time::Instant;

use crate::services::RetryPolicy;

const POLICY: RetryPolicy = RetryPolicy {
    max_retries: u32::MAX,
    initial: Duration::from_secs(1),
    max: Duration::from_secs(30),
    max_retry_after: Duration::ZERO,
};

/// The failures in a row of one server, and when it may be tried again.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    failures: u32,
    retry_at: Option<Instant>,
}

impl Restarts {
    /// `Err(wait)` while the server may not be tried yet.
    pub(crate) fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.retry_at {
            Some(at) if now < at => Err(at - now),
            _ => Ok(()),
        }
    }

    /// An attempt failed at `now`: the wait before the next one.
    pub(crate) fn handle_failure(&mut self, now: Instant, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = POLICY.backoff(self.failures, jitter);
        self.retry_at = Some(now + wait);
        wait
    }

    /// An attempt succeeded: the next failure waits the least again.
    pub(crate) fn handle_success(&mut self) {
        *self = Restarts::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_double_the_wait_up_to_the_cap_and_a_success_resets() {
        let start = Instant::now();
        let mut restarts = Restarts::default();
        assert_eq!(restarts.check(start), Ok(()));
        let waits: Vec<Duration> = (0..8)
            .map(|_| restarts.handle_failure(start, 1.0))
            .collect();
        assert_eq!(
            waits.iter().map(Duration::as_secs).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 30, 30, 30]
        );
        let at = start + Duration::from_secs(10);
        assert_eq!(restarts.check(at), Err(Duration::from_secs(20)));
        assert_eq!(restarts.check(start + Duration::from_secs(30)), Ok(()));
        restarts.handle_success();
        assert_eq!(restarts.check(start), Ok(()));
        assert_eq!(
            restarts.handle_failure(start, 0.0),
            Duration::from_millis(500)
        );
    }
}
