//! What happens once when an outbound call reaches its final status,
//! whoever sees it first (a status callback, the dialler, the session's
//! end): the number's limit is let go if the call never reached anyone,
//! a call that never ran a session gets its after-call hooks (the
//! call-completed webhook, the evaluation job) from here, since no session
//! writer will run them, and every [`CallSettled`] listener is told.
//! Each step is idempotent, so two servers settling one call is harmless.
//!
//! A call whose server died mid-call started and was never ended: no
//! writer is left to end it or queue its after-call work. Its session's
//! lease, and the final status callback on whichever server it reaches
//! ([`super::LostSessions`]), note checks in the store; the agent
//! runtime's lost-session sweeper of any server
//! ([`LostSessionSweeper`](crate::agent::LostSessionSweeper)) then ends it,
//! as of the callback's time (or the lease's last renewal), and queues
//! that work, if nobody ended it meanwhile. The final status's grace is
//! at least the writers' `flush_timeout` (the pipeline file is refused
//! otherwise): a session alive after all, whose writer is retrying its
//! last turns through a store blip, ends the call itself, with its whole
//! transcript. A session that was alive after all and queues too doubles
//! nothing: the webhook's outbox keeps one delivery per event id, even
//! once delivered, and a second evaluation job finds the verdict stored.

use std::sync::Arc;

use crate::agent::AgentRuntime;
use crate::store::time::rfc3339;
use crate::store::{CallRecord, CallStatus};

use super::settled::CallSettled;

/// Settles outbound calls.
#[derive(Clone)]
pub struct Settlement {
    runtime: Arc<AgentRuntime>,
    listeners: Vec<Arc<dyn CallSettled>>,
    /// Whether a call that reached someone keeps its number's limit
    /// (`rate_limit_hours` > 0).
    keep_limit: bool,
}

impl std::fmt::Debug for Settlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settlement")
            .field("listeners", &self.listeners.len())
            .field("keep_limit", &self.keep_limit)
            .finish()
    }
}

impl Settlement {
    /// Settles through `runtime`'s store and hooks, telling `listeners`.
    pub fn new(
        runtime: Arc<AgentRuntime>,
        listeners: Vec<Arc<dyn CallSettled>>,
        keep_limit: bool,
    ) -> Self {
        Settlement {
            runtime,
            listeners,
            keep_limit,
        }
    }

    /// `call` (an outbound call) has reached a final status.
    pub async fn settle(&self, call: &CallRecord) {
        let Some(outbound) = &call.outbound else {
            return;
        };
        let reached = call.started_at.is_some() || outbound.answered_at.is_some();
        if !(reached && self.keep_limit) {
            let store = self.runtime.store();
            if let Err(err) = store
                .release_number(&outbound.phone_hash, &call.call_id)
                .await
            {
                tracing::warn!(call_id = call.call_id, phone_hash = outbound.phone_hash, error = %err, "cannot let the number go; its limit expires on its own");
            }
        }
        if call.started_at.is_none()
            && let Err(err) = self.runtime.queue_after_call(&call.call_id).await
        {
            tracing::warn!(call_id = call.call_id, error = %err, "cannot queue the after-call work of a call that never connected");
        }
        tracing::info!(
            call_id = call.call_id,
            phone_hash = outbound.phone_hash,
            status = call.status.as_str(),
            "outbound call settled"
        );
        for listener in &self.listeners {
            listener.call_settled(call).await;
        }
    }
}

/// Whether `call`, as a write at `at_ms` left it, was ended `status` by
/// that write (another's would carry its own time): so a call is settled
/// once, however many end it at once.
pub(super) fn ended_by(call: &CallRecord, status: CallStatus, at_ms: u64) -> bool {
    call.status == status && call.ended_at.as_deref() == Some(&*rfc3339(at_ms))
}
