//! What both store backends are configured with.

use std::time::Duration;

use super::keys::Keys;

/// Key names and lifetimes.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Key names under the configured prefix.
    pub keys: Keys,
    /// TTL of `call:{id}` and `call:{id}:interactions`, refreshed on each
    /// write (48 h by default).
    pub call_ttl: Duration,
    /// TTL of `session:{id}:tactics` (24 h).
    pub session_tactics_ttl: Duration,
    /// TTL of a pending webhook delivery (7 days).
    pub outbox_ttl: Duration,
    /// How long one Redis operation may take before it counts as failed
    /// (and is retried by the caller, safely: every write is idempotent).
    pub op_timeout: Duration,
    /// Replicas that must hold a turn before its write counts as done
    /// (Redis `WAIT`): with 1, a master that dies right after a turn's
    /// write loses nothing when its replica takes over. 0: not waited for.
    pub wait_replicas: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            keys: Keys::default(),
            call_ttl: Duration::from_secs(48 * 3600),
            session_tactics_ttl: Duration::from_secs(24 * 3600),
            outbox_ttl: Duration::from_secs(7 * 24 * 3600),
            op_timeout: Duration::from_secs(2),
            wait_replicas: 0,
        }
    }
}

/// A duration in whole milliseconds, at least 1 (Redis rejects a 0 TTL)
/// and at most [`MAX_MILLIS`].
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(MAX_MILLIS)
        .clamp(1, MAX_MILLIS)
}

/// The longest TTL or wait a store is given, 2^62 ms (146 million years):
/// Redis rejects an expiry whose absolute time does not fit in an i64 of
/// milliseconds, and the embedded store adds TTLs to the clock in a u64; a
/// TOML `*_ttl_secs` beyond it means "forever", not a rejected write (a
/// lost turn) or an overflow.
const MAX_MILLIS: u64 = 1 << 62;
