//! The child tasks of service processors: reporting their errors and
//! waiting for them.

use tokio::task::JoinHandle;

use crate::frame::FrameBody;
use crate::pipeline::{ProcessorContext, ProcessorError};

/// Pushes an error frame upstream, as the runner does for an error returned
/// from `process`: a service's child task reports its own.
pub(crate) async fn report(error: ProcessorError, ctx: &ProcessorContext) {
    ctx.push_upstream(FrameBody::Error(error.to_frame(ctx.name())))
        .await;
}

/// Waits for `task` (if any) to finish what it has; a task that panicked
/// is an error naming `what`. A cancelled task is not: it was stopped on
/// purpose.
pub(crate) async fn finish(task: Option<JoinHandle<()>>, what: &str) -> Result<(), ProcessorError> {
    match task {
        Some(task) => match task.await {
            Err(error) if error.is_panic() => {
                Err(ProcessorError::recoverable(format!("{what} failed")))
            }
            _ => Ok(()),
        },
        None => Ok(()),
    }
}
