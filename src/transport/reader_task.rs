//! The future that reads a live transport's far end for its input
//! processor, run in the session's task beside the processors.
//!
//! It starts with the session and pushes what it reads into the pipeline.
//! Once the session is ending it must push nothing more, but a transport
//! may still want it reading (Twilio's mark echoes for the last
//! utterance), so stopping the pushing and stopping the task are two
//! steps.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::AbortHandle;
use tracing::Instrument as _;

use crate::pipeline::ProcessorContext;

/// A reader task, shared by the input processor that starts it and
/// whoever stops it.
#[derive(Debug, Default)]
pub(crate) struct ReaderTask {
    /// The session is ending: no more frames into the pipeline.
    ending: AtomicBool,
    task: Mutex<Option<AbortHandle>>,
}

impl ReaderTask {
    /// Starts `reader` in the current span, in the session's task (see
    /// [`ProcessorContext::create_task`]).
    pub(crate) fn start(
        &self,
        ctx: &ProcessorContext,
        reader: impl Future<Output = ()> + Send + 'static,
    ) {
        let task = ctx.create_task(reader.in_current_span());
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Whether the session is ending: the reader pushes nothing more.
    pub(crate) fn ending(&self) -> bool {
        self.ending.load(Ordering::Acquire)
    }

    /// The session is ending: the reader may go on reading, pushing
    /// nothing.
    pub(crate) fn stop_pushing(&self) {
        self.ending.store(true, Ordering::Release);
    }

    /// Stops the reader (and its pushing) for good.
    pub(crate) fn stop(&self) {
        self.stop_pushing();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            task.abort();
        }
    }
}
