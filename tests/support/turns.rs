//! A processor type for tests standing in for the context aggregators: it
//! records a turn through the session's memory, as the aggregators do.
//!
//! - A `Text` frame `"user: hello"` records a user turn saying "hello"
//!   (`assistant:` and `tool:` likewise).
//! - With `every_frames = N`, every N input audio frames record a turn,
//!   alternating user and assistant ("turn 0", "turn 1", ...).

use async_trait::async_trait;
use serde::Deserialize;
use voxpipe::context::{CompletedTurn, ContextRuntime, Role, SessionMemory};
use voxpipe::frame::{Direction, Frame, FrameBody};
use voxpipe::pipeline::{
    NamedProcessor, PipelineHandle, PipelineOutcome, PipelineParams, PipelineTask,
};
use voxpipe::processor::{Processor, ProcessorContext, ProcessorError};
use voxpipe::processors::{ProcessorFactory, ProcessorRegistry};
use voxpipe::session::{BuildError, SessionSetup};

/// `type = "fake_turns"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeTurnsConfig {
    #[serde(default)]
    pub every_frames: Option<u64>,
}

impl ProcessorFactory for FakeTurnsConfig {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        let memory = setup
            .memory
            .clone()
            .ok_or_else(|| BuildError::Invalid("no session memory".into()))?;
        Ok(Box::new(FakeTurns::new(memory, self.every_frames)))
    }
}

/// The builtin registry plus `fake_turns`.
pub fn registry() -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::builtin();
    registry.register::<FakeTurnsConfig>("fake_turns");
    registry
}

pub struct FakeTurns {
    memory: SessionMemory,
    every_frames: Option<u64>,
    frames: u64,
    turns: u64,
}

impl FakeTurns {
    pub fn new(memory: SessionMemory, every_frames: Option<u64>) -> Self {
        FakeTurns {
            memory,
            every_frames,
            frames: 0,
            turns: 0,
        }
    }
}

#[async_trait]
impl Processor for FakeTurns {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let session_ms = ctx.now().as_millis() as u64;
        match &frame.body {
            FrameBody::Text(text) => {
                let (role, said) = text.split_once(": ").unwrap_or(("user", text));
                let role = match role {
                    "assistant" => Role::Assistant,
                    "tool" => Role::Tool,
                    _ => Role::User,
                };
                self.memory
                    .record_turn(CompletedTurn::text(role, said, session_ms));
            }
            FrameBody::InputAudio(_) => {
                self.frames += 1;
                if let Some(every) = self.every_frames
                    && self.frames.is_multiple_of(every)
                {
                    let role = if self.turns.is_multiple_of(2) {
                        Role::User
                    } else {
                        Role::Assistant
                    };
                    let text = format!("turn {}", self.turns);
                    self.turns += 1;
                    self.memory
                        .record_turn(CompletedTurn::text(role, text, session_ms));
                }
            }
            _ => {}
        }
        ctx.push(frame, direction).await;
        Ok(())
    }
}

/// A session driven by hand, the way a transport drives one: frames queued
/// through the handle, the memory told when the pipeline starts and ends
/// (what `run_session` does).
pub struct HandSession {
    pub handle: PipelineHandle,
    running: tokio::task::JoinHandle<PipelineOutcome>,
}

impl HandSession {
    /// Starts a pipeline of one `fake_turns` processor for `memory`.
    pub fn start(memory: &SessionMemory) -> Self {
        let params = PipelineParams::new(memory.call_id().to_owned(), 16_000);
        let task = PipelineTask::new(
            vec![NamedProcessor::new(
                "turns",
                FakeTurns::new(memory.clone(), None),
            )],
            params,
        );
        let handle = task.handle();
        let running = tokio::spawn({
            let memory = memory.clone();
            async move {
                memory.started();
                let outcome = task.run().await;
                memory.ended(&outcome.end_reason);
                outcome
            }
        });
        HandSession { handle, running }
    }

    /// Records a turn: `"user: hello"`.
    pub async fn say(&self, line: &str) {
        self.handle
            .queue_frame(FrameBody::Text(line.to_owned()))
            .await;
    }

    /// Ends the session for `reason` and waits until it has stopped.
    pub async fn end(self, reason: &str) -> PipelineOutcome {
        self.handle.end(reason).await;
        self.running.await.unwrap()
    }
}

/// A whole session of `lines` ending for `reason`; returns once its writer
/// has stored everything.
pub async fn converse(
    runtime: &ContextRuntime,
    id: &str,
    transport: &str,
    lines: &[&str],
    reason: &str,
) -> SessionMemory {
    let memory = runtime
        .open_session(&SessionSetup::new(id, 16_000), transport)
        .await;
    let session = HandSession::start(&memory);
    for line in lines {
        session.say(line).await;
    }
    session.end(reason).await;
    let report = memory
        .finished(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert!(report.unwritten.is_empty(), "{:?}", report.unwritten);
    memory
}
