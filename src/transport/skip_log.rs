//! What a transport's reader skipped, logged so that a far end sending a
//! flood of bad input cannot flood the logs.

use std::fmt;

use super::stats::TransportStats;

/// Logs skipped input with its reason and counts it in the transport's
/// stats: the first few at `warn`, the rest at `debug`.
#[derive(Debug, Default)]
pub(crate) struct SkipLog {
    count: u64,
}

impl SkipLog {
    const AT_WARN: u64 = 10;

    /// One piece of input was skipped; `kind` is its stable label (for
    /// metrics), `reason` says why.
    pub(crate) fn skipped(
        &mut self,
        kind: &'static str,
        reason: &dyn fmt::Display,
        stats: &dyn TransportStats,
    ) {
        self.count += 1;
        stats.input_error(kind);
        if self.count <= Self::AT_WARN {
            tracing::warn!(kind, %reason, "input skipped");
        } else {
            tracing::debug!(kind, %reason, "input skipped");
        }
        if self.count == Self::AT_WARN {
            tracing::warn!("further skipped input is logged at debug level");
        }
    }

    /// How much input was skipped so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}
