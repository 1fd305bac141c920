//! Hearing of calls that reached their final status.

use async_trait::async_trait;

use crate::store::CallRecord;

/// Told once per call (per process that sees it settle) when an outbound
/// call reaches a final status: from a status callback, from its session
/// ending, or from a dial that failed. Campaigns free the call's slot and
/// retry or finish its number.
///
/// It may be told more than once for one call (two servers, a retried
/// callback): implementations are idempotent.
#[async_trait]
pub trait CallSettled: Send + Sync {
    /// `call` has reached `call.status`, a final status.
    async fn call_settled(&self, call: &CallRecord);
}
