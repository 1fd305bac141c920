//! Helpers for testing processors: frames in, frames out per direction.
//!
//! ```
//! # use voxpipe::testing::run_test;
//! # use voxpipe::frame::FrameBody;
//! # use voxpipe::pipeline::NamedProcessor;
//! # use voxpipe::processors::Passthrough;
//! # tokio_test_block_on(async {
//! let out = run_test(
//!     vec![NamedProcessor::new("p", Passthrough)],
//!     vec![FrameBody::Text("hi".into())],
//! )
//! .await;
//! assert_eq!(out.downstream_names(), ["Start", "Text", "End"]);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

pub mod fuzz;

use std::sync::{Arc, Mutex};

use crate::frame::{Direction, Frame, FrameBody};
use crate::pipeline::{
    NamedProcessor, Observer, PipelineOutcome, PipelineParams, PipelineTask, PushEvent,
    SessionClock,
};

/// What came out of a pipeline under test.
#[derive(Debug)]
pub struct TestOutput {
    /// Frames the last processor pushed downstream, in order.
    pub downstream: Vec<Frame>,
    /// Frames the first processor pushed upstream, in order.
    pub upstream: Vec<Frame>,
    /// How the pipeline ended.
    pub outcome: PipelineOutcome,
}

impl TestOutput {
    /// Names of the downstream frames, e.g. `["Start", "Text", "End"]`.
    pub fn downstream_names(&self) -> Vec<&'static str> {
        self.downstream.iter().map(Frame::name).collect()
    }

    /// Names of the upstream frames.
    pub fn upstream_names(&self) -> Vec<&'static str> {
        self.upstream.iter().map(Frame::name).collect()
    }
}

/// Records every frame pushed in a session, with who pushed it and which way.
#[derive(Debug, Default)]
pub struct RecordingObserver {
    pushes: Mutex<Vec<(String, Direction, Frame)>>,
}

impl RecordingObserver {
    /// A new, empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every push so far: (pusher, direction, frame).
    pub fn pushes(&self) -> Vec<(String, Direction, Frame)> {
        self.pushes.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Frames pushed by `from` in `direction`, in order.
    pub fn frames_from(&self, from: &str, direction: Direction) -> Vec<Frame> {
        self.pushes()
            .into_iter()
            .filter(|(f, d, _)| f == from && *d == direction)
            .map(|(_, _, frame)| frame)
            .collect()
    }
}

impl Observer for RecordingObserver {
    fn on_push(&self, event: &PushEvent<'_>) {
        if let Ok(mut pushes) = self.pushes.lock() {
            pushes.push((event.from.to_owned(), event.direction, event.frame.clone()));
        }
    }
}

/// Runs `processors` on an audio clock, queues `inputs` then `End`, and
/// returns what the ends of the chain pushed.
pub async fn run_test(processors: Vec<NamedProcessor>, inputs: Vec<FrameBody>) -> TestOutput {
    let first = processors
        .first()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let last = processors
        .last()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let recorder = RecordingObserver::new();
    let mut params = PipelineParams::new("test-session", 16_000);
    params.clock = SessionClock::audio();
    params.observers.push(recorder.clone());
    let task = PipelineTask::new(processors, params);
    let handle = task.handle();
    let running = tokio::spawn(task.run());
    for body in inputs {
        handle.queue_frame(body).await;
    }
    handle.end("end of test").await;
    let outcome = match running.await {
        Ok(outcome) => outcome,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    };
    TestOutput {
        downstream: recorder.frames_from(&last, Direction::Downstream),
        upstream: recorder.frames_from(&first, Direction::Upstream),
        outcome,
    }
}

/// A webhook's form fields as the handlers read them (Twilio's
/// `application/x-www-form-urlencoded` bodies), from `(name, value)` pairs.
pub fn form_fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
