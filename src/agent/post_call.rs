//! Post-call steps: work a worker does for a completed call after its
//! evaluation and before its call-completed webhook is queued (structured
//! extraction, uploads of the transcript and profile to object storage).
//!
//! # Design
//!
//! The steps run inside the evaluation job (`eval:jobs`), in the order the
//! runtime lists them, so they inherit that job's guarantees: at least once,
//! taken over from a crashed worker, acknowledged only after every step has
//! finished. A step must therefore be idempotent (a re-run finds its result
//! already recorded and does nothing new) and must record a permanent
//! failure itself (for instance "unextracted, because …") and return `Ok`;
//! an `Err` means "try the whole job again later" (the store or a service
//! is down), and the job stays pending until a later delivery succeeds or
//! the worker gives up on it; then [`PostCallStep::give_up`] lets the step
//! record that it has no result.

use std::fmt;

use async_trait::async_trait;

use crate::store::{CallRecord, StoreError};

/// A step could not finish now; the job is run again later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostCallError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A service the step needs is unavailable (a model, object storage).
    #[error("{step}: {reason}")]
    Unavailable {
        /// The step's name.
        step: &'static str,
        /// What failed.
        reason: String,
    },
}

/// One post-call step (see the module doc).
#[async_trait]
pub trait PostCallStep: Send + Sync + fmt::Debug {
    /// The step's name, for logs.
    fn name(&self) -> &'static str;

    /// Runs the step for the completed, evaluated `call` (re-read from the
    /// store just before, so it holds what earlier steps recorded).
    async fn run(&self, call: &CallRecord) -> Result<(), PostCallError>;

    /// The job is given up (delivered too many times): record, if the step
    /// keeps results, that it has none for `reason`. Nothing by default.
    async fn give_up(&self, call: &CallRecord, reason: &str) -> Result<(), PostCallError> {
        let _ = (call, reason);
        Ok(())
    }
}
