//! The after-call hooks every writer of a runtime runs, in order.

use std::sync::Arc;

use crate::agent::after_call::AfterCall;
use crate::agent::eval::QueueEvaluation;
use crate::agent::lost_sessions::ForgetLease;
use crate::agent::webhook::{QueueCallCompleted, WebhookSettings};

/// The after-call hooks of a runtime's writers (and of its turn spool's
/// replayer and its lost-session sweeper), in order. With an evaluation
/// job the webhook waits for its outcome and steps; without one it goes
/// as soon as the call is completed. Last, the session's lease goes, once
/// the rest is queued, whoever writes the end (the writer, or the turn
/// spool's replayer).
pub(crate) fn after_call_hooks(
    evaluates: bool,
    webhook: Option<&Arc<WebhookSettings>>,
) -> Vec<Arc<dyn AfterCall>> {
    let mut hooks: Vec<Arc<dyn AfterCall>> = match (evaluates, webhook) {
        (true, _) => vec![Arc::new(QueueEvaluation)],
        (false, Some(webhook)) => vec![Arc::new(QueueCallCompleted(Arc::clone(webhook)))],
        (false, None) => Vec::new(),
    };
    hooks.push(Arc::new(ForgetLease));
    hooks
}
