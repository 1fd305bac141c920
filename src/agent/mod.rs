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
//! - [Post-call steps](post_call) run after the evaluation, in the same
//!   job: what else a call leaves behind (extraction, stored objects).
//! - [Extraction](extraction) fills the pipeline's JSON Schema from the
//!   transcript, a post-call step.
//! - [Learning](learning): calls that went well (and submitted
//!   transcripts) become skills and test cases, a post-call step.
//! - The [webhook] posts each completed call, from a durable outbox.
//! - [Storage](storage): the call's recording, transcript, profile and
//!   audit record, kept in object storage.
//!
//! [`AgentRuntime`] ties them together for a process: one store, the
//! writers of its live sessions, the evaluator, the webhook deliverer.

mod after_call;
mod config;
mod error;
pub mod eval;
pub mod extraction;
pub mod learning;
mod lost_sessions;
mod memory;
pub mod optimiser;
pub mod post_call;
mod prompt;
pub(crate) mod redact;
mod runtime;
mod runtime_sections;
pub mod skills;
pub mod storage;
pub mod turn_spool;
pub mod webhook;
pub mod writer;

pub use config::{ContextSection, SkillsSection, StoreKind};
pub use error::AgentError;
pub use lost_sessions::{LostSessionSweeper, SESSION_LOST};
pub use memory::SessionMemory;
pub use post_call::{PostCallError, PostCallStep};
pub use prompt::SessionPrompt;
pub use runtime::{AgentRuntime, worker_name};
pub use runtime_sections::RuntimeParts;
pub use runtime_sections::RuntimeSections;
pub use writer::{AfterCall, TurnRecorder, WriteReport, WriterStatus};
