//! [`AfterCall`]: work queued once a call is completed and written.

use async_trait::async_trait;

use crate::store::{Store, StoreError};

/// An after-call hook: work queued for other workers once a call is
/// completed and written (a session-end evaluation job, the call-completed
/// webhook).
///
/// It runs as the writer's last steps, in order, so it is retried with
/// backoff while the store is down; when the flush timeout ends it is left
/// in the turn spool, whose replayer runs it once the store is back (or,
/// without a spool, given up and logged). It may run more than once: it
/// must be idempotent, and should only queue (durably, in the store), never
/// do the work itself.
#[async_trait]
pub trait AfterCall: Send + Sync + std::fmt::Debug {
    /// Queues the work for the completed call `call_id`.
    async fn queue(&self, store: &dyn Store, call_id: &str) -> Result<(), StoreError>;

    /// The same, run by the call's writer (or by the turn spool's replayer
    /// for it) whose hold on the call's session lease is `lease_holder`
    /// (`None`: it kept none, or an older build spooled its steps). Only
    /// the lease's own step, which lets go of that writer's hold alone,
    /// tells one writer of a call from another: the rest queue as
    /// [`queue`](Self::queue) does.
    async fn queue_for_writer(
        &self,
        store: &dyn Store,
        call_id: &str,
        lease_holder: Option<&str>,
    ) -> Result<(), StoreError> {
        let _ = lease_holder;
        self.queue(store, call_id).await
    }
}
