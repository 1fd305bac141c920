//! What happens once when an outbound call reaches its final status,
//! whoever sees it first (a status callback, the dialler, the session's
//! end): the number's limit is let go if the call never reached anyone,
//! a call that never ran a session gets its after-call hooks (the
//! call-completed webhook, the evaluation job) from here, since no session
//! writer will run them, and every [`CallSettled`] listener is told.
//! Each step is idempotent, so two servers settling one call is harmless.
//!
//! A call whose server died mid-call started and was never ended: no
//! writer is left to end it or queue its after-call work. The final status
//! callback for it, on whichever server it reaches, notes a check in the
//! store, due `lost_session_grace_secs` later; the lost-session sweeper of
//! any server ([`super::LostSessions`]) then ends it here
//! ([`Settlement::end_lost_session`]), as of the callback's time, and
//! queues that work, if nobody ended it meanwhile. The grace is at least
//! the writers' `flush_timeout` (the pipeline file is refused otherwise):
//! a session alive after all, whose writer is retrying its last turns
//! through a store blip, ends the call itself, with its whole transcript.
//! A session that was alive after all and queues too doubles nothing: the
//! webhook's outbox keeps one delivery per event id, even once delivered,
//! and a second evaluation job finds the verdict stored.

use std::sync::Arc;

use crate::agent::AgentRuntime;
use crate::store::time::rfc3339;
use crate::store::{CallChange, CallRecord, CallStatus, LostSessionCheck, Store, StoreError};

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

    /// The store calls are kept in.
    pub(super) fn store(&self) -> &Arc<dyn Store> {
        self.runtime.store()
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

/// The end reason of a call ended by a status callback because its session
/// was lost (its server died mid-call).
pub(crate) const SESSION_LOST: &str = "session_lost";

impl Settlement {
    /// Ends `check`'s call (`session_lost`, as of its final status) if
    /// it is still not ended, and queues its after-call work (the
    /// evaluation job, the webhook); true when this ended it. A call ended
    /// meanwhile (its session was alive after all) is left alone. An error
    /// (the store, or the work not queued) leaves the check to be done
    /// again: the end is written once, and the write that ended it is
    /// found again (its time and reason are the check's), so the work is
    /// queued then.
    pub async fn end_lost_session(&self, check: &LostSessionCheck) -> Result<bool, StoreError> {
        let call_id = check.call_id.as_str();
        let change = CallChange::Ended {
            reason: SESSION_LOST.to_owned(),
            at_ms: check.at_ms,
        };
        let Some(call) = self.runtime.store().update_call(call_id, &change).await? else {
            return Ok(false);
        };
        let ended_here = call.ended_at.as_deref() == Some(&*rfc3339(check.at_ms))
            && call.end_reason.as_deref() == Some(SESSION_LOST);
        if !ended_here {
            return Ok(false);
        }
        tracing::warn!(
            call_id,
            "a started call was never ended (its server stopped mid-call): ended, and its after-call work queued"
        );
        self.runtime.queue_after_call(call_id).await?;
        Ok(true)
    }
}

/// Whether `call`, as a write at `at_ms` left it, was ended `status` by
/// that write (another's would carry its own time): so a call is settled
/// once, however many end it at once.
pub(super) fn ended_by(call: &CallRecord, status: CallStatus, at_ms: u64) -> bool {
    call.status == status && call.ended_at.as_deref() == Some(&*rfc3339(at_ms))
}
