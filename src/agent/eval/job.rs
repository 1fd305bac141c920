//! An evaluation job: what goes on the queue when a session ends.

use serde::{Deserialize, Serialize};

use crate::agent::writer::AfterCall;
use crate::store::codec::encode;
use crate::store::time::{rfc3339, unix_ms};
use crate::store::{Store, StoreError};

/// One queued evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalJob {
    /// The call to judge.
    pub call_id: String,
    /// When it was queued (RFC 3339).
    pub queued_at: String,
}

/// The after-call hook that queues a session-end evaluation job.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueEvaluation;

#[async_trait::async_trait]
impl AfterCall for QueueEvaluation {
    async fn queue(&self, store: &dyn Store, call_id: &str) -> Result<(), StoreError> {
        queue_evaluation(store, call_id).await
    }
}

/// Queues the evaluation of `call_id`. Queuing twice (a retry after a lost
/// reply) is harmless: the second run finds the stored verdict and only
/// repeats the idempotent writes.
pub async fn queue_evaluation(store: &dyn Store, call_id: &str) -> Result<(), StoreError> {
    let job = EvalJob {
        call_id: call_id.to_owned(),
        queued_at: rfc3339(unix_ms()),
    };
    let payload = encode("eval job", &job)?;
    store.push_job(&payload).await.map(|_| ())
}
