//! [`LostSessions`]: outbound calls whose final status came while nobody
//! ended them, with no session for them on the server that heard it
//! (their server may have died mid-call).
//!
//! The status callback notes a check in the store, due
//! `lost_session_grace_secs` after it, through the agent runtime's
//! [`LostSessionSweeper`], whose sweep (every server's, and every
//! worker's) ends the call then, as of the callback, unless someone ended
//! it meanwhile. Every voice session also keeps a lease of its own (see
//! `agent::lost_sessions`); this check covers a call whose status callback
//! comes before its lease falls due, and one whose session never ran here.

use std::sync::Arc;
use std::time::Duration;

use crate::agent::LostSessionSweeper;
use crate::store::{LostSessionCheck, StoreError};

/// Notes outbound calls' lost sessions.
#[derive(Debug, Clone)]
pub struct LostSessions {
    sweeper: Arc<LostSessionSweeper>,
    grace: Duration,
}

impl LostSessions {
    /// Notes checks for `sweeper`, due `grace` after their final status
    /// (`[outbound] lost_session_grace_secs`).
    pub fn new(sweeper: Arc<LostSessionSweeper>, grace: Duration) -> Self {
        LostSessions { sweeper, grace }
    }

    /// How long after its final status a lost session is ended.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Notes that `call_id` started, reached its final status at `at_ms`,
    /// and nobody ended it: unless someone does within the grace, a
    /// sweeper ends it then, as of `at_ms`.
    pub async fn note(&self, call_id: &str, at_ms: u64) -> Result<(), StoreError> {
        let grace_ms = u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX);
        let check = LostSessionCheck::final_status(call_id, at_ms);
        self.sweeper
            .note(&check, at_ms.saturating_add(grace_ms))
            .await
    }

    /// Ends the calls of the checks due at `now_ms` (of every source),
    /// as a sweep does: how many it ended.
    pub async fn end_due(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.sweeper.end_due(now_ms).await
    }
}
