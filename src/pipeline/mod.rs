//! Running a pipeline: a flat chain of processors, each with its own inbox,
//! all polled by the one task that runs the pipeline.
//!
//! This module also holds what a processor is ([`Processor`], the
//! [`ProcessorContext`] it pushes frames through) and how one is built for
//! a session ([`ProcessorFactory`], [`SessionSetup`]), since the runner and
//! the processors meet there.
//!
//! # Design
//!
//! A pipeline is a list: `source → processor₁ → … → processorₙ → sink`.
//! Processors hold no pointers to their neighbours; the direction of a push
//! decides who receives it. Each processor runs as its own future and owns
//! an inbox of three lanes (see `link.rs`): system frames first, then
//! upstream data, then downstream data, which is bounded so that a slow
//! processor slows its producer rather than growing memory.
//!
//! The futures of one pipeline are polled together by the task that runs
//! it, not spawned as a task each: a 20 ms frame crossing six processors
//! then costs one wake-up of one task instead of six wake-ups of six tasks
//! (often on the other core), which at a thousand calls was most of the
//! scheduler's work. The queues, and so the frame contract, are the same;
//! a processor waiting on I/O waits alone, as before. Work that needs a
//! core of its own for long (a model, an encoder of seconds of audio)
//! belongs in a child task, as streaming work already does.
//!
//! # Shutdown
//!
//! `End` (a control frame) travels behind every data frame pushed before it;
//! each processor finishes its in-flight work in `on_end`, forwards `End` and
//! stops, so the chain drains in order. `Cancel` is delivered to every
//! processor's system lane at once and stops each after its current frame.
//! A fatal error, pushed upstream as an error frame, reaches the source,
//! which cancels the session. A processor task that panics cancels the
//! session too.
//!
//! # Interruptions
//!
//! A processor asks for one by pushing `InterruptionRequest` upstream; the
//! source sends `Interruption` down the chain. Each processor, on receiving
//! it, drops the data and control frames queued before it (never system
//! frames, never `End`), runs its `on_interruption` hook to abort in-flight
//! work, and forwards it. An interruption reaches a processor after its
//! current `process` call returns; processors that emit long bursts do so
//! from a child task, which the hook aborts.

mod build_error;
mod child_task;
mod clock;
mod edges;
mod factory;
mod link;
mod local_tasks;
mod observer;
mod outcome;
mod processor;
mod processor_context;
mod resources;
mod runner;
mod setup;
mod task;

pub use build_error::BuildError;
pub use child_task::ChildTask;
pub use clock::SessionClock;
pub(crate) use edges::{BranchOutlets, Outlet};
pub use factory::{ProcessorEntry, ProcessorFactory};
pub use observer::{Observer, PushEvent};
pub use outcome::PipelineOutcome;
pub(crate) use processor::error_chain;
pub use processor::{Processor, ProcessorError, Severity};
pub use processor_context::ProcessorContext;
pub use resources::SessionResources;
pub use setup::{EnvSource, SessionSetup, SystemPromptSource, new_session_id};
pub use task::{
    DEFAULT_QUEUE_CAPACITY, NamedProcessor, PipelineHandle, PipelineParams, PipelineTask,
};
