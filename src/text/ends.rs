//! How the ends of text conversations are recorded when recording fails:
//! retried with backoff, then set aside; each attempt's claim and clock;
//! and what the sweeps did, counted.

use std::time::Duration;

use crate::metrics::prometheus::{Counter, Registry};
use crate::pipeline::new_session_id;
use crate::store::EndClaim;

/// Failed attempts after which an end is set aside (no longer tried):
/// with [`retry_delay`], about 35 minutes of trying.
pub const MAX_END_ATTEMPTS: u32 = 10;

/// The wait after an end's first failed attempt; it doubles with each
/// further one.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// The longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(15 * 60);

/// How long a sweep's claim on an end holds: far longer than recording
/// one takes (a call update and the after-call hooks queued), short
/// enough that a server dying midway delays the end little.
const END_CLAIM_TTL: Duration = Duration::from_secs(120);

/// The wait before the next attempt, after `attempts` failed ones.
pub(super) fn retry_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

/// The text ends' metrics, on the server's `/metrics`:
///
/// | metric | type | labels |
/// |---|---|---|
/// | `voxpipe_text_ends_total` | counter | `result` (`recorded`; `retrying`: an attempt failed, tried again later; `set_aside`: failed for the last time) |
#[derive(Debug)]
pub(super) struct EndMetrics {
    registry: Registry,
    pub(super) recorded: Counter,
    pub(super) retrying: Counter,
    pub(super) set_aside: Counter,
}

impl Default for EndMetrics {
    fn default() -> Self {
        let registry = Registry::new();
        let [recorded, retrying, set_aside] = ["recorded", "retrying", "set_aside"].map(|result| {
            registry.counter(
                "voxpipe_text_ends_total",
                "Attempts to record a text conversation's end, by result.",
                &[("result", result)],
            )
        });
        EndMetrics {
            registry,
            recorded,
            retrying,
            set_aside,
        }
    }
}

impl EndMetrics {
    /// The metrics in the Prometheus text format.
    pub(super) fn render(&self) -> String {
        self.registry.render()
    }
}

/// A claim for one attempt at recording an end: its owner is unique to
/// the attempt, so no other attempt (another server's sweep, or this
/// one's) takes it for its own.
pub(super) fn new_claim() -> EndClaim {
    EndClaim {
        owner: new_session_id(),
        ttl_ms: END_CLAIM_TTL.as_millis() as u64,
    }
}

/// A sweep's time, Unix ms, moving on with the clock from when it was
/// taken: what "now" is at any point of the sweep (the wall clock when
/// the sweep was given it; paused time moves it in tests).
#[derive(Debug, Clone, Copy)]
pub(super) struct Since {
    pub(super) ms: u64,
    taken: tokio::time::Instant,
}

impl Since {
    pub(super) fn new(ms: u64) -> Self {
        Since {
            ms,
            taken: tokio::time::Instant::now(),
        }
    }

    /// Unix ms now.
    pub(super) fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.taken.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.saturating_add(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_a_bound() {
        let waits: Vec<u64> = (1..=MAX_END_ATTEMPTS)
            .map(|n| retry_delay(n).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 900, 900]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
        assert_eq!(retry_delay(0), FIRST_RETRY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweeps_time_moves_on_with_the_clock() {
        let since = Since::new(1_000);
        assert_eq!(since.now_ms(), 1_000);
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(since.now_ms(), 91_000);
    }

    #[test]
    fn results_are_counted_apart() {
        let metrics = EndMetrics::default();
        metrics.recorded.inc();
        metrics.set_aside.inc_by(2);
        let text = metrics.render();
        assert!(
            text.contains("voxpipe_text_ends_total{result=\"recorded\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("voxpipe_text_ends_total{result=\"set_aside\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("voxpipe_text_ends_total{result=\"retrying\"} 0"),
            "{text}"
        );
    }
}
