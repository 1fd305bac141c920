//! [`SessionMemory`]: one session's view of the context store.

use std::sync::Arc;
use std::time::Duration;

use super::call::Segment;
use super::interaction::CompletedTurn;
use super::prompt::SessionPrompt;
use super::writer::{TurnRecorder, WriteReport, WriterDone};

/// A session's conversation memory: its system prompt as read at session
/// start, and the recorder that persists its turns. Cheap to clone.
///
/// [`run_session`](crate::session::run_session) marks the call active when
/// the pipeline starts and completed when it ends, whatever the reason;
/// code that runs a pipeline itself calls [`SessionMemory::started`] and
/// [`SessionMemory::ended`]. (Not an observer: observers are called on every
/// push, and the status needs only the two ends.)
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

    /// The pipeline started: the call becomes active.
    pub fn started(&self) {
        self.recorder.started();
    }

    /// The session ended for `reason`: the call becomes completed and is
    /// queued for evaluation.
    pub fn ended(&self, reason: &str) {
        self.recorder.ended(reason);
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
