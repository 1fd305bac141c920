//! A processor type for tests standing in for the context aggregators: it
//! announces completed turns with `TurnCompleted` frames, as the
//! aggregators do, and the session's memory stores them.
//!
//! - A `Text` frame `"user: hello"` completes a user turn saying "hello"
//!   (`assistant:` and `tool:` likewise).
//! - With `every_frames = N`, every N input audio frames complete a turn,
//!   alternating user and assistant ("turn 0", "turn 1", ...).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use voxpipe::agent::{AgentRuntime, SessionMemory};
use voxpipe::conversation::{Role, Turn};
use voxpipe::frame::{Direction, Frame, FrameBody};
use voxpipe::pipeline::ProcessorFactory;
use voxpipe::pipeline::{BuildError, SessionSetup};
use voxpipe::pipeline::{
    NamedProcessor, PipelineHandle, PipelineOutcome, PipelineParams, PipelineTask,
};
use voxpipe::pipeline::{Processor, ProcessorContext, ProcessorError};
use voxpipe::store::time::unix_ms;

/// `type = "fake_turns"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeTurnsConfig {
    #[serde(default)]
    pub every_frames: Option<u64>,
}

impl ProcessorFactory for FakeTurnsConfig {
    fn build(&self, _setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        Ok(Box::new(FakeTurns::new(self.every_frames)))
    }
}

/// A turn as an aggregator makes one.
pub fn turn(index: u64, role: Role, text: &str, at_ms: u64) -> Turn {
    Turn {
        index,
        role,
        text: text.to_owned(),
        interrupted: false,
        tool_calls: Vec::new(),
        at_ms,
        unix_ms: unix_ms(),
        latency_ms: None,
        agent: None,
        reflection: None,
    }
}

pub struct FakeTurns {
    every_frames: Option<u64>,
    frames: u64,
    turns: u64,
}

impl FakeTurns {
    pub fn new(every_frames: Option<u64>) -> Self {
        FakeTurns {
            every_frames,
            frames: 0,
            turns: 0,
        }
    }

    async fn complete(&mut self, role: Role, text: &str, ctx: &ProcessorContext) {
        let at_ms = ctx.now().as_millis() as u64;
        let completed = turn(self.turns, role, text, at_ms);
        self.turns += 1;
        ctx.push(
            FrameBody::TurnCompleted(Arc::new(completed)),
            Direction::Downstream,
        )
        .await;
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
        match &frame.body {
            FrameBody::Text(text) => {
                let (role, said) = text.split_once(": ").unwrap_or(("user", text));
                let role = match role {
                    "assistant" => Role::Assistant,
                    "tool" => Role::Tool,
                    _ => Role::User,
                };
                let said = said.to_owned();
                self.complete(role, &said, ctx).await;
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
                    self.complete(role, &text, ctx).await;
                }
            }
            _ => {}
        }
        ctx.push(frame, direction).await;
        Ok(())
    }
}

/// A session driven by hand, the way a transport drives one: frames queued
/// through the handle, and what `Session` does with a memory (its observer
/// stores the turns; it is told when the pipeline starts and ends).
pub struct HandSession {
    pub handle: PipelineHandle,
    running: tokio::task::JoinHandle<PipelineOutcome>,
}

impl HandSession {
    /// Starts a pipeline of one `fake_turns` processor for `memory`.
    pub fn start(memory: &SessionMemory) -> Self {
        let mut params = PipelineParams::new(memory.call_id().to_owned(), 16_000);
        params.observers.push(memory.observer());
        let task = PipelineTask::new(
            vec![NamedProcessor::new("turns", FakeTurns::new(None))],
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

    /// Completes a turn: `"user: hello"`.
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
    runtime: &AgentRuntime,
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
