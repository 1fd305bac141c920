//! Reporting the errors of service processors' child tasks (the tasks
//! themselves are `pipeline::ChildTask`s).

use crate::frame::FrameBody;
use crate::pipeline::{ProcessorContext, ProcessorError};

/// Pushes an error frame upstream, as the runner does for an error returned
/// from `process`: a service's child task reports its own.
pub(crate) async fn report(error: ProcessorError, ctx: &ProcessorContext) {
    ctx.push_upstream(FrameBody::Error(error.to_frame(ctx.name())))
        .await;
}
