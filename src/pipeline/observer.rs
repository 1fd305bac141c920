//! Observers see every frame pushed anywhere in a pipeline.
//!
//! They are not processors: they cannot change or hold up the flow. An
//! observer is called synchronously on the pushing task, so it must be cheap;
//! one that does I/O hands the event to its own task (as the events
//! writer does).

use std::time::Duration;

use crate::frame::{Direction, Frame};

use super::outcome::PipelineOutcome;

/// One frame pushed from one processor toward another.
#[derive(Debug)]
pub struct PushEvent<'a> {
    /// The pushing processor's name.
    pub from: &'a str,
    /// The frame.
    pub frame: &'a Frame,
    /// Which way it goes.
    pub direction: Direction,
    /// Session time of the push.
    pub at: Duration,
}

/// Sees every frame pushed in a session.
pub trait Observer: Send + Sync {
    /// Called for every push, on the pushing task.
    fn on_push(&self, event: &PushEvent<'_>);

    /// Called once when every processor has stopped, at session time `at`.
    fn on_pipeline_end(&self, _outcome: &PipelineOutcome, _at: Duration) {}
}
