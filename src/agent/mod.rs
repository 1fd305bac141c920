//! The agent layer: what a voice agent keeps and learns across calls, on top
//! of the pipeline.
//!
//! # Memory
//!
//! - Where a call is kept: the [store](crate::store), Redis or embedded.
//! - How a session's turns get there without holding up the conversation:
//!   the session's [`SessionMemory`] observes each `TurnCompleted` frame and
//!   hands the turn to one [writer](writer) per session, which runs the
//!   after-call hooks ([`AfterCall`]) once the call is completed.
//! - What the next session starts from: the [`SessionPrompt`] (segment
//!   prompts and the refinement loop's tactics), which becomes the LLM's
//!   system prompt.
//! - The [skills] behind the `search_context` tool.
//!
//! # After the call
//!
//! - The [evaluator](eval) judges a completed call (outcome, score,
//!   tactics) from a durable job queue; the refinement loop feeds the
//!   tactics into the next session's prompt.
//! - The [webhook] posts each completed call, from a durable outbox.
//!
//! [`AgentRuntime`] ties them together for a process: one store, the
//! writers of its live sessions, the evaluator, the webhook deliverer.

mod config;
pub mod eval;
mod memory;
mod prompt;
mod runtime;
pub mod skills;
pub mod webhook;
pub mod writer;

pub use config::{ContextSection, SkillsSection, StoreKind};
pub use memory::SessionMemory;
pub use prompt::SessionPrompt;
pub use runtime::{AgentError, AgentRuntime, RuntimeParts, worker_name};
pub use writer::{AfterCall, TurnRecorder, WriteReport, WriterStatus};
