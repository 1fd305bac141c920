//! The [`Processor`] trait: one step of a pipeline.
//!
//! A processor is a small state machine. The runner gives it one frame at a
//! time ([`Processor::process`]) together with a [`ProcessorContext`] to push
//! frames on; a processor forwards every frame it does not handle. The four
//! lifecycle frames never reach `process`: the runner calls the matching hook
//! and then forwards the frame itself, so no processor can stall the chain by
//! forgetting to forward them:
//!
//! | frame | hook | then |
//! |---|---|---|
//! | `Start` | [`Processor::on_start`] | forwarded |
//! | `Interruption` | [`Processor::on_interruption`] | forwarded |
//! | `End` | [`Processor::on_end`] (finish in-flight work here) | forwarded; the processor stops |
//! | `Cancel` | [`Processor::on_cancel`] (abort child tasks here) | forwarded; the processor stops |
//!
//! Work that streams (an LLM response, a synthesis) runs in a child task that
//! holds a clone of the context and pushes as results arrive;
//! `on_interruption` and `on_cancel` abort it, `on_end` awaits it.

use std::error::Error as StdError;
use std::fmt;

use async_trait::async_trait;

use crate::frame::{Direction, ErrorFrame, Frame, StartFrame};

use super::processor_context::ProcessorContext;

/// One step of a pipeline. See the module docs for the contract.
#[async_trait]
pub trait Processor: Send {
    /// Handles one frame. Frames the processor does not handle must be
    /// forwarded with `ctx.push(frame, direction)`.
    ///
    /// An error becomes an [`ErrorFrame`] pushed upstream; a fatal one ends
    /// the session.
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError>;

    /// The session starts. A failure here is fatal.
    async fn on_start(
        &mut self,
        _start: &StartFrame,
        _ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// The user interrupted: abort in-flight work. Queued data and control
    /// frames have already been dropped by the runner.
    async fn on_interruption(&mut self, _ctx: &ProcessorContext) {}

    /// The session ends gracefully: finish in-flight work and push what it
    /// produces before returning.
    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// The session is cancelled: stop at once.
    async fn on_cancel(&mut self, _ctx: &ProcessorContext) {}
}

/// Whether the session can go on after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// This frame (or turn) failed; the session goes on.
    Recoverable,
    /// The session cannot go on and ends.
    Fatal,
}

/// An error returned by a processor; the runner turns it into an
/// [`ErrorFrame`].
#[derive(Debug)]
pub struct ProcessorError {
    severity: Severity,
    provider: Option<String>,
    status: Option<u16>,
    source: Box<dyn StdError + Send + Sync>,
}

impl ProcessorError {
    /// An error after which the session goes on.
    pub fn recoverable(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::new(Severity::Recoverable, source)
    }

    /// An error that ends the session.
    pub fn fatal(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::new(Severity::Fatal, source)
    }

    fn new(severity: Severity, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        ProcessorError {
            severity,
            provider: None,
            status: None,
            source: source.into(),
        }
    }

    /// Names the remote service involved.
    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Records the HTTP (or close) status involved.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Whether the session can go on.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The error frame this error becomes, raised by `processor`.
    pub fn to_frame(&self, processor: &str) -> ErrorFrame {
        ErrorFrame {
            processor: processor.into(),
            message: error_chain(&*self.source),
            fatal: self.severity == Severity::Fatal,
            provider: self.provider.clone(),
            status: self.status,
        }
    }
}

impl fmt::Display for ProcessorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&error_chain(&*self.source))
    }
}

impl StdError for ProcessorError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// `error: cause: cause`, the way people read errors in logs.
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
