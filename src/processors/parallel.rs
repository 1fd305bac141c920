//! `parallel`: runs several branches of processors side by side.
//!
//! Every frame that reaches the processor goes to each branch (downstream
//! frames to each branch's first processor, upstream frames to its last).
//! What leaves the branches is merged and pushed on; a frame that several
//! branches pass on unchanged (same id) is pushed once, so audio that flows
//! through every branch is not multiplied. Processors that change a frame
//! derive a new one ([`Frame::derive`]), so each branch's own output gets
//! through. `End` waits until every branch has drained; an interruption and
//! `Cancel` reach every branch. Requests and errors leaving a branch
//! upstream reach the session's source like any other.
//!
//! ```toml
//! [[processor]]
//! type = "parallel"
//! branches = [
//!   [{ type = "gain", gain_db = -6 }],
//!   [{ type = "passthrough" }],
//! ]
//! ```

use std::collections::{HashSet, VecDeque};
use std::fmt;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::frame::{Direction, Frame, FrameBody, FrameId, StartFrame};
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{
    BranchOutlets, ChildTask, NamedProcessor, Outlet, PipelineHandle, PipelineTask,
};
use crate::pipeline::{BuildError, SessionSetup};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};

use crate::pipeline::ProcessorEntry;

/// How many recent frame ids the merge remembers. Copies of one frame leave
/// the branches within moments of each other; this is many seconds of audio.
const REMEMBERED_IDS: usize = 4096;

/// A validated `parallel` entry: its branches' processors.
#[derive(Clone)]
pub struct ParallelFactory {
    branches: Vec<Vec<ProcessorEntry>>,
}

impl ParallelFactory {
    /// A factory for `branches`, each a chain of validated entries.
    pub fn new(branches: Vec<Vec<ProcessorEntry>>) -> Self {
        ParallelFactory { branches }
    }

    /// The branches.
    pub fn branches(&self) -> &[Vec<ProcessorEntry>] {
        &self.branches
    }
}

impl fmt::Debug for ParallelFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParallelFactory")
            .field("branches", &self.branches)
            .finish()
    }
}

impl ProcessorFactory for ParallelFactory {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        let branches = self
            .branches
            .iter()
            .map(|branch| {
                branch
                    .iter()
                    .map(|entry| {
                        Ok(NamedProcessor {
                            name: entry.name.clone(),
                            processor: entry.factory.build(setup)?,
                        })
                    })
                    .collect::<Result<Vec<_>, BuildError>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(Parallel::new(branches)))
    }

    fn warm_up(&self, setup: &SessionSetup) {
        for entry in self.branches.iter().flatten() {
            entry.factory.warm_up(setup);
        }
    }
}

/// Runs branches side by side. See the module docs.
pub struct Parallel {
    pending: Vec<Vec<NamedProcessor>>,
    handles: Vec<PipelineHandle>,
    runs: Vec<ChildTask>,
    mergers: Vec<ChildTask>,
}

impl Parallel {
    /// Branches of processors, each run as its own chain.
    pub fn new(branches: Vec<Vec<NamedProcessor>>) -> Self {
        Parallel {
            pending: branches,
            handles: Vec::new(),
            runs: Vec::new(),
            mergers: Vec::new(),
        }
    }
}

/// Pushes what leaves the branches on, once per frame id.
async fn merge(
    mut from: mpsc::UnboundedReceiver<Outlet>,
    direction: Direction,
    ctx: ProcessorContext,
) {
    let mut seen = HashSet::new();
    let mut order: VecDeque<FrameId> = VecDeque::new();
    while let Some(Outlet { frame, _token }) = from.recv().await {
        if !seen.insert(frame.id) {
            continue;
        }
        order.push_back(frame.id);
        if order.len() > REMEMBERED_IDS
            && let Some(oldest) = order.pop_front()
        {
            seen.remove(&oldest);
        }
        ctx.push(frame, direction).await;
    }
}

#[async_trait]
impl Processor for Parallel {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        _ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        for handle in &self.handles {
            handle.queue(frame.clone(), direction).await;
        }
        Ok(())
    }

    async fn on_start(
        &mut self,
        start: &StartFrame,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let (up_tx, up_rx) = mpsc::unbounded_channel();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let outlets = BranchOutlets {
            upstream: up_tx,
            downstream: down_tx,
        };
        for branch in std::mem::take(&mut self.pending) {
            let task = PipelineTask::branch(branch, ctx, start, outlets.clone());
            self.handles.push(task.handle());
            self.runs
                .push(ChildTask::spawn("a parallel branch", task.run_branch()));
        }
        // Only the branches' ends hold the senders now: the mergers finish
        // once every branch has stopped.
        drop(outlets);
        self.mergers = vec![
            ChildTask::spawn(
                "a parallel merger",
                merge(down_rx, Direction::Downstream, ctx.clone()),
            ),
            ChildTask::spawn(
                "a parallel merger",
                merge(up_rx, Direction::Upstream, ctx.clone()),
            ),
        ];
        Ok(())
    }

    async fn on_interruption(&mut self, _ctx: &ProcessorContext) {
        let interruption = Frame::new(FrameBody::Interruption);
        for handle in &self.handles {
            handle
                .queue(interruption.clone(), Direction::Downstream)
                .await;
        }
    }

    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        for handle in &self.handles {
            handle.end("end").await;
        }
        let mut failed = false;
        for mut run in self.runs.drain(..).chain(self.mergers.drain(..)) {
            failed |= run.finish().await.is_err();
        }
        if failed {
            return Err(ProcessorError::fatal("a parallel branch failed"));
        }
        Ok(())
    }

    async fn on_cancel(&mut self, _ctx: &ProcessorContext) {
        for handle in &self.handles {
            handle.cancel("cancelled");
        }
        // Dropping a child task aborts it.
        self.runs.clear();
        self.mergers.clear();
    }
}
