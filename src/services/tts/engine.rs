//! The TTS driver's task: it hands the processor's commands and the
//! provider connection's events to the responses' state machine
//! ([`TtsResponses`], which decides what each means), and carries out what
//! that asks: text to the connection, frames to the pipeline.
//!
//! # Interruption without a stale frame
//!
//! The engine is never aborted (it owns the provider's socket). Instead
//! every push goes through a gate holding the highest cancelled response
//! number: the engine takes the gate, checks the response is still wanted,
//! and pushes while holding it. The processor's interruption hook raises
//! the number under the same gate before the interruption is forwarded, so
//! a push either completes before the interruption (and is dropped
//! downstream as stale) or sees the new number and is skipped.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use crate::frame::Frame;
use crate::pipeline::ProcessorContext;
use crate::services::task::report;
use crate::services::timer::now;

use super::responses::{TtsOutput, TtsResponses};
use super::wire::TtsWire;

/// What the processor asks of the engine.
#[derive(Debug)]
pub(crate) enum Command {
    /// Speak a sentence of response `response`.
    Speak { response: u64, text: String },
    /// No more text for `response`; push `then` after its audio.
    Finish { response: u64, then: Option<Frame> },
    /// `response`'s text stops for a tool call (see `responses`, Segments).
    Break { response: u64 },
    /// Responses up to `up_to` were interrupted.
    Cancel { up_to: u64 },
}

/// The highest cancelled response number, shared with the processor.
pub(crate) type Gate = Arc<Mutex<u64>>;

pub(crate) struct Engine {
    wire: Box<dyn TtsWire>,
    ctx: ProcessorContext,
    gate: Gate,
    responses: TtsResponses,
}

impl Engine {
    pub(crate) fn new(
        wire: Box<dyn TtsWire>,
        ctx: ProcessorContext,
        gate: Gate,
        rate: u32,
    ) -> Self {
        // Context ids are unique per socket; a per-engine prefix keeps them
        // apart across sessions sharing a provider account.
        let prefix = format!("vp{:08x}", crate::random::random_u32());
        let responses = TtsResponses::new(ctx.name(), wire.sample_rate(), rate, prefix)
            .with_segments(wire.contexts_expire());
        Engine {
            wire,
            ctx,
            gate,
            responses,
        }
    }

    /// Runs until the processor has closed the command channel and every
    /// response has played out.
    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let provider = self.wire.provider();
        if let Err(error) = self.wire.warm_up().await {
            tracing::warn!(provider, %error, "TTS connection not ready");
            report(error.into_processor_error(provider), &self.ctx).await;
        }
        let mut open = true;
        while open || self.responses.is_busy() {
            tokio::select! {
                biased;
                command = commands.recv(), if open => match command {
                    Some(command) => self.command(command).await,
                    None => open = false,
                },
                event = self.wire.next_event() => {
                    self.responses.handle_event(event, provider, now());
                }
            }
            self.carry_out().await;
        }
        self.wire.close().await;
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Speak { response, text } => {
                if response > *self.gate.lock().await {
                    self.responses.handle_speak(response, text, now());
                }
            }
            Command::Finish { response, then } => {
                self.responses.handle_finish(response, then, now());
            }
            Command::Break { response } => self.responses.handle_break(response, now()),
            Command::Cancel { up_to } => self.responses.handle_cancel(up_to, now()),
        }
    }

    /// Carries out what the responses ask, in order.
    async fn carry_out(&mut self) {
        let provider = self.wire.provider();
        while let Some(output) = self.responses.poll_output() {
            let failed = match output {
                TtsOutput::Push { response, frame } => {
                    // See the module docs for why the gate is held during
                    // the push.
                    let cancelled = self.gate.lock().await;
                    if response > *cancelled {
                        self.ctx.push_downstream(frame).await;
                    }
                    None
                }
                TtsOutput::Speak { context, text } => {
                    self.wire.send_text(&context, &text).await.err()
                }
                TtsOutput::Finish { context } => self.wire.finish(&context).await.err(),
                TtsOutput::Cancel { context } => {
                    self.wire.cancel(&context).await;
                    None
                }
                TtsOutput::Report(error) => {
                    report(error, &self.ctx).await;
                    None
                }
            };
            if let Some(error) = failed {
                report(error.into_processor_error(provider), &self.ctx).await;
            }
        }
    }
}
