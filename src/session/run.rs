//! Running one session: build the pipeline's processors for it, put the
//! transport's ends around them, run, report.

use std::sync::Arc;
use std::time::Duration;

use crate::agent::SessionMemory;
use crate::frame::{ErrorFrame, FrameBody, MetricsData};
use crate::pipeline::{
    BuildError, NamedProcessor, Observer, PipelineHandle, PipelineParams, PipelineTask,
    ProcessorEntry, SessionClock, SessionSetup,
};
use crate::recording::Recorder;
use crate::store::CallRecording;
use crate::transport::{PlaybackTap, TransportEnds};

/// A session that could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A processor could not be built.
    #[error("processor `{processor}`: {source}")]
    Build {
        /// The processor's name.
        processor: String,
        /// Why.
        source: BuildError,
    },
}

/// How a session ended.
#[derive(Debug, Clone)]
pub struct SessionReport {
    /// The session id.
    pub session_id: Arc<str>,
    /// Why it ended, e.g. `end_of_input`, `hangup`.
    pub end_reason: String,
    /// True when it was cancelled rather than drained.
    pub cancelled: bool,
    /// The fatal error that ended it, if any.
    pub fatal_error: Option<ErrorFrame>,
    /// Processing and transit metrics.
    pub metrics: Vec<MetricsData>,
    /// Session time at the end.
    pub duration: Duration,
    /// The recording's outcome, when `[recording]` is on.
    pub recording: Option<CallRecording>,
}

/// Everything a session needs besides the pipeline definition.
pub struct SessionOptions {
    /// Who the processors are built for.
    pub setup: SessionSetup,
    /// The session clock.
    pub clock: SessionClock,
    /// Observers of every frame.
    pub observers: Vec<Arc<dyn Observer>>,
    /// The session's conversation memory, when the pipeline keeps one: it
    /// gives the LLM its system prompt, persists every turn, and follows
    /// the call's state (active, then completed).
    pub memory: Option<SessionMemory>,
}

/// One session, built and ready to run: its processors exist, nothing has
/// run yet. [`Session::handle`] gives a handle to end or cancel it from
/// outside (a server shutting down) before or while it runs.
pub struct Session {
    task: PipelineTask,
    session_id: Arc<str>,
    clock: SessionClock,
    memory: Option<SessionMemory>,
    recorder: Option<Recorder>,
    /// The pipeline opens the conversation: the client is announced.
    opens: bool,
}

impl Session {
    /// Builds `processors` for one session, between the transport's ends.
    pub fn new(
        processors: &[ProcessorEntry],
        ends: TransportEnds,
        options: SessionOptions,
    ) -> Result<Self, SessionError> {
        let SessionOptions {
            mut setup,
            clock,
            mut observers,
            memory,
        } = options;
        // The memory gives the LLM its prompt and stores the turns the
        // aggregators announce.
        if let Some(memory) = &memory {
            setup.system_prompt = Some(memory.prompt_source());
            observers.push(memory.observer());
        }
        // The recorder hears the caller as the input pushes its audio, and
        // the bot as the output releases it.
        let recorder = setup.recording.enabled.then(|| {
            let recorder = Recorder::start(&setup.recording, &setup.session_id, setup.sample_rate);
            observers.push(recorder.observer());
            PlaybackTap::install(&setup.resources, recorder.listener());
            recorder
        });
        let mut chain = Vec::with_capacity(processors.len() + 2);
        chain.push(ends.input);
        for entry in processors {
            let processor = entry
                .factory
                .build(&setup)
                .map_err(|source| SessionError::Build {
                    processor: entry.name.clone(),
                    source,
                })?;
            chain.push(NamedProcessor {
                name: entry.name.clone(),
                processor,
            });
        }
        chain.push(ends.output);

        let mut params = PipelineParams::new(Arc::clone(&setup.session_id), setup.sample_rate);
        params.allow_interruptions = setup.allow_interruptions;
        params.clock = clock.clone();
        params.observers = observers;
        params.resources = setup.resources.clone();
        Ok(Session {
            opens: setup.opening.is_some(),
            task: PipelineTask::new(chain, params),
            session_id: setup.session_id,
            clock,
            memory,
            recorder,
        })
    }

    /// A handle to end or cancel the session.
    pub fn handle(&self) -> PipelineHandle {
        self.task.handle()
    }

    /// Runs the session until it ends. With a memory, the stored call
    /// follows it: active now, completed at the end (whatever the reason).
    /// A recording is finished before the call is marked completed, so its
    /// outcome is in the record the after-call hooks read.
    pub async fn run(self) -> SessionReport {
        if let Some(memory) = &self.memory {
            memory.started();
        }
        if self.opens {
            // Queued behind `Start`, so every processor has started when the
            // opening begins; a transport whose client connects later holds
            // it until then.
            self.task
                .handle()
                .queue_frame(FrameBody::ClientConnected)
                .await;
        }
        let outcome = self.task.run().await;
        let recording = match self.recorder {
            Some(recorder) => Some(recorder.finish(self.clock.now()).await),
            None => None,
        };
        if let Some(recording) = &recording {
            tracing::info!(status = ?recording.status, file = ?recording.file, duration_ms = recording.duration_ms, reason = ?recording.reason, "recording finished");
        }
        if let Some(memory) = &self.memory {
            if let Some(recording) = &recording {
                memory.recorded(recording.clone());
            }
            memory.ended(&outcome.end_reason);
        }
        SessionReport {
            session_id: self.session_id,
            end_reason: outcome.end_reason,
            cancelled: outcome.cancelled,
            fatal_error: outcome.fatal_error,
            metrics: outcome.metrics,
            duration: self.clock.now(),
            recording,
        }
    }
}

/// Builds `processors` for one session and runs them between the
/// transport's ends until the session ends. With `options.memory`, the
/// call's stored status follows the session (pending, active, completed).
pub async fn run_session(
    processors: &[ProcessorEntry],
    ends: TransportEnds,
    options: SessionOptions,
) -> Result<SessionReport, SessionError> {
    Ok(Session::new(processors, ends, options)?.run().await)
}
