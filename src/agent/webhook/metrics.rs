//! The webhook's metrics, exposed on the server's `/metrics` of the
//! process delivering the outbox:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `voxpipe_webhook_deliveries_total` | counter | `result` (`delivered`, `retrying`: failed and rescheduled, `dead`: failed for the last time) |
//! | `voxpipe_webhook_outbox_size` | gauge | deliveries waiting (from the store: the same on every server) |
//! | `voxpipe_webhook_dead_letters` | gauge | dead letters kept (from the store) |
//!
//! The sizes are read from the store at most every [`SIZES_PERIOD`] by a
//! running deliverer.

use std::time::Duration;

use crate::metrics::prometheus::{Counter, Gauge, Registry};

/// How often a running deliverer reads the outbox's sizes.
pub const SIZES_PERIOD: Duration = Duration::from_secs(15);

/// The webhook's metrics, in a registry of their own. Shared by every
/// deliverer of a runtime.
#[derive(Debug)]
pub struct WebhookMetrics {
    registry: Registry,
    delivered: Counter,
    retrying: Counter,
    dead: Counter,
    outbox: Gauge,
    dead_letters: Gauge,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        let registry = Registry::new();
        let [delivered, retrying, dead] = ["delivered", "retrying", "dead"].map(|result| {
            registry.counter(
                "voxpipe_webhook_deliveries_total",
                "Webhook delivery attempts, by result.",
                &[("result", result)],
            )
        });
        let outbox = registry.gauge(
            "voxpipe_webhook_outbox_size",
            "Webhook deliveries waiting in the outbox.",
            &[],
        );
        let dead_letters = registry.gauge(
            "voxpipe_webhook_dead_letters",
            "Webhook deliveries that ran out of attempts, kept as dead letters.",
            &[],
        );
        WebhookMetrics {
            registry,
            delivered,
            retrying,
            dead,
            outbox,
            dead_letters,
        }
    }
}

impl WebhookMetrics {
    /// Counts a pass's attempts: `delivered`, `retrying`, `dead`.
    pub(super) fn attempted(&self, delivered: usize, retrying: usize, dead: usize) {
        self.delivered.inc_by(delivered as u64);
        self.retrying.inc_by(retrying as u64);
        self.dead.inc_by(dead as u64);
    }

    /// The outbox's and dead letters' sizes, as last read.
    pub(super) fn sizes(&self, outbox: u64, dead_letters: u64) {
        self.outbox.set(i64::try_from(outbox).unwrap_or(i64::MAX));
        self.dead_letters
            .set(i64::try_from(dead_letters).unwrap_or(i64::MAX));
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        self.registry.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_by_result_and_sizes_shown() {
        let metrics = WebhookMetrics::default();
        let before = metrics.render();
        assert!(
            before.contains("voxpipe_webhook_deliveries_total{result=\"dead\"} 0"),
            "{before}"
        );
        metrics.attempted(2, 1, 1);
        metrics.sizes(7, 3);
        let after = metrics.render();
        for line in [
            "voxpipe_webhook_deliveries_total{result=\"delivered\"} 2",
            "voxpipe_webhook_deliveries_total{result=\"retrying\"} 1",
            "voxpipe_webhook_deliveries_total{result=\"dead\"} 1",
            "voxpipe_webhook_outbox_size 7",
            "voxpipe_webhook_dead_letters 3",
        ] {
            assert!(after.contains(line), "{line} in {after}");
        }
    }
}
