//! [`SessionMemory`]: one session's view of the context store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::call::Segment;
use super::prompt::SessionPrompt;
use super::turn::CompletedTurn;
use super::writer::{TurnRecorder, WriteReport, WriterDone};
use crate::frame::FrameBody;
use crate::pipeline::{Observer, PipelineOutcome, PushEvent};

/// A session's conversation memory: its system prompt as read at session
/// start, and the recorder that persists its turns. Cheap to clone.
///
/// Add [`SessionMemory::observer`] to the session's observers: it marks the
/// call active when the pipeline starts and completed when it ends,
/// whatever the reason.
#[derive(Clone)]
pub struct SessionMemory {
    recorder: TurnRecorder,
    prompt: Arc<SessionPrompt>,
    segment: Arc<Segment>,
    done: WriterDone,
}

impl std::fmt::Debug for SessionMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionMemory")
            .field("call_id", &self.recorder.call_id())
            .field("prompt_source", &self.prompt.source())
            .field("segment", &self.segment)
            .finish_non_exhaustive()
    }
}

impl SessionMemory {
    pub(crate) fn new(
        recorder: TurnRecorder,
        prompt: SessionPrompt,
        segment: Segment,
        done: WriterDone,
    ) -> Self {
        SessionMemory {
            recorder,
            prompt: Arc::new(prompt),
            segment: Arc::new(segment),
            done,
        }
    }

    /// The call's id.
    pub fn call_id(&self) -> &str {
        self.recorder.call_id()
    }

    /// The system prompt for this session: the stored segment prompt (or
    /// `pipeline_prompt`, the TOML's), then the tactics.
    pub fn system_prompt(&self, pipeline_prompt: &str) -> String {
        self.prompt.render(pipeline_prompt)
    }

    /// What the prompt was read from.
    pub fn prompt(&self) -> &SessionPrompt {
        &self.prompt
    }

    /// The call's segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Persists a completed turn; returns at once.
    pub fn record_turn(&self, turn: CompletedTurn) {
        self.recorder.record(turn);
    }

    /// The recorder, for the aggregators.
    pub fn recorder(&self) -> &TurnRecorder {
        &self.recorder
    }

    /// The observer that moves the call through pending, active, completed.
    pub fn observer(&self) -> Arc<dyn Observer> {
        Arc::new(StatusObserver {
            recorder: self.recorder.clone(),
            started: AtomicBool::new(false),
        })
    }

    /// Waits until the writer has stopped (everything written, or given up
    /// after `flush_timeout`), at most `limit`.
    pub async fn finished(&self, limit: Duration) -> Option<WriteReport> {
        let mut done = self.done.clone();
        let stopped = tokio::time::timeout(limit, done.wait_for(|s| s.done.is_some())).await;
        match stopped {
            Ok(Ok(status)) => status.done.clone(),
            _ => None,
        }
    }

    /// Follows the writer: turns written so far, and its report once it
    /// has stopped.
    pub fn progress(&self) -> WriterDone {
        self.done.clone()
    }
}

struct StatusObserver {
    recorder: TurnRecorder,
    started: AtomicBool,
}

impl Observer for StatusObserver {
    fn on_push(&self, event: &PushEvent<'_>) {
        if matches!(event.frame.body, FrameBody::Start(_))
            && !self.started.swap(true, Ordering::Relaxed)
        {
            self.recorder.started();
        }
    }

    fn on_pipeline_end(&self, outcome: &PipelineOutcome, _at: Duration) {
        self.recorder.ended(&outcome.end_reason);
    }
}
