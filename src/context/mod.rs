//! The conversation and its memory.
//!
//! - The LLM context: messages in the OpenAI chat format ([`Message`]).
//! - What is kept of a call ([`CallRecord`], [`Interaction`]) and where: the
//!   [stores](store), Redis or embedded, with the key schema of DESIGN.md.
//! - How it gets there without holding up the conversation: one
//!   [writer](writer) per session, fed by a [`TurnRecorder`].
//! - What the next session starts from: the [`SessionPrompt`] (segment
//!   prompts and the refinement loop's tactics).
//! - The [skills](skills) behind the `search_context` tool.
//! - [`ContextRuntime`] ties them together for a process; a
//!   [`SessionMemory`] is one session's handle.

mod call;
mod config;
mod interaction;
mod memory;
mod message;
mod prompt;
mod runtime;
pub mod skills;
pub mod store;
mod tactics;
pub mod time;
pub mod writer;

pub use call::{CallChange, CallRecord, CallStatus, Evaluation, Outcome, Segment};
pub use config::{ContextSection, SkillsSection, StoreKind};
pub use interaction::{CompletedTurn, Interaction};
pub use memory::SessionMemory;
pub use message::{Message, Role, ToolCall};
pub use prompt::{PromptKey, SessionPrompt};
pub use runtime::{ContextError, ContextRuntime, RuntimeParts, worker_name};
pub use tactics::{TacticsList, merge_tactics, tactic_identity};
pub use writer::{TurnRecorder, WriteReport, WriterStatus};
