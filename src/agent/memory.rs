//! [`SessionMemory`]: one session's view of the context store.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::prompt::SessionPrompt;
use super::writer::{TurnRecorder, WriteReport, WriterDone};
use crate::conversation::{Role, Turn};
use crate::frame::FrameBody;
use crate::metrics::TurnLatencyTracker;
use crate::pipeline::{Observer, PushEvent, SystemPromptSource};
use crate::store::{CallRecording, Segment};

/// A session's conversation memory: its system prompt as read at session
/// start, and the recorder that persists its turns. Cheap to clone.
///
/// A session run with a memory adds its
/// [observer](SessionMemory::observer), which hands every
/// [`TurnCompleted`](FrameBody::TurnCompleted) frame to the writer, and
/// marks the call active when the pipeline starts and completed when it
/// ends, whatever the reason; code that runs a pipeline itself does both
/// ([`SessionMemory::started`], [`SessionMemory::ended`]).
#[derive(Clone)]
pub struct SessionMemory {
    recorder: TurnRecorder,
    prompt: Arc<SessionPrompt>,
    segment: Arc<Segment>,
    done: WriterDone,
    /// Wakes the recording uploader when this call's recording is finished.
    uploads: Option<Arc<Notify>>,
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
        uploads: Option<Arc<Notify>>,
    ) -> Self {
        SessionMemory {
            recorder,
            prompt: Arc::new(prompt),
            segment: Arc::new(segment),
            done,
            uploads,
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

    /// The prompt, for the session's LLM
    /// ([`SessionSetup::system_prompt`](crate::pipeline::SessionSetup::system_prompt)).
    pub fn prompt_source(&self) -> Arc<dyn SystemPromptSource> {
        Arc::clone(&self.prompt) as Arc<dyn SystemPromptSource>
    }

    /// The call's segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Persists a completed turn; returns at once.
    pub fn record_turn(&self, turn: Arc<Turn>) {
        self.recorder.record(turn);
    }

    /// The observer that persists the turns the aggregators announce.
    pub fn observer(&self) -> Arc<dyn Observer> {
        Arc::new(TurnObserver {
            recorder: self.recorder.clone(),
            state: Mutex::default(),
        })
    }

    /// The pipeline started: the call becomes active.
    pub fn started(&self) {
        self.recorder.started();
    }

    /// The call's recording is finished (or failed); call before
    /// [`Self::ended`], so the completed call and its after-call hooks see
    /// it.
    pub fn recorded(&self, recording: CallRecording) {
        self.recorder.recorded(recording);
        // A finished file goes up now rather than at the uploader's next
        // periodic scan.
        if let Some(uploads) = &self.uploads {
            uploads.notify_one();
        }
    }

    /// The session ended for `reason`: the call becomes completed, then the
    /// runtime's after-call hooks run (its evaluation, its webhook).
    pub fn ended(&self, reason: &str) {
        self.recorder.ended(reason);
    }

    /// The session stopped, the call goes on: a text conversation between
    /// two messages. Its turns are written and the writer stops; the call
    /// stays active, and the next message's session continues it.
    pub fn detached(&self) {
        self.recorder.detached();
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

/// Records each turn once: a `TurnCompleted` frame is pushed again by every
/// processor that forwards it, and its index tells the repeats apart. It
/// also follows the turns' latency (as the `turn_latency` event does) and
/// stores each measured voice-to-voice latency with the assistant turn that
/// completes next: the one whose audio ended the measure.
struct TurnObserver {
    recorder: TurnRecorder,
    state: Mutex<ObservedTurns>,
}

#[derive(Default)]
struct ObservedTurns {
    recorded: BTreeSet<u64>,
    latency: TurnLatencyTracker,
    /// A latency measured, not yet stored with a turn.
    measured_ms: Option<u64>,
}

impl Observer for TurnObserver {
    fn on_push(&self, event: &PushEvent<'_>) {
        // The caller's audio, most of every hop, matters to neither the
        // latency nor the turns: no lock for it.
        if let FrameBody::InputAudio(_) = event.frame.body {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(latency) = state
            .latency
            .observe(event.frame, event.direction, event.at)
        {
            state.measured_ms = Some(latency.total_ms.max(0.0).round() as u64);
        }
        let FrameBody::TurnCompleted(turn) = &event.frame.body else {
            return;
        };
        if !state.recorded.insert(turn.index) {
            return;
        }
        let measured = match turn.role {
            Role::Assistant => state.measured_ms.take(),
            _ => None,
        };
        drop(state);
        match measured {
            Some(latency_ms) => {
                let mut turn = Turn::clone(turn);
                turn.latency_ms = Some(latency_ms);
                self.recorder.record(Arc::new(turn));
            }
            None => self.recorder.record(Arc::clone(turn)),
        }
    }
}
