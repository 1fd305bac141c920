//! [`ProcessorContext`]: how a processor pushes frames and reads the clock.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::frame::{Direction, ErrorFrame, Frame, FrameBody};
use crate::metrics::LatencyHistogram;

use super::clock::SessionClock;
use super::link::{InFlight, Mailbox, TrySendError};
use super::local_tasks::LocalTasks;
use super::observer::{Observer, PushEvent};
use super::resources::SessionResources;

/// State shared by every processor of one running pipeline.
pub(crate) struct Shared {
    pub(crate) session_id: Arc<str>,
    pub(crate) clock: SessionClock,
    pub(crate) observers: Vec<Arc<dyn Observer>>,
    /// Tracked on the audio clock only.
    pub(crate) in_flight: Option<Arc<InFlight>>,
    /// Every inbox, head first; set once when the pipeline is built.
    pub(crate) mailboxes: OnceLock<Vec<Mailbox>>,
    /// Shared with the branches of parallel processors.
    pub(crate) outcome: Arc<Mutex<Outcome>>,
    pub(crate) resources: SessionResources,
    /// Futures the processors start beside themselves.
    pub(crate) local_tasks: LocalTasks,
}

/// What the pipeline learns about how it ended, filled in as it runs.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) end_reason: Option<String>,
    /// The first end asked for (`request_end`): its reason and session time.
    pub(crate) end_requested: Option<(String, Duration)>,
    pub(crate) cancelled: bool,
    pub(crate) fatal_error: Option<ErrorFrame>,
    /// Per processor: its name, the frames it processed, and the time of
    /// a sample of its `process` calls.
    pub(crate) processing: Vec<(Arc<str>, u64, LatencyHistogram)>,
    pub(crate) transit: LatencyHistogram,
}

impl Shared {
    pub(crate) fn outcome(&self) -> std::sync::MutexGuard<'_, Outcome> {
        // A panic while holding this lock cannot leave it half-written in a
        // way that matters: every field is replaced or appended whole.
        self.outcome.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one Cancel to every processor at once; the first reason wins.
    pub(crate) fn cancel_all(&self, reason: &str) {
        {
            let mut outcome = self.outcome();
            outcome.cancelled = true;
            outcome.end_reason.get_or_insert_with(|| reason.to_owned());
        }
        let frame = Frame::new(FrameBody::Cancel {
            reason: reason.to_owned(),
        });
        self.notify_observers("pipeline", &frame, Direction::Downstream);
        for mailbox in self.mailboxes.get().into_iter().flatten() {
            // A processor that has stopped needs no Cancel.
            let _stopped = mailbox.send_system(frame.clone(), Direction::Downstream);
        }
    }

    /// What a session's sink does with a frame that reaches it: inbound
    /// audio has crossed the chain, and its transit time is recorded.
    pub(crate) fn swallow(&self, frame: &Frame) {
        if let FrameBody::InputAudio(_) = frame.body {
            self.outcome().transit.record(frame.created.elapsed());
        }
    }

    pub(crate) fn notify_observers(&self, from: &str, frame: &Frame, direction: Direction) {
        if self.observers.is_empty() {
            return;
        }
        let event = PushEvent {
            from,
            frame,
            direction,
            at: self.clock.now(),
        };
        for observer in &self.observers {
            observer.on_push(&event);
        }
    }
}

/// A processor's handle on its pipeline: pushes frames to its neighbours and
/// reads the session clock.
///
/// Cheap to clone: a child task takes a clone to push results as they come.
/// A frame pushed toward a processor that has already stopped (the session is
/// shutting down) is dropped; observers still see it. What the last
/// processor pushes downstream is swallowed as the sink would (see
/// [`only_swallowed`]), whether or not the sink has stopped.
#[derive(Clone)]
pub struct ProcessorContext {
    name: Arc<str>,
    upstream: Option<Mailbox>,
    downstream: Option<Mailbox>,
    /// `downstream` is a session's sink (see [`only_swallowed`]).
    before_sink: bool,
    shared: Arc<Shared>,
}

impl ProcessorContext {
    pub(crate) fn new(
        name: Arc<str>,
        upstream: Option<Mailbox>,
        downstream: Option<Mailbox>,
        shared: Arc<Shared>,
    ) -> Self {
        ProcessorContext {
            name,
            upstream,
            downstream,
            before_sink: false,
            shared,
        }
    }

    /// Marks `downstream` as a session's sink: what it only swallows is
    /// swallowed here, without a hop.
    pub(crate) fn before_sink(mut self) -> Self {
        self.before_sink = true;
        self
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Pushes a frame to the neighbour in `direction`, waiting for room if
    /// the neighbour's bounded lane is full.
    ///
    /// # Cancel safety
    /// If cancelled while waiting for room, the frame is dropped.
    pub async fn push(&self, frame: impl Into<Frame>, direction: Direction) {
        let frame = frame.into();
        self.shared.notify_observers(&self.name, &frame, direction);
        if self.before_sink && direction == Direction::Downstream && only_swallowed(&frame.body) {
            self.shared.swallow(&frame);
            return;
        }
        let target = match direction {
            Direction::Downstream => &self.downstream,
            Direction::Upstream => &self.upstream,
        };
        let Some(mailbox) = target else {
            return;
        };
        // The common case queues without an await; only a push that must
        // wait for room awaits (a boxed future), which keeps the future of
        // every `process` call small.
        let refused = match mailbox.try_send(frame, direction) {
            Ok(()) => return,
            Err(TrySendError::Closed(frame)) => frame,
            Err(TrySendError::Full(item)) => match mailbox.send_when_room(item).await {
                Ok(()) => return,
                Err(frame) => frame,
            },
        };
        tracing::trace!(
            processor = %self.name,
            frame = refused.name(),
            "frame dropped: the next processor has stopped"
        );
    }

    /// Pushes a frame downstream.
    pub async fn push_downstream(&self, frame: impl Into<Frame>) {
        self.push(frame, Direction::Downstream).await;
    }

    /// Pushes a frame upstream.
    pub async fn push_upstream(&self, frame: impl Into<Frame>) {
        self.push(frame, Direction::Upstream).await;
    }

    /// Pushes the same frame (one id, one event) both ways: upstream first.
    pub async fn push_both_ways(&self, frame: impl Into<Frame>) {
        let frame = frame.into();
        self.push(frame.clone(), Direction::Upstream).await;
        self.push(frame, Direction::Downstream).await;
    }

    /// Asks the pipeline head for an interruption of the whole chain.
    pub async fn request_interruption(&self) {
        self.push_upstream(FrameBody::InterruptionRequest).await;
    }

    /// Asks the pipeline head to end the session gracefully.
    pub async fn request_end(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.shared
            .outcome()
            .end_requested
            .get_or_insert_with(|| (reason.clone(), self.now()));
        self.push_upstream(FrameBody::EndRequest { reason }).await;
    }

    /// The first end a processor asked for ([`Self::request_end`]): its
    /// reason and the session time it was asked at, before the `End` it
    /// becomes has crossed the chain.
    pub fn end_requested(&self) -> Option<(String, Duration)> {
        self.shared.outcome().end_requested.clone()
    }

    /// Why the session is ending, once its `End` or `Cancel` has come
    /// (`hangup`, `end_call`, ...): what the transport or the processor
    /// that asked for the end said.
    pub fn end_reason(&self) -> Option<String> {
        self.shared.outcome().end_reason.clone()
    }

    /// This processor's name in the pipeline, e.g. `vad` or `gain#2`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The session's id.
    pub fn session_id(&self) -> &str {
        &self.shared.session_id
    }

    /// Time since the session started, on the session clock.
    pub fn now(&self) -> Duration {
        self.shared.clock.now()
    }

    /// The session clock.
    pub fn clock(&self) -> &SessionClock {
        &self.shared.clock
    }

    /// Starts `task` beside the processors, in the session's own task (see
    /// `local_tasks`): a transport's reader, the output's pacing timer.
    /// It must not block. It stops when the handle is aborted or when every
    /// processor has stopped. (Pipecat's `create_task`.)
    pub(crate) fn create_task(
        &self,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> futures_util::future::AbortHandle {
        self.shared.local_tasks.start(task)
    }

    /// Objects the session's processors share: those the session put in
    /// before it started (what a transport's ends find here, since no
    /// factory builds them), and those its processors made.
    pub fn resources(&self) -> &SessionResources {
        &self.shared.resources
    }

    /// Waits until no frame is queued or being processed anywhere in the
    /// pipeline. Child tasks do not count until they push. A file input uses
    /// this to run faster than real time while staying in lockstep with the
    /// audio clock. On a wall clock nothing is tracked and this returns at
    /// once.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_idle(&self) {
        if let Some(in_flight) = &self.shared.in_flight {
            in_flight.wait_idle().await;
        }
    }
}

/// Whether a session's sink does nothing with `body` but
/// [`Shared::swallow`] it: everything but the frames that start and stop
/// its task. The last processor's context swallows those itself instead of
/// queueing them for the sink: a frame's hop into the sink's inbox and a
/// wake-up of its future were a quarter of a Twilio call's hops, for
/// nothing.
fn only_swallowed(body: &FrameBody) -> bool {
    !matches!(
        body,
        FrameBody::Start(_) | FrameBody::End { .. } | FrameBody::Cancel { .. }
    )
}
