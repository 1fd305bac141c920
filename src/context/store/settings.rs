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
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            keys: Keys::default(),
            call_ttl: Duration::from_secs(48 * 3600),
            session_tactics_ttl: Duration::from_secs(24 * 3600),
            outbox_ttl: Duration::from_secs(7 * 24 * 3600),
            op_timeout: Duration::from_secs(2),
        }
    }
}

/// A duration in whole milliseconds, at least 1 (Redis rejects a 0 TTL).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
