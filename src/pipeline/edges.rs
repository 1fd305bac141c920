//! The two ends every pipeline has besides its processors.
//!
//! The **source** sits before the first processor. In a session's pipeline,
//! frames pushed upstream end there, and it acts on the requests among them:
//! an end request becomes one `End` sent down the chain, an interruption
//! request becomes an `Interruption` sent down the chain (unless the session
//! does not allow interruptions), and a fatal error cancels the session. The **sink** sits after the last processor and
//! swallows what reaches it, measuring how long inbound audio took to cross
//! the chain; the last processor's pushes are swallowed where they are made
//! (see `ProcessorContext::push`), so of those it queues for the sink only
//! the frames that start and stop the sink's task.
//!
//! In a branch of a parallel processor both ends have an outlet instead:
//! everything that leaves the branch goes to the parent, which merges the
//! branches and passes requests and errors on to the session's source.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::processor::{Processor, ProcessorError};
use super::processor_context::ProcessorContext;
use crate::frame::{Direction, Frame, FrameBody, StartFrame};

use super::link::InFlightToken;

/// Hands `frame` to a parent through `outlet`, counted as in flight.
fn hand_over(outlet: &mpsc::UnboundedSender<Outlet>, frame: Frame, ctx: &ProcessorContext) {
    let token = ctx.shared().in_flight.as_ref().map(|f| f.token());
    if outlet
        .send(Outlet {
            frame,
            _token: token,
        })
        .is_err()
    {
        tracing::debug!("branch output dropped: the parallel processor has stopped");
    }
}

/// The head of the chain.
pub(crate) struct Source {
    ending: bool,
    allow_interruptions: bool,
    outlet: Option<mpsc::UnboundedSender<Outlet>>,
}

impl Source {
    pub(crate) fn new(outlet: Option<mpsc::UnboundedSender<Outlet>>) -> Self {
        Source {
            ending: false,
            allow_interruptions: true,
            outlet,
        }
    }
}

#[async_trait]
impl Processor for Source {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if direction == Direction::Downstream {
            ctx.push(frame, direction).await;
            return Ok(());
        }
        if let Some(outlet) = &self.outlet {
            hand_over(outlet, frame, ctx);
            return Ok(());
        }
        match frame.body {
            FrameBody::EndRequest { reason } if !self.ending => {
                self.ending = true;
                tracing::debug!(%reason, "end requested");
                // Into our own inbox, so the runner drains and stops us
                // like every other processor.
                if let Some(head) = ctx.shared().mailboxes.get().and_then(|m| m.first()) {
                    let end = Frame::new(FrameBody::End { reason });
                    ctx.shared()
                        .notify_observers("pipeline", &end, Direction::Downstream);
                    if head.send(end, Direction::Downstream).await.is_err() {
                        tracing::debug!("end requested after the pipeline stopped");
                    }
                }
            }
            FrameBody::InterruptionRequest if self.allow_interruptions => {
                ctx.push_downstream(FrameBody::Interruption).await;
            }
            FrameBody::InterruptionRequest => {
                tracing::debug!("interruption requested but the pipeline does not allow them");
            }
            FrameBody::Error(error) if error.fatal => {
                let reason = format!("fatal error in {}", error.processor);
                ctx.shared().outcome().fatal_error.get_or_insert(error);
                ctx.shared().cancel_all(&reason);
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_start(
        &mut self,
        start: &StartFrame,
        _ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        self.allow_interruptions = start.allow_interruptions;
        Ok(())
    }
}

/// The tail of the chain.
pub(crate) struct Sink {
    outlet: Option<mpsc::UnboundedSender<Outlet>>,
}

impl Sink {
    pub(crate) fn new(outlet: Option<mpsc::UnboundedSender<Outlet>>) -> Self {
        Sink { outlet }
    }
}

#[async_trait]
impl Processor for Sink {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        match (&self.outlet, direction) {
            // A parent queued it at the branch's tail.
            (_, Direction::Upstream) => ctx.push(frame, direction).await,
            (Some(outlet), Direction::Downstream) => hand_over(outlet, frame, ctx),
            (None, Direction::Downstream) => ctx.shared().swallow(&frame),
        }
        Ok(())
    }
}

/// What a pipeline's two ends do with the frames that reach them.
pub(crate) enum Ends {
    /// A session's pipeline: the source acts on requests and errors, the
    /// sink swallows what reaches it.
    Root,
    /// A branch of a parallel processor: both ends hand frames to the
    /// parent, which merges the branches.
    Branch(BranchOutlets),
}

/// The channels a branch's ends hand frames to the parent through.
#[derive(Clone)]
pub(crate) struct BranchOutlets {
    /// Frames the branch's first processor pushed upstream.
    pub(crate) upstream: mpsc::UnboundedSender<Outlet>,
    /// Frames the branch's last processor pushed downstream.
    pub(crate) downstream: mpsc::UnboundedSender<Outlet>,
}

/// A frame leaving a branch, counted as in flight until the parent has
/// pushed it on.
pub(crate) struct Outlet {
    pub(crate) frame: Frame,
    pub(crate) _token: Option<InFlightToken>,
}
