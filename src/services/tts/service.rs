//! [`TtsService`]: the TTS processor, the same for every provider.
//!
//! LLM text is cut into sentences as it streams ([`SentenceSplitter`]) and
//! each sentence goes to the engine at once, so the first is spoken while
//! the LLM writes the next. `LlmText` and `Text` frames stop here (the
//! spoken text goes on as `TtsText`); `LlmResponseEnd` goes on after the
//! response's audio; every other frame is forwarded at once.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc};

use crate::frame::{Direction, Frame, FrameBody, StartFrame};
use crate::pipeline::ChildTask;
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};

use super::engine::{Command, Engine, Gate};
use super::sentences::SentenceSplitter;
use super::wire::TtsWire;

/// The TTS processor. See the module docs.
pub struct TtsService {
    wire: Option<Box<dyn TtsWire>>,
    commands: Option<mpsc::UnboundedSender<Command>>,
    engine: ChildTask,
    gate: Gate,
    splitter: SentenceSplitter,
    /// The response receiving text, if any.
    open: Option<u64>,
    /// The last response number given.
    last: u64,
}

impl TtsService {
    pub(crate) fn new(wire: Box<dyn TtsWire>) -> Self {
        TtsService {
            wire: Some(wire),
            commands: None,
            engine: ChildTask::new("the TTS engine"),
            gate: Arc::new(Mutex::new(0)),
            splitter: SentenceSplitter::new(),
            open: None,
            last: 0,
        }
    }

    fn send(&self, command: Command) {
        if let Some(commands) = &self.commands
            && commands.send(command).is_err()
        {
            tracing::warn!("the TTS engine has stopped; text dropped");
        }
    }

    fn open_response(&mut self) -> u64 {
        match self.open {
            Some(response) => response,
            None => {
                self.last += 1;
                self.open = Some(self.last);
                self.last
            }
        }
    }

    fn speak(&mut self, text: &str) {
        let response = self.open_response();
        for sentence in self.splitter.push(text) {
            self.send(Command::Speak {
                response,
                text: sentence,
            });
        }
    }

    /// Speaks `response`'s text not yet handed out, whole or not.
    fn speak_rest(&mut self, response: u64) {
        if let Some(rest) = self.splitter.finish() {
            self.send(Command::Speak {
                response,
                text: rest,
            });
        }
    }

    /// The LLM stopped writing to call a tool: the open response's text
    /// not yet handed out is spoken as a sentence of its own, so what it
    /// said before ("Let me check.") is heard while the tool runs rather
    /// than wait for (and run into) the next round's text; a provider whose
    /// contexts expire gets the text so far finished (see `responses`,
    /// Segments).
    fn break_for_tool(&mut self) {
        let Some(response) = self.open else {
            return;
        };
        self.speak_rest(response);
        self.send(Command::Break { response });
    }

    /// Ends the open response: the rest of its text, then `then` after its
    /// audio.
    fn close_response(&mut self, then: Option<Frame>) -> Option<Frame> {
        let Some(response) = self.open.take() else {
            return then;
        };
        self.speak_rest(response);
        self.send(Command::Finish { response, then });
        None
    }
}

#[async_trait]
impl Processor for TtsService {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        match &frame.body {
            FrameBody::LlmResponseStart => {
                self.close_response(None);
                self.open_response();
            }
            FrameBody::LlmText(text) => {
                self.speak(text);
                return Ok(());
            }
            FrameBody::Text(text) => {
                let standalone = self.open.is_none();
                self.speak(text);
                if standalone {
                    self.close_response(None);
                }
                return Ok(());
            }
            FrameBody::FunctionCallInProgress(_) => self.break_for_tool(),
            FrameBody::LlmResponseEnd { .. } if self.open.is_some() => {
                self.close_response(Some(frame));
                return Ok(());
            }
            _ => {}
        }
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_start(
        &mut self,
        start: &StartFrame,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let Some(wire) = self.wire.take() else {
            return Ok(());
        };
        let (commands, receiver) = mpsc::unbounded_channel();
        let engine = Engine::new(wire, ctx.clone(), Arc::clone(&self.gate), start.sample_rate);
        self.engine.start(engine.run(receiver));
        self.commands = Some(commands);
        Ok(())
    }

    async fn on_interruption(&mut self, _ctx: &ProcessorContext) {
        self.splitter.clear();
        self.open = None;
        // Raised before the interruption goes on: see the engine's docs.
        *self.gate.lock().await = self.last;
        self.send(Command::Cancel { up_to: self.last });
    }

    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        self.close_response(None);
        // Closing the channel lets the engine finish what it has and stop.
        self.commands = None;
        self.engine.finish().await?;
        Ok(())
    }

    async fn on_cancel(&mut self, _ctx: &ProcessorContext) {
        self.commands = None;
        self.engine.abort();
    }
}
