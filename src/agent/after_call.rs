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
}
